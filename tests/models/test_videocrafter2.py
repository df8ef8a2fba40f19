"""VideoCrafter2 port: a tiny config on CPU, offline.

The tiny config keeps every VideoCrafter2 option (temporal convs, temporal attention, init attention,
fps conditioning) and the real text width, 1024; only widths and depths shrink.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from einops import repeat

from reneg_video.core.errors import CheckpointError, EncoderMismatchError, UsageError
from reneg_video.models.videocrafter2 import VideoCrafter2UNet, unet_from_original, unet_to_original

from .vc2_parts import tiny_text_encoder, tiny_tokenizer

TINY = {
    "model_channels": 32,
    "channel_mult": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (1, 2),
    "num_head_channels": 16,
}
FRAMES = 3


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _perturbed_unet(seed: int = 0) -> VideoCrafter2UNet:
    """Tiny UNet whose zero-initialised layers are perturbed, so every path carries signal."""
    torch.manual_seed(seed)
    unet = VideoCrafter2UNet(**TINY).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return unet


@pytest.fixture(scope="module")
def unet() -> VideoCrafter2UNet:
    return _perturbed_unet()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, FRAMES, 8, 8, generator=g), torch.randn(2, 77, 1024, generator=g)


def _run(unet, x, ctx, t=500, fps=28) -> torch.Tensor:
    with torch.no_grad():
        return unet(x, t, ctx, fps=fps).sample


def test_forward_shape_deterministic_and_conditioned(unet, inputs):
    x, ctx = inputs
    out = _run(unet, x, ctx)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert torch.equal(out, _run(unet, x, ctx))
    # Each conditioning input changes the prediction: fps, timestep, text; and tuple output matches.
    assert not torch.allclose(out, _run(unet, x, ctx, fps=8))
    assert not torch.allclose(out, _run(unet, x, ctx, t=10))
    assert not torch.allclose(out, _run(unet, x, torch.flip(ctx, dims=[1])))
    with torch.no_grad():
        assert torch.equal(unet(x, 500, ctx, fps=28, return_dict=False)[0], out)


def test_frames_interact_through_temporal_layers(unet, inputs):
    """Changing frame 0 changes the prediction for the other frames (temporal conv and attention)."""
    x, ctx = inputs
    changed = x.clone()
    changed[:, :, 0] += 1.0
    a, b = _run(unet, x, ctx), _run(unet, changed, ctx)
    assert not torch.allclose(a[:, :, 1:], b[:, :, 1:])


def test_round_trip_through_original_names(unet, inputs):
    x, ctx = inputs
    original = unet_to_original(unet)
    roots = {k.split(".")[0] for k in original}
    assert roots == {
        "time_embed",
        "fps_embedding",
        "input_blocks",
        "init_attn",
        "middle_block",
        "output_blocks",
        "out",
    }
    assert original["init_attn.0.proj_in.weight"].ndim == 3  # lvdm's Conv1d
    assert "input_blocks.1.0.temopral_conv.conv4.3.weight" in original  # lvdm's spelling
    # A whole-checkpoint state dict: prefixed UNet keys next to other models' keys.
    checkpoint = {f"model.diffusion_model.{k}": v.clone() for k, v in original.items()}
    checkpoint["first_stage_model.encoder.conv_in.weight"] = torch.zeros(1)
    reloaded = unet_from_original(checkpoint, TINY)
    assert torch.equal(_run(reloaded, x, ctx), _run(unet, x, ctx))
    bare = unet_from_original(original, TINY)
    assert torch.equal(_run(bare, x, ctx), _run(unet, x, ctx))


def test_context_reaches_every_cross_attention_unchanged(unet, inputs):
    x, ctx = inputs
    seen: dict[str, torch.Tensor | None] = {}

    def hook(name):
        def capture(module, args, kwargs):
            seen[name] = kwargs.get("encoder_hidden_states")

        return capture

    handles = [
        m.register_forward_pre_hook(hook(n), with_kwargs=True)
        for n, m in unet.named_modules()
        if n.endswith("transformer_blocks.0.attn2")
    ]
    try:
        _run(unet, x, ctx)
    finally:
        for h in handles:
            h.remove()
    spatial = {n: v for n, v in seen.items() if ".attentions." in n}
    temporal = {n: v for n, v in seen.items() if ".attentions." not in n}
    # tiny config: 1 down + 1 down + 1 mid + 2 up + 2 up spatial transformers
    assert len(spatial) == 7
    per_frame = repeat(ctx, "b n d -> (b f) n d", f=FRAMES)
    for name, got in spatial.items():
        assert got is not None and torch.equal(got, per_frame), name
    # Temporal transformers attend over frames only (lvdm only_self_att): no text reaches them.
    assert temporal and all(v is None for v in temporal.values())


def test_refuses_768_wide_context(unet, inputs):
    x, _ = inputs
    with pytest.raises(EncoderMismatchError) as info:
        _run(unet, x, torch.zeros(2, 77, 768))
    message = str(info.value)
    assert "768" in message and "1024" in message and "\n" not in message


def test_refuses_bad_inputs(unet, inputs):
    x, ctx = inputs
    with pytest.raises(UsageError, match="fps is required"), torch.no_grad():
        unet(x, 500, ctx)
    with pytest.raises(UsageError, match="multiple of 2"):
        _run(unet, x[..., :7, :7], ctx)
    with pytest.raises(UsageError, match="1 text embeddings for 2 videos"):
        _run(unet, x, ctx[:1])


def test_refuses_missing_unexpected_and_misshapen_keys(unet):
    original = unet_to_original(unet)
    missing = dict(original)
    del missing["input_blocks.1.1.proj_in.weight"]
    with pytest.raises(
        CheckpointError, match=r"missing keys 1 \(input_blocks\.1\.1\.proj_in\.weight\)"
    ) as info:
        unet_from_original(missing, TINY)
    assert "\n" not in str(info.value)
    extra = {**original, "input_blocks.9.0.in_layers.0.weight": torch.zeros(3)}
    with pytest.raises(
        CheckpointError, match=r"unexpected keys 1 \(input_blocks\.9\.0\.in_layers\.0\.weight\)"
    ):
        unet_from_original(extra, TINY)
    wrong = {**original, "out.2.bias": torch.zeros(5)}
    with pytest.raises(CheckpointError, match=r"shape mismatches 1 \(out\.2\.bias \[5\] vs \[4\]\)"):
        unet_from_original(wrong, TINY)
    nan = {**original, "out.2.bias": torch.full((4,), float("nan"))}
    with pytest.raises(CheckpointError, match="NaN"):
        unet_from_original(nan, TINY)
    # The full VideoCrafter2 config does not accept tiny weights.
    with pytest.raises(CheckpointError, match="shape mismatches"):
        unet_from_original(original)


def test_refuses_options_not_ported():
    with pytest.raises(CheckpointError, match="use_relative_position=True is not ported"):
        VideoCrafter2UNet(**TINY, use_relative_position=True)


def test_full_config_matches_the_yaml():
    """The default config is inference_t2v_512_v2.0.yaml's unet_config (checked on the meta device)."""
    with torch.device("meta"):
        unet = VideoCrafter2UNet()
    cfg = unet.config
    assert (cfg.model_channels, tuple(cfg.channel_mult), cfg.num_res_blocks) == (320, (1, 2, 4, 4), 2)
    assert (tuple(cfg.attention_resolutions), cfg.num_head_channels, cfg.context_dim) == ((4, 2, 1), 64, 1024)
    assert cfg.fps_cond and cfg.addition_attention and cfg.temporal_conv and cfg.temporal_attention
    params = sum(p.numel() for p in unet.parameters())
    assert params == 1_413_284_420  # lvdm UNetModel with the yaml config (scripts/parity_videocrafter2.py)
    heads = unet.down_blocks[2].attentions[0].transformer_blocks[0].attn1.heads
    assert heads == 1280 // 64
    assert unet.transformer_in.transformer_blocks[0].attn1.heads == 8


