"""Reward models: the tiny ImageReward end to end, the official key mapping, specs, refusals.

Offline and CPU only. The real-weights case runs only where $RENEG_IMAGEREWARD_CKPT points at a local
ImageReward.pt.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import reneg_video
from reneg_video.core.errors import RewardError
from reneg_video.rewards import (
    Reward,
    RewardEnsemble,
    load_reward,
    load_reward_spec,
    parse_reward_spec,
)
from reneg_video.rewards.frames import preprocess_pil, preprocess_tensor
from reneg_video.rewards.imagereward import (
    ImageRewardModel,
    convert_official_state_dict,
    load_official_weights,
    resolve_files,
    text_config_from_med,
)

from ..conftest import SHARED

PROMPT = "a corgi surfing a wave"


@pytest.fixture(scope="module")
def tiny() -> Reward:
    return load_reward("tiny-imagereward")


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    """6 distinct non-square frames, float [F, 3, H, W] in [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 12, 16, generator=generator)
    frames = [
        torch.nn.functional.interpolate(base.roll(i, dims=-1), size=(120, 160), mode="bilinear")
        for i in range(6)
    ]
    return torch.cat(frames).clamp(0, 1)


def test_readme_example_tiny(tiny, video):
    reward = reneg_video.load_reward("tiny-imagereward")
    scores = reward.score_frames(video, PROMPT)
    assert isinstance(reward, Reward)
    assert scores.shape == (video.shape[0],)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    # Seeded perturbed weights: frames score differently (a constant model would hide mapping bugs).
    assert scores.std() > 1e-3


def test_tiny_is_deterministic(tiny, video):
    again = load_reward("tiny-imagereward")
    torch.testing.assert_close(again.score_frames(video, PROMPT), tiny.score_frames(video, PROMPT))
    other = load_reward("tiny-imagereward", seed=1)
    assert not torch.allclose(other.score_frames(video, PROMPT), tiny.score_frames(video, PROMPT))


def test_prompt_changes_scores(tiny, video):
    a = tiny.score_frames(video, "a corgi surfing a wave")
    b = tiny.score_frames(video, "black cat in the snow at night")
    assert (a - b).abs().max() > 1e-4


def test_gradients_reach_frames(tiny, video):
    frames = video.clone().requires_grad_(True)
    scores = tiny.score_frames(frames, PROMPT, batch_size=4)
    assert scores.requires_grad
    scores.sum().backward()
    assert frames.grad is not None and torch.isfinite(frames.grad).all()
    # every frame gets its own non-zero gradient, also across the batch boundary (4 | 2)
    assert (frames.grad.flatten(1).abs().sum(1) > 0).all()
    # the model stays frozen: no parameter collects a gradient
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())


def test_no_grad_input_gives_no_graph(tiny, video):
    assert not tiny.score_frames(video, PROMPT).requires_grad


def test_batched_equals_one_by_one(tiny, video):
    batched = tiny.score_frames(video, PROMPT, batch_size=4)
    single = torch.cat([tiny.score_frames(video[i : i + 1], PROMPT, batch_size=1) for i in range(len(video))])
    assert (batched - single).abs().max() <= 1e-5


# Fills all 35 tokens (truncated), so there is no padding to drop.
LONG_PROMPT = " ".join(["a corgi surfing a wave in the sea"] * 6)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "f.linear"])
@pytest.mark.parametrize("case", ["padded", "long", "mask-hole"])
def test_forward_matches_transformers_forward(tiny, video, monkeypatch, onednn, case):
    """Our forward (SDPA, padding dropped, the prompt-only prefix run once, fused oneDNN linears) scores
    like transformers' own BLIP forwards, the path that matched image-reward 1.5 with a difference of 0.0."""
    from reneg_video.rewards import imagereward

    monkeypatch.setattr(imagereward, "USE_ONEDNN", onednn)
    pixels = preprocess_tensor(video, tiny.input_size)
    ids, mask = tiny.tokenize(LONG_PROMPT if case == "long" else PROMPT)
    assert bool(mask.all()) == (case == "long")
    if case == "mask-hole":  # not what tokenize makes; the general masked path must still be right
        mask = mask.clone()
        mask[0, 2] = 0
    with torch.inference_mode():
        assert imagereward.onednn_linears(pixels) == (onednn and imagereward.ONEDNN_PRESENT)
        ours = tiny.model(pixels, ids, mask)
        reference = tiny.model.forward_transformers(pixels, ids, mask)
    assert reference.std() > 1e-3  # frames score differently, so a wrong step could not hide
    assert (ours - reference).abs().max() <= 1e-5


