"""HPS v2 and the LAION aesthetic predictor: stand-ins with the real architectures (reduced depth), loading
from the file layouts users have, refusals, ensembles and gradients. Parity with the reference code:
scripts/parity_hpsv2.py and scripts/parity_aesthetic.py (figures in docs/rewards.md)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reneg_video.commands import score as score_cli
from reneg_video.core.errors import RewardError
from reneg_video.rewards import Reward, load_reward, load_reward_spec, openclip
from reneg_video.rewards import aesthetic as aesthetic_mod
from reneg_video.rewards import hpsv2 as hpsv2_mod
from reneg_video.rewards.imagereward import perturb_

PROMPT = "a corgi surfing a wave"


@pytest.fixture(scope="module")
def hps() -> Reward:
    return load_reward("tiny-hpsv2")


@pytest.fixture(scope="module")
def aes() -> Reward:
    return load_reward("tiny-aesthetic")


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    """4 distinct landscape frames, float [F, 3, H, W] in [0, 1] (letterboxing pads them top and bottom)."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 10, 16, generator=generator)
    frames = [
        torch.nn.functional.interpolate(base.roll(i * 3, dims=-1), size=(100, 160), mode="bilinear")
        for i in range(4)
    ]
    return torch.cat(frames).clamp(0, 1)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ---- the stand-ins: scores, batching, gradients ---------------------------------------------------------


@pytest.mark.parametrize("which", ["hps", "aes"])
def test_stand_ins_score_batch_and_differentiate(which, request, video):
    reward = request.getfixturevalue(which)
    assert isinstance(reward, Reward)
    frames = video.clone().requires_grad_(True)
    scores = reward.score_frames(frames, PROMPT, batch_size=3)  # batches of 3 + 1
    assert scores.shape == (len(video),) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert len({round(float(s), 6) for s in scores.detach()}) == len(video)  # every frame scores differently
    scores.sum().backward()
    assert (frames.grad.flatten(1).abs().sum(1) > 0).all()  # gradients reach every frame
    single = torch.cat([reward.score_frames(video[i : i + 1], PROMPT) for i in range(len(video))])
    torch.testing.assert_close(scores.detach(), single, atol=1e-4, rtol=1e-5)
    assert not reward.score_frames(video, PROMPT).requires_grad  # no graph without grad


def test_hps_depends_on_the_prompt_and_aesthetic_does_not(hps, aes, video):
    assert (
        hps.score_frames(video, PROMPT) - hps.score_frames(video, "black cat in the snow")
    ).abs().max() > 1e-3
    torch.testing.assert_close(aes.score_frames(video, PROMPT), aes.score_frames(video, "black cat"))


def test_stand_ins_have_the_real_widths(hps, aes):
    vision, text = hps.model.config.vision_config, hps.model.config.text_config
    assert (vision.hidden_size, vision.num_attention_heads, vision.intermediate_size) == (1280, 16, 5120)
    assert (vision.patch_size, vision.image_size, vision.hidden_act) == (14, 224, "gelu")
    assert (text.hidden_size, text.num_attention_heads, text.max_position_embeddings) == (1024, 16, 77)
    assert hps.model.config.projection_dim == 1024
    assert (aes.vision.config.hidden_size, aes.vision.config.projection_dim) == (1024, 768)
    assert aes.vision.config.hidden_act == "quick_gelu"
    widths = [m.in_features for m in aes.head if isinstance(m, torch.nn.Linear)] + [1]
    dropouts = [m.p for m in aes.head if isinstance(m, torch.nn.Dropout)]
    assert widths == [768, 1024, 128, 64, 16, 1] and dropouts == [0.2, 0.2, 0.1]
    assert [i for i, m in enumerate(aes.head) if isinstance(m, torch.nn.Linear)] == [0, 2, 4, 6, 7]


# ---- HPS v2 pre-processing: letterbox, not centre crop --------------------------------------------------