ORIG_SRC = os.environ.get("RENEG_VC2_ORIG_SRC")


@pytest.mark.skipif(
    not ORIG_SRC, reason="RENEG_VC2_ORIG_SRC (a checkout of AILab-CVC/VideoCrafter) is not set"
)
def test_tiny_config_matches_original_lvdm():
    result = _import_parity().compare(Path(ORIG_SRC), tiny=True, shape=(1, 4, FRAMES, 8, 8))
    assert result["max_abs_original"] > 0.1  # the output is not vacuous
    assert result["max_rel_diff"] <= 1e-4, result


class _NotAllowed:
    """A class outside torch's weights-only allow-list."""


def test_converter_refuses_unsafe_pickles_and_leaves_nothing(tmp_path, capsys):
    from reneg_video.commands.convert_videocrafter2 import main

    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "callback": _NotAllowed()}, ckpt)
    out = tmp_path / "converted"
    assert main([str(ckpt), str(out)]) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "nothing in it ran" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [ckpt]
    assert main([str(tmp_path / "absent.ckpt"), str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def _load(path: Path):
    """Import a file by path (works whether or not tests/ is a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_parity():
    return _load(Path(__file__).resolve().parents[2] / "scripts" / "parity_videocrafter2.py")


@pytest.mark.skipif(
    not ORIG_SRC, reason="RENEG_VC2_ORIG_SRC (a checkout of AILab-CVC/VideoCrafter) is not set"
)
def test_converter_folder_matches_original_lvdm(tmp_path):
    """A tiny lvdm checkpoint (UNet + VAE) converts into a folder whose models compute what lvdm does."""
    from diffusers import AutoencoderKL, DDIMScheduler

    from reneg_video.models.videocrafter2.convert import convert

    parity = _import_parity()
    UNetModel = parity.import_original(Path(ORIG_SRC))
    from lvdm.modules.networks.ae_modules import Decoder, Encoder

    params = parity.original_unet_params(Path(ORIG_SRC), tiny=True)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3}
    ddconfig.update(
        {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    )
    torch.manual_seed(0)
    unet = UNetModel(**params).eval()
    encoder, decoder = Encoder(**ddconfig).eval(), Decoder(**ddconfig).eval()
    quant_conv, post_quant_conv = torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(4, 4, 1)
    state = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    for name, module in [("encoder", encoder), ("decoder", decoder)]:
        state.update({f"first_stage_model.{name}.{k}": v for k, v in module.state_dict().items()})
    for name, module in [("quant_conv", quant_conv), ("post_quant_conv", post_quant_conv)]:
        state.update({f"first_stage_model.{name}.{k}": v for k, v in module.state_dict().items()})
    with torch.no_grad():
        for v in state.values():
            v.add_(torch.randn_like(v) * 0.02)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)

    # A stand-in SD2.1/ZeroScope folder for the text encoder (see the pipeline tests' tiny tokenizer).
    source = tmp_path / "sd21"
    (source / "tokenizer").mkdir(parents=True)
    tokenizer = tiny_tokenizer(source / "tokenizer")
    tokenizer.save_pretrained(source / "tokenizer")
    tiny_text_encoder(tokenizer).save_pretrained(source / "text_encoder")

    port_config = {k: v for k, v in params.items() if k != "use_checkpoint"}
    out = convert(ckpt, tmp_path / "vc2", source, unet_config=port_config, vae_ddconfig=ddconfig)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    port = VideoCrafter2UNet.from_pretrained(out / "unet").eval()
    vae = AutoencoderKL.from_pretrained(out / "vae").eval()
    scheduler = DDIMScheduler.from_pretrained(out / "scheduler")
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.use_scale is True
    assert vae.config.scaling_factor == 0.18215

    g = torch.Generator().manual_seed(2)
    x, ctx = torch.randn(1, 4, FRAMES, 8, 8, generator=g), torch.randn(1, 77, 1024, generator=g)
    z = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        expected = unet(x, torch.tensor([500]), context=ctx, fps=torch.tensor([28]))
        got = port(x, 500, ctx, fps=28).sample
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
        expected_rgb = decoder(post_quant_conv(z))
        got_rgb = vae.decode(z).sample
        assert (got_rgb - expected_rgb).abs().max() <= 1e-4 * expected_rgb.abs().max()

    from reneg_video.models.videocrafter2 import VideoCrafter2Pipeline

    pipe = VideoCrafter2Pipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    video = pipe("a cat", height=16, width=16, num_frames=2, num_inference_steps=1, output_type="pt").frames
    assert video.shape == (1, 2, 3, 16, 16)


# --- text encoder: the checkpoint's own OpenCLIP, converted ----------------------------------------------
TEXT_WIDTH, TEXT_BLOCKS, TEXT_FFN, TEXT_VOCAB = 1024, 3, 64, 40  # real width; 3 resblocks = 2 layers kept


def _openclip_text_state(seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of an OpenCLIP text tower in lvdm's layout (`cond_stage_model.model.*`)."""
    g = torch.Generator().manual_seed(seed)
    w, f = TEXT_WIDTH, TEXT_FFN

    def r(*shape, scale=0.02):
        return torch.randn(*shape, generator=g) * scale

    state = {
        "token_embedding.weight": r(TEXT_VOCAB, w, scale=1.0),
        "positional_embedding": r(77, w, scale=0.1),
    }
    for i in range(TEXT_BLOCKS):
        b = f"transformer.resblocks.{i}."
        state.update({
            b + "ln_1.weight": 1 + r(w), b + "ln_1.bias": r(w), b + "ln_2.weight": 1 + r(w), b + "ln_2.bias": r(w),
            b + "attn.in_proj_weight": r(3 * w, w), b + "attn.in_proj_bias": r(3 * w),
            b + "attn.out_proj.weight": r(w, w), b + "attn.out_proj.bias": r(w),
            b + "mlp.c_fc.weight": r(f, w), b + "mlp.c_fc.bias": r(f),
            b + "mlp.c_proj.weight": r(w, f), b + "mlp.c_proj.bias": r(w),
        })  # fmt: skip
    state.update({"ln_final.weight": 1 + r(w), "ln_final.bias": r(w), "text_projection": r(w, w)})
    state["logit_scale"] = torch.tensor(4.6052)
    return {"cond_stage_model.model." + k: v for k, v in state.items()}


def _lvdm_penultimate(state: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """FrozenOpenCLIPEmbedder(layer="penultimate").encode_with_transformer, written out from open_clip's
    text tower: token + position embedding, causal residual attention blocks but the last, ln_final."""
    s = {k.removeprefix("cond_stage_model.model."): v for k, v in state.items()}
    w, n = TEXT_WIDTH, ids.shape[1]
    x = s["token_embedding.weight"][ids] + s["positional_embedding"][:n]
    causal = torch.full((n, n), float("-inf")).triu(1)
    ln = torch.nn.functional.layer_norm
    for i in range(TEXT_BLOCKS - 1):  # penultimate: the last resblock is skipped
        b = f"transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(w, w // 64)
        attn.load_state_dict({
            "in_proj_weight": s[b + "attn.in_proj_weight"], "in_proj_bias": s[b + "attn.in_proj_bias"],
            "out_proj.weight": s[b + "attn.out_proj.weight"], "out_proj.bias": s[b + "attn.out_proj.bias"],
        })  # fmt: skip
        h = ln(x, (w,), s[b + "ln_1.weight"], s[b + "ln_1.bias"]).transpose(0, 1)  # open_clip: [T, B, D]
        x = x + attn(h, h, h, need_weights=False, attn_mask=causal)[0].transpose(0, 1)
        h = ln(x, (w,), s[b + "ln_2.weight"], s[b + "ln_2.bias"])
        h = torch.nn.functional.gelu(h @ s[b + "mlp.c_fc.weight"].T + s[b + "mlp.c_fc.bias"])
        x = x + h @ s[b + "mlp.c_proj.weight"].T + s[b + "mlp.c_proj.bias"]
    return ln(x, (w,), s["ln_final.weight"], s["ln_final.bias"])


def test_text_encoder_converts_from_the_checkpoint_with_lvdm_semantics():
    from reneg_video.models.videocrafter2.convert import text_encoder_from_original

    state = _openclip_text_state(0)
    model = text_encoder_from_original({**state, "model.diffusion_model.x": torch.zeros(1)})
    assert model.config.num_hidden_layers == TEXT_BLOCKS - 1 and model.config.num_attention_heads == 16
    ids = torch.randint(0, TEXT_VOCAB, (2, 77), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = _lvdm_penultimate(state, ids)
        got = model(input_ids=ids).last_hidden_state
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert text_encoder_from_original({"model.diffusion_model.x": torch.zeros(1)}) is None
    broken = dict(state)
    broken["cond_stage_model.model.ln_final.weight"] = torch.full((TEXT_WIDTH,), float("nan"))
    with pytest.raises(CheckpointError, match="NaN/inf"):
        text_encoder_from_original(broken)


def _full_checkpoint(tmp_path: Path, text_seed: int | None) -> Path:
    from reneg_video.models.videocrafter2.convert import unet_to_original

    state = {f"model.diffusion_model.{k}": v for k, v in unet_to_original(_perturbed_unet()).items()}
    state["first_stage_model.stands.in"] = torch.zeros(1)  # the VAE conversion is stubbed in these tests
    if text_seed is not None:
        state.update(_openclip_text_state(text_seed))
    ckpt = tmp_path / f"model-{text_seed}.ckpt"
    torch.save({"state_dict": state}, ckpt)
    return ckpt


@pytest.fixture
def stub_vae(monkeypatch):
    """The VAE conversion is diffusers' and tested elsewhere: a tiny AutoencoderKL stands in for it here."""
    from diffusers import AutoencoderKL

    from reneg_video.models.videocrafter2 import convert as module

    def tiny(state_dict, ddconfig=None):
        return AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4)

    monkeypatch.setattr(module, "vae_from_original", tiny)


def _sd21_folder(tmp_path: Path, name: str, encoder) -> Path:
    folder = tmp_path / name
    (folder / "tokenizer").mkdir(parents=True)
    tiny_tokenizer(folder / "tokenizer").save_pretrained(folder / "tokenizer")
    encoder.save_pretrained(folder / "text_encoder")
    return folder


def test_converter_writes_the_checkpoints_text_encoder_and_checks_text_encoder_from(
    tmp_path, capsys, stub_vae
):
    from transformers import CLIPTextModel

    from reneg_video.commands.convert_videocrafter2 import main
    from reneg_video.models.videocrafter2.convert import convert, text_encoder_from_original

    ckpt = _full_checkpoint(tmp_path, text_seed=0)
    convert(ckpt, tmp_path / "alone", unet_config=TINY)
    assert not (tmp_path / "alone" / "tokenizer").exists()
    written = CLIPTextModel.from_pretrained(tmp_path / "alone" / "text_encoder")
    own = text_encoder_from_original(torch.load(ckpt, weights_only=True)["state_dict"])
    for key, value in own.state_dict().items():
        assert torch.equal(written.state_dict()[key], value), key

    # Another OpenCLIP (ZeroScope's, say, if it were not the same) is refused before the UNet and VAE are
    # converted, in one line naming why; nothing is written.
    other = _sd21_folder(tmp_path, "other", text_encoder_from_original(_openclip_text_state(1)))
    capsys.readouterr()
    assert main([str(ckpt), str(tmp_path / "refused"), "--text-encoder-from", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the checkpoint's own" in err and "tensors differ" in err
    assert not (tmp_path / "refused").exists()
    # The same encoder (a float16 copy, as SD2.1 folders often hold) is accepted; its tokenizer is copied.
    same = _sd21_folder(tmp_path, "same", own.half())
    convert(ckpt, tmp_path / "both", same, unet_config=TINY)
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == [
        "README.md", "model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"
    ]  # fmt: skip
    written = CLIPTextModel.from_pretrained(tmp_path / "both" / "text_encoder")
    assert written.dtype == torch.float32  # the checkpoint's copy, not the folder's float16 one
    # A checkpoint without cond_stage_model.* still takes the folder's text encoder, unchecked.
    bare = _full_checkpoint(tmp_path, text_seed=None)
    convert(bare, tmp_path / "bare", other, unet_config=TINY)
    assert (tmp_path / "bare" / "text_encoder").is_dir()