def test_forward_gradients_match_transformers_forward(tiny, video):
    """With autograd on, our forward (plain F.linear there) gives the reference path's gradients."""
    pixels = preprocess_tensor(video[:3], tiny.input_size)
    ids, mask = tiny.tokenize(PROMPT)
    grads = []
    for forward in (tiny.model.forward, tiny.model.forward_transformers):
        frames = pixels.clone().requires_grad_(True)
        forward(frames, ids, mask).sum().backward()
        grads.append(frames.grad)
    assert grads[1].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_onednn_linears_only_where_they_apply():
    """oneDNN's fused ops have no backward and do not autocast: only float32 CPU without grad/autocast."""
    from reneg_video.rewards.imagereward import ONEDNN_PRESENT, onednn_linears

    x = torch.zeros(2)
    assert not onednn_linears(x)  # grad mode on
    with torch.inference_mode():
        assert onednn_linears(x) == ONEDNN_PRESENT
        assert not onednn_linears(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn_linears(x)
    with torch.no_grad():
        assert onednn_linears(x) == ONEDNN_PRESENT


def test_pil_uint8_tensor_paths_agree(tiny, video):
    uint8 = (video * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    pil = [Image.fromarray(frame) for frame in uint8]
    from_pil = tiny.score_frames(pil, PROMPT)
    from_uint8 = tiny.score_frames(uint8, PROMPT)
    from_tensor = tiny.score_frames(torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255, PROMPT)
    torch.testing.assert_close(from_uint8, from_pil, rtol=0, atol=0)  # same route: identical
    spread = from_pil.max() - from_pil.min()
    assert (from_tensor - from_pil).abs().max() < 0.1 * spread


def test_tensor_preprocessing_follows_pil():
    """The differentiable route lands on the PIL route's pixels up to uint8 rounding. Pixel noise at a
    2.1x downscale: without antialiasing the mean difference would be ~0.6, with it ~0.004."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8))
    pil = preprocess_pil([image], 224)
    tensor = preprocess_tensor(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255, 224)
    assert pil.shape == tensor.shape == (1, 3, 224, 224)
    # normalised units: 1/255 of a pixel is ~0.015 here
    assert (pil - tensor).abs().mean() < 0.01


def test_pil_resize_rule_matches_torchvision():
    """Short side to 224 with int() truncation, then a centre crop with round(): torchvision's rule."""
    from reneg_video.rewards.frames import _crop_offsets, _resized_size

    assert _resized_size(256, 320, 224) == (224, 280)
    assert _resized_size(333, 250, 224) == (298, 224)  # int(224 * 333 / 250) = int(298.37)
    assert _crop_offsets(224, 280, 224) == (0, 28)
    assert _crop_offsets(298, 224, 224) == (37, 0)


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        ([], "empty"),
        (torch.rand(2, 3, 8, 8) * 255, "[0, 1]"),
        (torch.rand(2, 8, 8, 3), "[F, 3, H, W]"),
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "uint8"),
        ([np.zeros((8, 8, 3), dtype=np.uint8)], "PIL"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    ],
)
def test_bad_frames_refused(tiny, frames, fragment):
    with pytest.raises(RewardError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        tiny.score_frames(frames, PROMPT)


def test_unknown_reward_and_argument():
    with pytest.raises(RewardError, match="unknown reward 'hpsv9'.*imagereward"):
        load_reward("hpsv9")
    with pytest.raises(RewardError, match="no argument 'checkpoint'"):
        load_reward("tiny-imagereward", checkpoint="x.pt")


def test_parse_reward_spec():
    assert parse_reward_spec("imagereward:1,hpsv2:5") == [("imagereward", 1.0), ("hpsv2", 5.0)]
    assert parse_reward_spec(" imagereward , clip:0.01") == [("imagereward", 1.0), ("clip", 0.01)]
    for bad, fragment in [
        ("", "empty"),
        ("imagereward:x", "not a number"),
        ("imagereward:0", "non-zero"),
        ("imagereward:nan", "finite"),
        ("a,a", "twice"),
        ("a,,b", "empty name"),
    ]:
        with pytest.raises(RewardError, match=fragment):
            parse_reward_spec(bad)


def test_ensemble_is_weighted_sum(tiny, video):
    ensemble = load_reward_spec("tiny-imagereward:2.5")
    assert isinstance(ensemble, Reward) and isinstance(ensemble, RewardEnsemble)
    torch.testing.assert_close(ensemble.score_frames(video, PROMPT), 2.5 * tiny.score_frames(video, PROMPT))
    with pytest.raises(RewardError, match="unknown reward 'hpsv9'"):
        load_reward_spec("tiny-imagereward:1,hpsv9:5")  # names are checked before anything loads


# ---- the official checkpoint format ------------------------------------------------------------------

# A small model with the layout of image-reward 1.5's `ImageReward` module: BLIP ViT (vit.py),
# BERT "MED" text encoder with cross-attention (med.py), MLP head; widths are tiny, keys are official.
V, T, VL, TL, VOCAB, POS = 32, 24, 2, 2, 50, 40
HEAD = (T, 20, 12, 8, 4, 1)


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-format keys written out from the reference modules (not derived from our mapping)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = {
        "blip.visual_encoder.cls_token": r(1, 1, V),
        "blip.visual_encoder.pos_embed": r(1, (224 // 16) ** 2 + 1, V),
        "blip.visual_encoder.patch_embed.proj.weight": r(V, 3, 16, 16),
        "blip.visual_encoder.patch_embed.proj.bias": r(V),
        "blip.visual_encoder.norm.weight": r(V),
        "blip.visual_encoder.norm.bias": r(V),
        "blip.text_encoder.embeddings.position_ids": torch.arange(POS)[None],
        "blip.text_encoder.embeddings.word_embeddings.weight": r(VOCAB, T),
        "blip.text_encoder.embeddings.position_embeddings.weight": r(POS, T),
        "blip.text_encoder.embeddings.LayerNorm.weight": r(T),
        "blip.text_encoder.embeddings.LayerNorm.bias": r(T),
        "blip.vision_proj.weight": r(256, V),
        "blip.vision_proj.bias": r(256),
        "blip.text_proj.weight": r(256, T),
        "blip.text_proj.bias": r(256),
    }
    for i in range(VL):
        p = f"blip.visual_encoder.blocks.{i}."
        for norm in ("norm1", "norm2"):
            sd[p + norm + ".weight"], sd[p + norm + ".bias"] = r(V), r(V)
        sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"] = r(3 * V, V), r(3 * V)
        sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"] = r(V, V), r(V)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = r(4 * V, V), r(4 * V)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = r(V, 4 * V), r(V)
    for i in range(TL):
        p = f"blip.text_encoder.encoder.layer.{i}."
        for block, kv_width in (("attention", T), ("crossattention", V)):
            sd[p + block + ".self.query.weight"], sd[p + block + ".self.query.bias"] = r(T, T), r(T)
            sd[p + block + ".self.key.weight"], sd[p + block + ".self.key.bias"] = r(T, kv_width), r(T)
            sd[p + block + ".self.value.weight"], sd[p + block + ".self.value.bias"] = r(T, kv_width), r(T)
            sd[p + block + ".output.dense.weight"], sd[p + block + ".output.dense.bias"] = r(T, T), r(T)
            sd[p + block + ".output.LayerNorm.weight"], sd[p + block + ".output.LayerNorm.bias"] = r(T), r(T)
        sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"] = r(4 * T, T), r(4 * T)
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = r(T, 4 * T), r(T)
        sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"] = r(T), r(T)
    for index, (n_in, n_out) in zip((0, 2, 4, 6, 7), zip(HEAD[:-1], HEAD[1:], strict=True), strict=True):
        sd[f"mlp.layers.{index}.weight"], sd[f"mlp.layers.{index}.bias"] = r(n_out, n_in), r(n_out)
    return sd


def small_model() -> ImageRewardModel:
    from transformers import BlipVisionConfig

    vision = BlipVisionConfig(
        hidden_size=V, intermediate_size=4 * V, num_hidden_layers=VL, num_attention_heads=4, image_size=224,
        patch_size=16, layer_norm_eps=1e-6,
    )  # fmt: skip
    med = {"vocab_size": VOCAB, "hidden_size": T, "intermediate_size": 4 * T, "num_hidden_layers": TL,
           "num_attention_heads": 4, "max_position_embeddings": POS}  # fmt: skip
    return ImageRewardModel(vision, text_config_from_med(med, encoder_width=V), HEAD)


def test_official_state_dict_maps_without_missing_or_unexpected_keys():
    official = official_state_dict()
    model = small_model()
    converted = convert_official_state_dict(official)
    result = model.load_state_dict(converted, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    # values land where the renames say
    sd = model.state_dict()
    torch.testing.assert_close(
        sd["vision.encoder.layers.1.self_attn.qkv.weight"],
        official["blip.visual_encoder.blocks.1.attn.qkv.weight"],
    )
    torch.testing.assert_close(
        sd["vision.embeddings.class_embedding"], official["blip.visual_encoder.cls_token"]
    )
    torch.testing.assert_close(sd["vision.post_layernorm.bias"], official["blip.visual_encoder.norm.bias"])
    torch.testing.assert_close(
        sd["text.encoder.layer.0.crossattention.self.key.weight"],
        official["blip.text_encoder.encoder.layer.0.crossattention.self.key.weight"],
    )
    torch.testing.assert_close(sd["head.7.weight"], official["mlp.layers.7.weight"])
    load_official_weights(model, official, "synthetic")  # the strict loader accepts it too


def test_official_state_dict_refusals():
    model = small_model()
    extra = {**official_state_dict(), "blip.itm_head.weight": torch.zeros(2, T)}
    with pytest.raises(RewardError, match="not ImageReward's.*blip.itm_head.weight"):
        load_official_weights(model, extra, "x.pt")
    missing = official_state_dict()
    del missing["mlp.layers.6.bias"]
    with pytest.raises(RewardError, match="lacks 1 ImageReward weights.*head.6.bias"):
        load_official_weights(model, missing, "x.pt")
    wrong = official_state_dict()
    wrong["mlp.layers.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(RewardError, match="shape"):
        load_official_weights(model, wrong, "x.pt")


def test_official_file_loads_through_load_reward(tmp_path, monkeypatch, video):
    """Full-width layout is checked by scripts/parity_imagereward.py; here the file route end to end:
    a saved official-format checkpoint with a matching med_config and a local vocab folder."""
    import json

    from reneg_video.rewards import imagereward

    monkeypatch.setattr(imagereward, "vision_config_official", lambda: small_model().vision.config)
    monkeypatch.setattr(imagereward, "VIT_WIDTH", V)
    monkeypatch.setattr(imagereward, "HEAD_WIDTHS", HEAD)
    torch.save(official_state_dict(), tmp_path / "ImageReward.pt")
    med = {"vocab_size": VOCAB, "hidden_size": T, "intermediate_size": 4 * T, "num_hidden_layers": TL,
           "num_attention_heads": 4, "max_position_embeddings": POS}  # fmt: skip
    (tmp_path / "med_config.json").write_text(json.dumps(med))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(imagereward.tiny_vocab()[: VOCAB - 2]) + "\n")
    reward = load_reward(
        "imagereward",
        checkpoint=tmp_path / "ImageReward.pt",
        med_config=tmp_path / "med_config.json",
        tokenizer=tmp_path / "tok",
    )
    scores = reward.score_frames(video, PROMPT)
    assert scores.shape == (len(video),) and torch.isfinite(scores).all()


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    for env in ("RENEG_IMAGEREWARD_CKPT", "RENEG_IMAGEREWARD_MED_CONFIG", "RENEG_IMAGEREWARD_TOKENIZER"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr("reneg_video.rewards.imagereward._from_hf_cache", lambda repo, name: None)
    with pytest.raises(
        RewardError, match=r"checkpoint not found.*THUDM/ImageReward.*RENEG_IMAGEREWARD_CKPT"
    ) as info:
        load_reward("imagereward")
    assert "\n" not in str(info.value)
    with pytest.raises(RewardError, match="is not a file"):
        resolve_files(checkpoint=tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    (tmp_path / "tok").mkdir()
    with pytest.raises(RewardError, match="weights-only"):
        load_reward(
            "imagereward", checkpoint=tmp_path / "bad.pt", med_config=SHARED / "imagereward" / "med_config.json",
            tokenizer=tmp_path / "tok",
        )  # fmt: skip


# ---- real weights, only where the user has them -----------------------------------------------------

REAL_PROMPT = "a painting of an ocean with clouds and birds, day time, low depth field effect"
REAL_SCORES = (0.58, 0.27, -1.41, -2.03)  # shared/imagereward/README: ImageReward-v1.0 on 1..4.webp
REAL_TOLERANCE = 0.02


@pytest.mark.skipif(
    not os.environ.get("RENEG_IMAGEREWARD_CKPT"),
    reason="real ImageReward weights absent: set RENEG_IMAGEREWARD_CKPT (and RENEG_IMAGEREWARD_TOKENIZER, "
    "or cache bert-base-uncased) to a local ImageReward.pt to run this case",
)
def test_real_imagereward_reference_case():
    folder = SHARED / "imagereward"
    if not (folder / "1.webp").is_file():
        pytest.skip(f"reference images absent: {folder} (the shared/ folder beside the repo)")
    med = os.environ.get("RENEG_IMAGEREWARD_MED_CONFIG") or folder / "med_config.json"
    reward = load_reward("imagereward", med_config=med)
    images = [Image.open(folder / f"{i}.webp") for i in range(1, 5)]
    scores = reward.score_frames(images, REAL_PROMPT).tolist()
    assert scores == pytest.approx(REAL_SCORES, abs=REAL_TOLERANCE)


# ---- CLIP-family rewards -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip() -> Reward:
    return load_reward("tiny-clip")


def test_tiny_clip_scores_gradients_and_batches(tiny_clip, video):
    frames = video.clone().requires_grad_(True)
    scores = tiny_clip.score_frames(frames, PROMPT, batch_size=4)
    assert scores.shape == (len(video),) and torch.isfinite(scores).all() and scores.std() > 1e-3
    scores.sum().backward()
    assert (frames.grad.flatten(1).abs().sum(1) > 0).all()
    single = torch.cat(
        [tiny_clip.score_frames(video[i : i + 1], PROMPT, batch_size=1) for i in range(len(video))]
    )
    assert (scores.detach() - single).abs().max() <= 1e-4  # 100 * cos: 1e-6 in cosine units
    assert (tiny_clip.score_frames(video, "black cat in the snow") - single).abs().max() > 1e-3


def test_clip_and_pickscore_missing_folders(monkeypatch, tmp_path):
    from reneg_video.rewards import clip

    for env in (clip.ENV_CLIP, clip.ENV_PICKSCORE, clip.ENV_PICKSCORE_TOKENIZER):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(clip, "_snapshot_from_hf_cache", lambda repo: None)  # as if nothing were cached
    with pytest.raises(
        RewardError, match="CLIP model not found.*openai/clip-vit-large-patch14.*RENEG_CLIP_MODEL"
    ):
        load_reward("clip")
    with pytest.raises(RewardError, match="PickScore model not found.*yuvalkirstain/PickScore_v1"):
        load_reward("pickscore")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewardError, match="could not be loaded"):
        load_reward("clip", model=tmp_path / "empty")


def test_clip_loads_a_saved_model_folder(tiny_clip, tmp_path, video):
    """The `clip` loader reads a save_pretrained folder (here the tiny model) and scores like it."""
    tiny_clip.model.save_pretrained(tmp_path / "clip")
    tiny_clip.tokenizer.save_pretrained(tmp_path / "clip")
    loaded = load_reward("clip", model=tmp_path / "clip")
    torch.testing.assert_close(loaded.score_frames(video, PROMPT), tiny_clip.score_frames(video, PROMPT))


def test_cosine_reward_is_the_one_base(tiny_clip, video):
    """clip/pickscore/tiny-clip are `CosineReward`s, hpsv2 a subclass; a subclass outside the library (as
    the shapes world's reward) changes the scale, the calibration and the text inputs through the public API."""
    from reneg_video.rewards.cosine import CosineReward
    from reneg_video.rewards.hpsv2 import HpsReward

    assert type(tiny_clip) is CosineReward and issubclass(HpsReward, CosineReward)
    raw = tiny_clip.score_frames(video, PROMPT)

    class Calibrated(CosineReward):
        def text_inputs(self, prompt):
            return {"input_ids": super().text_inputs(prompt)["input_ids"]}

    logit = float(tiny_clip.model.logit_scale.exp())
    calibrated = Calibrated(tiny_clip.model, tiny_clip.tokenizer, "calibrated", scale=None, mean=2.0, std=4.0)
    torch.testing.assert_close(calibrated.score_frames(video, PROMPT), (raw / 100 * logit - 2.0) / 4.0)
    assert repr(calibrated) == "Calibrated(name='calibrated', device=cpu)"


def test_one_resolver_argument_then_environment_then_fallbacks(tmp_path, monkeypatch):
    """Every reward finds its files through `files.resolve_local`: argument, $ENV, then each fallback."""
    from reneg_video.rewards.files import Fallback, resolve_local

    a, b, c = (tmp_path / name for name in "abc")
    for path in (a, b, c):
        path.write_text("x")
    asked, packaged = [], {"path": c}
    fallbacks = [
        Fallback("cache", "not cached", lambda: asked.append("cache")),
        Fallback("pkg", "in no package", lambda: packaged["path"]),
    ]
    args = dict(what="W", env="RENEG_TEST_W", kind="file", how="get W", give="pass w=", fallbacks=fallbacks)
    monkeypatch.setenv("RENEG_TEST_W", str(b))
    assert resolve_local(a, **args) == a and resolve_local(None, **args) == b and not asked
    monkeypatch.delenv("RENEG_TEST_W")
    assert resolve_local(None, **args) == c and asked == ["cache"]
    packaged["path"] = None
    with pytest.raises(RewardError) as info:
        resolve_local(None, **args)
    assert str(info.value) == (
        "W not found (no argument, $RENEG_TEST_W unset, not cached, in no package); "
        "expected a local file: get W, then pass w= or set $RENEG_TEST_W"
    )
    with pytest.raises(RewardError) as info:
        resolve_local(a, **{**args, "kind": "folder"})
    assert str(info.value) == f"W {str(a)!r} (from argument) is not a folder; get W"


def test_bf16_autocast_scores_close_but_not_bit_exact(video):
    exact = load_reward("tiny-imagereward")
    cast = load_reward("tiny-imagereward", autocast="bfloat16")
    assert "autocast='bfloat16'" in repr(cast)
    a, b = exact.score_frames(video, "a cat"), cast.score_frames(video, "a cat")
    assert b.dtype == torch.float32  # the score head runs outside the autocast
    assert not torch.equal(a, b)  # the model really ran in bf16
    assert float((a - b).abs().max()) < 0.1 * float(a.max() - a.min() + 1)
    with pytest.raises(RewardError, match="autocast 'int8'"):
        load_reward("tiny-imagereward", autocast="int8")