def test_letterbox_follows_resize_max_size():
    # 100 x 160: the longer side becomes 224, the other round(100 * 1.4) = 140; 84 rows of padding, 42 on top.
    frame = torch.full((1, 3, 100, 160), 0.5)
    boxed = hpsv2_mod.letterbox(frame)
    assert boxed.shape == (1, 3, 224, 224)
    assert (boxed[..., :42, :] == 0).all() and (boxed[..., 182:, :] == 0).all()
    torch.testing.assert_close(boxed[..., 42:182, :], torch.full((1, 3, 140, 224), 0.5))
    # odd padding: 101 x 160 -> round(141.4) = 141 rows, 83 padding rows: 41 on top, 42 below
    boxed = hpsv2_mod.letterbox(torch.full((1, 3, 101, 160), 0.5))
    assert (
        (boxed[..., :41, :] == 0).all()
        and (boxed[..., 41, :] != 0).all()
        and (boxed[..., 182:, :] == 0).all()
    )


def test_hps_pil_uint8_and_tensor_routes_agree(hps, video):
    uint8 = (video.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    as_tensor = torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255
    pil = [Image.fromarray(frame) for frame in uint8]
    a, b, c = (hps.score_frames(x, PROMPT) for x in (pil, uint8, as_tensor))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(b, c, atol=1e-4, rtol=1e-5)


# ---- HPS v2 files: the layouts users have ---------------------------------------------------------------

WV, WT, E, VOCAB = 1280, 1024, 1024, 514


def open_clip_state_dict(layers: int = 1, width_v: int = WV, seed: int = 0) -> dict[str, torch.Tensor]:
    """OpenCLIP ViT keys written out from open_clip's modules (VisionTransformer, TextTransformer), not
    derived from our mapping; real ViT-H-14 widths, `layers` blocks per tower, a 514-token vocabulary."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.02):
        return torch.randn(*shape, generator=g) * scale

    def block(prefix: str, d: int) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}ln_1.weight": 1 + r(d), f"{prefix}ln_1.bias": r(d),
            f"{prefix}attn.in_proj_weight": r(3 * d, d, scale=d**-0.5), f"{prefix}attn.in_proj_bias": r(3 * d),
            f"{prefix}attn.out_proj.weight": r(d, d, scale=d**-0.5), f"{prefix}attn.out_proj.bias": r(d),
            f"{prefix}ln_2.weight": 1 + r(d), f"{prefix}ln_2.bias": r(d),
            f"{prefix}mlp.c_fc.weight": r(4 * d, d, scale=d**-0.5), f"{prefix}mlp.c_fc.bias": r(4 * d),
            f"{prefix}mlp.c_proj.weight": r(d, 4 * d, scale=(4 * d) ** -0.5), f"{prefix}mlp.c_proj.bias": r(d),
        }  # fmt: skip

    sd = {
        "visual.class_embedding": r(width_v, scale=1.0),
        "visual.positional_embedding": r(257, width_v, scale=1.0),
        "visual.conv1.weight": r(width_v, 3, 14, 14, scale=0.05),
        "visual.ln_pre.weight": 1 + r(width_v), "visual.ln_pre.bias": r(width_v),
        "visual.ln_post.weight": 1 + r(width_v), "visual.ln_post.bias": r(width_v),
        "visual.proj": r(width_v, E, scale=width_v**-0.5),
        "token_embedding.weight": r(VOCAB, WT, scale=1.0),
        "positional_embedding": r(77, WT, scale=1.0),
        "ln_final.weight": 1 + r(WT), "ln_final.bias": r(WT),
        "text_projection": r(WT, E, scale=WT**-0.5),
        "logit_scale": torch.tensor(4.6052),
    }  # fmt: skip
    for i in range(layers):
        sd.update(block(f"visual.transformer.resblocks.{i}.", width_v))
        sd.update(block(f"transformer.resblocks.{i}.", WT))
    return sd


@pytest.fixture(scope="module")
def hps_files(tmp_path_factory, hps):
    """An HPS-layout checkpoint (`{"state_dict": ...}`) and a CLIPTokenizer folder."""
    folder = tmp_path_factory.mktemp("hps")
    torch.save({"state_dict": open_clip_state_dict()}, folder / "HPS_v2_compressed.pt")
    hps.tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def test_open_clip_layout_maps_onto_clip_model_completely(hps):
    sd = open_clip_state_dict()
    converted = openclip.convert_state_dict(sd, "test")
    expected = hps.model.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)
    # in_proj splits into q, k, v in that order; the projections are transposed
    q = converted["vision_model.encoder.layers.0.self_attn.q_proj.weight"]
    v = converted["vision_model.encoder.layers.0.self_attn.v_proj.weight"]
    torch.testing.assert_close(q, sd["visual.transformer.resblocks.0.attn.in_proj_weight"][:WV])
    torch.testing.assert_close(v, sd["visual.transformer.resblocks.0.attn.in_proj_weight"][2 * WV :])
    torch.testing.assert_close(converted["text_projection.weight"], sd["text_projection"].T)
    # and back: the inverse the parity script uses returns the same keys and values
    back = openclip.to_open_clip_state_dict(converted)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_hpsv2_loads_the_released_layout_and_variants(hps_files, tmp_path, video):
    tokenizer = hps_files / "tokenizer"
    reward = load_reward("hpsv2", hps_checkpoint=hps_files / "HPS_v2_compressed.pt", hps_tokenizer=tokenizer)
    assert reward.name == "hpsv2"
    scores = reward.score_frames(video, PROMPT)
    assert torch.isfinite(scores).all() and scores.std() > 0
    # the same weights as a DDP-prefixed plain state dict and as safetensors score the same
    sd = open_clip_state_dict()
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "plain.pt")
    from safetensors.torch import save_file

    save_file(sd, tmp_path / "hps.safetensors")
    for path in (tmp_path / "plain.pt", tmp_path / "hps.safetensors"):
        other = load_reward("hpsv2", hps_checkpoint=path, hps_tokenizer=tokenizer)
        torch.testing.assert_close(other.score_frames(video, PROMPT), scores, atol=0, rtol=0)


def test_hpsv2_finds_its_files_through_the_environment(hps_files, monkeypatch, video):
    monkeypatch.setenv(hpsv2_mod.ENV_CHECKPOINT, str(hps_files / "HPS_v2_compressed.pt"))
    monkeypatch.setenv(hpsv2_mod.ENV_TOKENIZER, str(hps_files / "tokenizer"))
    assert load_reward("hpsv2").score_frames(video[:1], PROMPT).shape == (1,)


def test_hpsv2_refusals_are_one_line(hps_files, tmp_path, monkeypatch):
    for env in (hpsv2_mod.ENV_CHECKPOINT, hpsv2_mod.ENV_TOKENIZER):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(hpsv2_mod, "_from_hf_cache", lambda repo, name: None)  # nothing cached
    tokenizer = hps_files / "tokenizer"
    with pytest.raises(RewardError) as exc:
        load_reward("hpsv2", hps_tokenizer=tokenizer)
    assert re.search(r"HPS v2 checkpoint not found.*RENEG_HPSV2_CKPT.*xswu/HPSv2", _one_line(exc))
    with pytest.raises(RewardError) as exc:
        load_reward("hpsv2", hps_checkpoint=tmp_path / "nope.pt", hps_tokenizer=tokenizer)
    assert "is not a file" in _one_line(exc)

    def refused(state, fragment: str, name: str = "bad.pt") -> None:
        path = tmp_path / name
        if isinstance(state, bytes):
            path.write_bytes(state)
        else:
            torch.save(state, path)
        with pytest.raises(RewardError) as info:
            load_reward("hpsv2", hps_checkpoint=path, hps_tokenizer=tokenizer)
        assert fragment in _one_line(info), str(info.value)

    good = open_clip_state_dict()
    refused(b"\x00not a checkpoint" * 10, "could not be read as weights-only tensors")
    refused({"state_dict": {"x": Image.new("RGB", (2, 2))}}, "could not be read")  # pickle of an object
    refused([1, 2], "not a state dict of tensors")
    refused({"state_dict": {k: v for k, v in good.items() if k != "visual.proj"}}, "lacks 'visual.proj'")
    refused(
        {"state_dict": {k: v for k, v in good.items() if k != "transformer.resblocks.0.ln_2.bias"}},
        "lacks 'text_model.encoder.layers.0.layer_norm2.bias'",
    )
    refused({"state_dict": {**good, "visual.extra.weight": torch.zeros(1)}}, "not OpenCLIP ViT's")
    refused(
        {"state_dict": open_clip_state_dict(width_v=768)},
        "vision width 768; expected OpenCLIP ViT-H-14's 1280",
    )
    nan = dict(good)
    nan["ln_final.bias"] = torch.full((WT,), float("nan"))
    refused({"state_dict": nan}, "holds NaN or inf")
    # a tokenizer larger than the checkpoint's embedding table
    small = {**good, "token_embedding.weight": good["token_embedding.weight"][:100]}
    refused({"state_dict": small}, "the tokenizer has 514 tokens")


def _fake_bpe(path: Path, merges: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(["#version: 0.2", *merges]) + "\n")
    return path


def test_bpe_file_builds_clip_tokenizer(tmp_path):
    tokenizer = openclip.bpe_tokenizer(
        _fake_bpe(tmp_path / "bpe.txt.gz", ["t h", "th e</w>", "c a", "ca t</w>"])
    )
    vocab = tokenizer.get_vocab()
    # 256 byte symbols, 256 end-of-word symbols, the merges in order, then the two specials
    assert len(tokenizer) == 512 + 4 + 2 and vocab["th"] == 512 and vocab["cat</w>"] == 515
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (516, 517)
    ids = openclip.open_clip_tokens(tokenizer, "The  CAT")
    assert ids.shape == (1, 77)
    assert ids[0, :4].tolist() == [516, vocab["the</w>"], vocab["cat</w>"], 517] and (ids[0, 4:] == 0).all()
    long = openclip.open_clip_tokens(tokenizer, "cat " * 100)
    assert long[0, 0] == 516 and long[0, -1] == 517 and (long[0, 1:-1] == vocab["cat</w>"]).all()
    (tmp_path / "broken.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(RewardError) as exc:
        openclip.bpe_tokenizer(tmp_path / "broken.txt.gz")
    assert "could not be read" in _one_line(exc)


def test_hpsv2_tokenizer_from_a_bpe_file(hps_files, tmp_path):
    """A BPE .txt.gz given as the tokenizer builds the vocabulary; one larger than the checkpoint's
    embedding table (here 514 rows) is refused."""
    merges = [f"{a} {b}</w>" for a in "abcdefgh" for b in "abcdefgh"]
    bpe = _fake_bpe(tmp_path / openclip.BPE_FILE, merges)  # 512 + 64 + 2 = 578 tokens > 514
    with pytest.raises(RewardError) as exc:
        load_reward("hpsv2", hps_checkpoint=hps_files / "HPS_v2_compressed.pt", hps_tokenizer=bpe)
    assert "the tokenizer has 578 tokens" in _one_line(exc)


# ---- the aesthetic predictor's files --------------------------------------------------------------------


@pytest.fixture(scope="module")
def aes_files(tmp_path_factory, aes):
    """The released MLP layout (`layers.N.*`, a plain state dict) and a full CLIPModel folder (text tower
    included, as openai/clip-vit-large-patch14 is saved) holding the stand-in's vision weights."""
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("aesthetic")
    torch.save(
        {f"layers.{k}": v for k, v in aes.head.state_dict().items()}, folder / aesthetic_mod.RELEASED_FILE
    )
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "vocab_size": 514, "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513}  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=aes.vision.config.to_dict(), projection_dim=768)
    clip = perturb_(CLIPModel(config), 5)
    clip.vision_model.load_state_dict(aes.vision.vision_model.state_dict())
    clip.visual_projection.load_state_dict(aes.vision.visual_projection.state_dict())
    clip.save_pretrained(folder / "clip-vit-large-patch14")
    return folder


def test_aesthetic_loads_the_released_layout(aes, aes_files, monkeypatch, video):
    mlp, clip = aes_files / aesthetic_mod.RELEASED_FILE, aes_files / "clip-vit-large-patch14"
    reward = load_reward("aesthetic", aesthetic_checkpoint=mlp, aesthetic_clip=clip)
    torch.testing.assert_close(reward.score_frames(video, PROMPT), aes.score_frames(video, PROMPT))
    monkeypatch.setenv(aesthetic_mod.ENV_CHECKPOINT, str(mlp))
    monkeypatch.setenv(aesthetic_mod.ENV_CLIP, str(clip))
    assert load_reward("aesthetic").name == "aesthetic"


def test_aesthetic_refusals_are_one_line(aes, aes_files, tmp_path, monkeypatch):
    from reneg_video.rewards import clip as clip_mod

    for env in (aesthetic_mod.ENV_CHECKPOINT, aesthetic_mod.ENV_CLIP):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(clip_mod, "_snapshot_from_hf_cache", lambda repo: None)
    mlp, clip = aes_files / aesthetic_mod.RELEASED_FILE, aes_files / "clip-vit-large-patch14"
    with pytest.raises(RewardError) as exc:
        load_reward("aesthetic", aesthetic_clip=clip)
    assert re.search(
        r"weights not found.*RENEG_AESTHETIC_CKPT.*sac\+logos\+ava1-l14-linearMSE", _one_line(exc)
    )
    with pytest.raises(RewardError) as exc:
        load_reward("aesthetic", aesthetic_checkpoint=mlp)
    assert re.search(r"CLIP ViT-L/14 not found.*openai/clip-vit-large-patch14", _one_line(exc))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewardError) as exc:
        load_reward("aesthetic", aesthetic_checkpoint=mlp, aesthetic_clip=tmp_path / "empty")
    assert "could not be loaded" in _one_line(exc)

    good = {f"layers.{k}": v for k, v in aes.head.state_dict().items()}

    def refused(state, fragment: str) -> None:
        path = tmp_path / "mlp.pth"
        if isinstance(state, bytes):
            path.write_bytes(state)
        else:
            torch.save(state, path)
        with pytest.raises(RewardError) as info:
            load_reward("aesthetic", aesthetic_checkpoint=path, aesthetic_clip=clip)
        assert fragment in _one_line(info), str(info.value)

    refused(b"garbage" * 20, "could not be read as a weights-only torch state dict")
    refused({k.replace("layers.", ""): v for k, v in good.items()}, "lacks 'layers.0.bias'")
    refused({**good, "layers.8.weight": torch.zeros(1)}, "unexpected key 'layers.8.weight'")
    refused({**good, "layers.0.weight": torch.zeros(1024, 1024)}, "is the CLIP model ViT-L/14?")
    refused({**good, "layers.7.bias": torch.tensor([float("inf")])}, "holds NaN or inf")


