"""Offline stand-ins: the real diffusers/transformers classes with seeded random weights.

Each stand-in has tiny depth but the real text width and token count of the model it stands for, so the
released ReNeg embeddings fit it. Stand-ins of one encoder family share bit-identical text encoders
(as SD2.1 and ZeroScope really do). They are built once, written with `save_pretrained` into a cache
folder, and then loaded through the same `from_pretrained` path as real models.

Everything they generate is noise: they exist for demos and tests, never for quality results.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ..core.atomic import atomic_dir
from ..core.encoders import CLIP_TOKENS, LTX_T5_TOKENS, EncoderFamily
from ..core.specs import AdapterSpec

# Bump when a builder changes, so stale caches are rebuilt rather than reused.
STANDIN_VERSION = "1"
CACHE_ENV = "RENEG_VIDEO_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path("~/.cache/reneg-video").expanduser()) / "standins"


def standin_path(spec: AdapterSpec) -> Path:
    """The folder holding the stand-in, built on first use."""
    folder = cache_root() / f"{spec.name}-v{STANDIN_VERSION}"
    if not (folder / "model_index.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _building(), atomic_dir(folder) as tmp:
                BUILDERS[spec.pipeline](spec).save_pretrained(tmp)
        except OSError:
            # Another process finished the same build first; its folder is complete.
            if not (folder / "model_index.json").exists():
                raise
    return folder


@contextlib.contextmanager
def _building() -> Iterator[None]:
    """A stand-in build is this package writing its own cache, as quiet as loading it (`render.video`): no
    "Writing model shards" bar (transformers' save_pretrained), no deprecation notice of the pipeline class
    built (TextToVideoSDPipeline's). Restored afterwards, as they were."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    bars = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    verbosity = diffusers_logging.get_verbosity()
    for module, _ in bars:
        module.disable_progress_bar()
    diffusers_logging.set_verbosity(max(verbosity, diffusers_logging.ERROR))
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)
        for module, enabled in bars:
            if enabled:
                module.enable_progress_bar()


def _seed(name: str) -> None:
    torch.manual_seed(zlib.crc32(name.encode()))


# --- tokenizers (built from generated vocabularies: nothing is downloaded) ---------------------------


def _byte_chars() -> list[str]:
    """GPT-2/CLIP byte-to-unicode alphabet: every byte gets a printable character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def clip_tokenizer():
    """A character-level CLIP BPE tokenizer (no merges) with CLIP's special tokens and 77 positions."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_TOKENS)


def t5_tokenizer(max_length: int = LTX_T5_TOKENS):
    """A character-level T5 (unigram) tokenizer: pad 0, eos 1, unk 2, as in T5's real vocabulary."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(chr(c), -3.0) for c in range(ord("!"), ord("~") + 1)]
    pieces += [("\u2581" + chr(c), -2.5) for c in range(ord("a"), ord("z") + 1)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


# --- text encoders: one per family, seeded by the family name --------------------------------------


def text_encoder(family: EncoderFamily, vocab_size: int):
    _seed(family.name)
    if family.name == "t5-v1_1-xxl":
        from transformers import T5Config, T5EncoderModel

        config = T5Config(
            vocab_size=vocab_size,
            d_model=family.width,
            d_kv=64,
            d_ff=256,
            num_layers=1,
            num_heads=2,
            feed_forward_proj="gated-gelu",  # T5 v1.1
            relative_attention_num_buckets=32,
            pad_token_id=0,
            eos_token_id=1,
        )
        return T5EncoderModel(config).eval()
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=family.width,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_TOKENS,
        hidden_act="quick_gelu" if family.name == "clip-vit-l-14" else "gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config).eval()


def _clip_parts(spec: AdapterSpec):
    tokenizer = clip_tokenizer()
    return tokenizer, text_encoder(spec.family, len(tokenizer))


def _sd_vae(seed_name: str):
    from diffusers import AutoencoderKL

    _seed(seed_name)
    # Four levels: the real SD VAE's 8x spatial downsampling, at tiny width.
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )


def _ddim(**extra):
    from diffusers import DDIMScheduler

    # The SD / ZeroScope training schedule: scaled_linear betas 0.00085..0.012.
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        **extra,
    )


# The tiny UNet sizes shared by the 2-D (SD) and 3-D (ZeroScope) stand-ins: two levels, 8-channel heads.
TINY_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8, norm_num_groups=8, sample_size=8
)


def _clip_unet_parts(
    spec: AdapterSpec, unet_class: type, down_blocks: tuple[str, ...], up_blocks: tuple[str, ...]
) -> dict[str, object]:
    """The pipeline keywords every CLIP-text UNet stand-in shares (SD, ZeroScope/ModelScope, AnimateDiff):
    the text encoder, a tiny `unet_class` with these blocks and the SD VAE, each seeded by its own name."""
    tokenizer, encoder = _clip_parts(spec)
    _seed(spec.name + "/unet")
    unet = unet_class(
        down_block_types=down_blocks,
        up_block_types=up_blocks,
        cross_attention_dim=spec.family.width,
        **TINY_UNET,
    )
    return {"vae": _sd_vae(spec.name + "/vae"), "text_encoder": encoder, "tokenizer": tokenizer, "unet": unet}


def build_text_to_video_sd(spec: AdapterSpec):
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    down, up = ("CrossAttnDownBlock3D", "DownBlock3D"), ("UpBlock3D", "CrossAttnUpBlock3D")
    return TextToVideoSDPipeline(**_clip_unet_parts(spec, UNet3DConditionModel, down, up), scheduler=_ddim())


def build_stable_diffusion(spec: AdapterSpec):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    down, up = ("DownBlock2D", "CrossAttnDownBlock2D"), ("CrossAttnUpBlock2D", "UpBlock2D")
    parts = _clip_unet_parts(spec, UNet2DConditionModel, down, up)
    # SD2.1-768 is v-prediction; SD1.5 predicts epsilon.
    prediction = "v_prediction" if spec.encoder == "openclip-vit-h-14" else "epsilon"
    return StableDiffusionPipeline(
        **parts,
        scheduler=_ddim(prediction_type=prediction),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_ltx(spec: AdapterSpec):
    """LTXPipeline (0.9.0/0.9.1, 128 tokens) and LTXConditionPipeline (0.9.5+, 256 tokens): same parts."""
    import diffusers
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    tokenizer = t5_tokenizer(spec.tokens)
    encoder = text_encoder(spec.family, len(tokenizer))
    _seed(spec.name + "/transformer")
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=spec.family.width,
    )  # fmt: skip
    _seed(spec.name + "/vae")
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return getattr(diffusers, spec.pipeline)(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def build_pixart_alpha(spec: AdapterSpec):
    from diffusers import PixArtAlphaPipeline, PixArtTransformer2DModel

    tokenizer = t5_tokenizer()
    encoder = text_encoder(spec.family, len(tokenizer))
    _seed(spec.name + "/transformer")
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=spec.family.width,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,  # learned sigma: epsilon and variance, as PixArt-alpha
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    return PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        vae=_sd_vae(spec.name + "/vae"),
        transformer=transformer,
        scheduler=_ddim(),
    )


def build_videocrafter2(spec: AdapterSpec):
    from .videocrafter2.pipeline import VideoCrafter2Pipeline, videocrafter2_scheduler
    from .videocrafter2.unet import VideoCrafter2UNet

    tokenizer, encoder = _clip_parts(spec)
    _seed(spec.name + "/unet")
    unet = VideoCrafter2UNet(
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(1, 2),
        num_head_channels=16,
    )
    return VideoCrafter2Pipeline(
        vae=_sd_vae(spec.name + "/vae"),
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=videocrafter2_scheduler(),
    )


def _t5_parts(spec: AdapterSpec):
    tokenizer = t5_tokenizer(spec.tokens)
    return tokenizer, text_encoder(spec.family, len(tokenizer))


def build_cogvideox(spec: AdapterSpec):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline
    from diffusers import CogVideoXTransformer3DModel as Transformer

    tokenizer, encoder = _t5_parts(spec)
    _seed(spec.name + "/transformer")
    # CogVideoX-2B: sinusoidal positions; 5B: rotary positions (their transformer configs).
    rotary = spec.name.endswith("-5b")
    transformer = Transformer(
        num_attention_heads=2,
        attention_head_dim=16,  # the 3-D rotary split (t, h, w) = (4, 6, 6) needs even parts
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=spec.family.width,
        num_layers=1,
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=spec.tokens,
        use_rotary_positional_embeddings=rotary,
    )
    _seed(spec.name + "/vae")
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),  # four levels: the real 8x spatial, 4x temporal compression
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    # The released schedulers: CogVideoXDDIM, v-prediction, scaled_linear 0.00085..0.012, zero-SNR.
    scheduler = CogVideoXDDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        clip_sample=False,
        set_alpha_to_one=True,
        snr_shift_scale=1.0 if rotary else 3.0,
        timestep_spacing="trailing",
    )
    return CogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


def build_mochi(spec: AdapterSpec):
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline
    from diffusers import MochiTransformer3DModel as Transformer

    tokenizer, encoder = _t5_parts(spec)
    _seed(spec.name + "/transformer")
    transformer = Transformer(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        pooled_projection_dim=16,
        in_channels=12,
        text_embed_dim=spec.family.width,
        time_embed_dim=4,
        max_sequence_length=spec.tokens,
    )
    _seed(spec.name + "/vae")
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),  # its GroupNorms have 32 groups
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        add_attention_block=(False,) * 5,
    )
    return MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def build_latte(spec: AdapterSpec):
    from diffusers import LattePipeline, LatteTransformer3DModel

    tokenizer, encoder = _t5_parts(spec)
    _seed(spec.name + "/transformer")
    transformer = LatteTransformer3DModel(
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=spec.family.width,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,  # learned sigma, as Latte-1
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        video_length=spec.defaults.frames,  # Latte's temporal positions are fixed to its 16 frames
    )
    return LattePipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        vae=_sd_vae(spec.name + "/vae"),
        transformer=transformer,
        scheduler=_ddim(),
    )


# Allegro's VAE decodes only in tiles of 24 frames x sample_size^2 pixels with overlaps fixed at
# 8 frames and 120/80 pixels (AutoencoderKLAllegro), so its tile must exceed 120 px: 128.
ALLEGRO_TILE = 128


def build_allegro(spec: AdapterSpec):
    from diffusers import AllegroPipeline, AllegroTransformer3DModel, AutoencoderKLAllegro

    tokenizer, encoder = _t5_parts(spec)
    _seed(spec.name + "/transformer")
    transformer = AllegroTransformer3DModel(
        num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, num_layers=1,
        cross_attention_dim=24, sample_width=16, sample_height=16, sample_frames=6, caption_channels=spec.family.width,
    )  # fmt: skip
    _seed(spec.name + "/vae")
    vae = AutoencoderKLAllegro(
        block_out_channels=(8, 8, 8, 8),  # four levels: the real 8x spatial, 4x temporal compression
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        sample_size=ALLEGRO_TILE,
    )
    from diffusers import EulerAncestralDiscreteScheduler

    # Allegro ships an EulerAncestralDiscreteScheduler; the stand-in keeps its class with default betas.
    return AllegroPipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        vae=vae,
        transformer=transformer,
        scheduler=EulerAncestralDiscreteScheduler(),
    )


def tiny_motion_adapter(seed_name: str):
    """A MotionAdapter matching the AnimateDiff stand-in's UNet (same block widths and depth)."""
    from diffusers import MotionAdapter

    _seed(seed_name)
    return MotionAdapter(
        block_out_channels=TINY_UNET["block_out_channels"],
        motion_layers_per_block=TINY_UNET["layers_per_block"],
        motion_norm_num_groups=TINY_UNET["norm_num_groups"],
        motion_num_attention_heads=2,
    )


def build_animatediff(spec: AdapterSpec):
    """An SD1.5-style base (CLIP-L text, 2-D UNet) plus a MotionAdapter, as AnimateDiff is shipped."""
    from diffusers import AnimateDiffPipeline, UNet2DConditionModel

    down, up = ("CrossAttnDownBlock2D", "DownBlock2D"), ("UpBlock2D", "CrossAttnUpBlock2D")
    # The pipeline builds its UNetMotionModel from this 2-D UNet and the adapter.
    return AnimateDiffPipeline(
        **_clip_unet_parts(spec, UNet2DConditionModel, down, up),
        motion_adapter=tiny_motion_adapter(spec.name + "/motion"),
        scheduler=_ddim(),
    )


def build_i2vgen_xl(spec: AdapterSpec):
    """I2VGen-XL: OpenCLIP-H text and a CLIP vision tower whose projection feeds the UNet's context."""
    from diffusers import I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer, encoder = _clip_parts(spec)
    _seed(spec.name + "/unet")
    unet = I2VGenXLUNet(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=spec.family.width,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    _seed(spec.name + "/image-encoder")
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=spec.family.width,  # its image embedding joins the 1024-wide text context
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=64,
            patch_size=8,
        )
    ).eval()
    return I2VGenXLPipeline(
        vae=_sd_vae(spec.name + "/vae"),
        text_encoder=encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        unet=unet,
        scheduler=_ddim(),
    )


BUILDERS: dict[str, Callable[[AdapterSpec], object]] = {
    "TextToVideoSDPipeline": build_text_to_video_sd,
    "StableDiffusionPipeline": build_stable_diffusion,
    "LTXPipeline": build_ltx,
    "LTXConditionPipeline": build_ltx,
    "CogVideoXPipeline": build_cogvideox,
    "MochiPipeline": build_mochi,
    "LattePipeline": build_latte,
    "AnimateDiffPipeline": build_animatediff,
    "AllegroPipeline": build_allegro,
    "I2VGenXLPipeline": build_i2vgen_xl,
    "PixArtAlphaPipeline": build_pixart_alpha,
    "reneg_video.models.videocrafter2.pipeline:VideoCrafter2Pipeline": build_videocrafter2,
}