# ---- ensembles and the CLI ------------------------------------------------------------------------------


def test_ensemble_with_hps_and_aesthetic_is_a_differentiable_weighted_sum(hps, aes, video):
    ensemble = load_reward_spec("tiny-imagereward:1,tiny-hpsv2:5,tiny-aesthetic:0.5")
    frames = video.clone().requires_grad_(True)
    total = ensemble.score_frames(frames, PROMPT)
    each = ensemble.score_each(video, PROMPT)
    expected = (
        each["tiny-imagereward"] + 5 * hps.score_frames(video, PROMPT) + 0.5 * aes.score_frames(video, PROMPT)
    )
    torch.testing.assert_close(total.detach(), expected, atol=1e-4, rtol=1e-5)
    total.sum().backward()
    assert (frames.grad.flatten(1).abs().sum(1) > 0).all()


def test_ensemble_routes_each_file_to_its_own_reward(hps_files, aes_files, video):
    """ImageReward's `checkpoint=`/`tokenizer=` must not reach hpsv2 or aesthetic in the same spec."""
    ensemble = load_reward_spec(
        "tiny-imagereward:1,hpsv2:5,aesthetic:0.5",
        checkpoint="ImageReward.pt",  # would break hpsv2 if it were routed there
        tokenizer="bert-base-uncased/",
        hps_checkpoint=hps_files / "HPS_v2_compressed.pt",
        hps_tokenizer=hps_files / "tokenizer",
        aesthetic_checkpoint=aes_files / aesthetic_mod.RELEASED_FILE,
        aesthetic_clip=aes_files / "clip-vit-large-patch14",
    )
    assert [r.name for r, _ in ensemble.members] == ["tiny-imagereward", "hpsv2", "aesthetic"]
    assert ensemble.score_frames(video[:2], PROMPT).shape == (2,)


def _gif(path: Path) -> Path:
    frames = [Image.fromarray(np.full((48, 64, 3), 40 * i, dtype=np.uint8)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def test_score_cli_with_the_stand_ins(tmp_path, capsys):
    out = tmp_path / "s.json"
    argv = [str(_gif(tmp_path / "v.gif")), "--prompt", PROMPT, "--reward", "tiny-hpsv2,tiny-aesthetic"]
    assert score_cli.main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rewards"] == ["tiny-hpsv2", "tiny-aesthetic"] and len(report["frames"]) == 3
    assert "noise" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "fragment"), [("hpsv2", "RENEG_HPSV2_CKPT"), ("aesthetic", "RENEG_AESTHETIC_CKPT")]
)
def test_score_cli_missing_files_exit_2_before_loading(name, fragment, tmp_path, monkeypatch, capsys):
    for env in (hpsv2_mod.ENV_CHECKPOINT, aesthetic_mod.ENV_CHECKPOINT):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(hpsv2_mod, "_from_hf_cache", lambda repo, file: None)
    monkeypatch.setattr("reneg_video.rewards.load_reward", lambda *a, **k: pytest.fail("a model loaded"))
    out = tmp_path / "s.json"
    code = score_cli.main(
        [str(_gif(tmp_path / "v.gif")), "--prompt", PROMPT, "--reward", name, "--json", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_score_help_names_the_new_rewards_and_their_files(capsys):
    with pytest.raises(SystemExit):
        score_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("hpsv2", "aesthetic", "tiny-hpsv2", "tiny-aesthetic", "$RENEG_HPSV2_CKPT",
                     "$RENEG_HPSV2_TOKENIZER", "$RENEG_AESTHETIC_CKPT", "$RENEG_AESTHETIC_CLIP"):  # fmt: skip
        assert fragment in text


def test_real_clip_bpe_tokenizes_as_open_clip():
    """With CLIP's real BPE file (from $RENEG_HPSV2_TOKENIZER or an installed open_clip/clip/hpsv2), the
    ids equal those hpsv2 1.2.0's open_clip tokenizer gave for this prompt (seen by scripts/parity_hpsv2.py)."""
    import os

    path = os.environ.get(hpsv2_mod.ENV_TOKENIZER) or hpsv2_mod._bpe_in_installed_packages()
    if not path or not str(path).endswith(".gz"):
        pytest.skip(f"CLIP's {openclip.BPE_FILE} not found: set ${hpsv2_mod.ENV_TOKENIZER} to run this case")
    tokenizer = openclip.bpe_tokenizer(path)
    assert len(tokenizer) == openclip.CLIP_VOCAB
    ids = openclip.open_clip_tokens(tokenizer, "a corgi surfing a wave")[0].tolist()
    assert ids[:8] == [49406, 320, 31320, 15762, 320, 4535, 49407, 0] and not any(ids[7:])
