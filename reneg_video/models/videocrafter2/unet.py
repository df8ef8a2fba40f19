"""VideoCrafter2's 3D UNet as a diffusers model.

A port of lvdm's `UNetModel` (AILab-CVC/VideoCrafter, `lvdm/modules/networks/openaimodel3d.py`) with the
options of `configs/inference_t2v_512_v2.0.yaml`. VideoCrafter2 descends from ModelScope T2V, whose
layers diffusers already has (`UNet3DConditionModel` is built from them); where a diffusers layer computes
exactly what the lvdm layer computes, it is used here, so attention processors, hooks and the diffusers
layout work as for ZeroScope:

    lvdm                                diffusers layer used here
    ResBlock (without temporal conv)    ResnetBlock2D (eps 1e-5, 32 groups)
    ResBlock.temopral_conv              TemporalConvLayer (ModelScope's four (3,1,1) convs, same code)
    SpatialTransformer(use_linear)      Transformer2DModel(use_linear_projection=True)
    TemporalTransformer(only_self_att)  TransformerTemporalModel(double_self_attention=True)
    Downsample / Upsample (conv)        Downsample2D / Upsample2D
    timestep_embedding + time_embed     Timesteps(flip_sin_to_cos=True, shift 0) + TimestepEmbedding

Attention runs through diffusers' `AttnProcessor2_0`, i.e. `F.scaled_dot_product_attention`. The
containers (down/mid/up blocks, the fps embedding and the top-level wiring) are this module's own,
because no diffusers class has VideoCrafter2's fps conditioning.

Shape legend:
    B  videos in the batch          F  frames           C  channels (latent: 4)
    H, W  latent height and width   N  text tokens (77)  D  text width (1024)
Inside the network frames are folded into the batch, `(b f) c h w`; temporal layers unfold them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, TemporalConvLayer, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from diffusers.utils import BaseOutput
from einops import rearrange, repeat
from torch import nn

from ...core.encoders import OPENCLIP_H_WIDTH
from ...core.errors import CheckpointError, EncoderMismatchError, UsageError

# lvdm `normalization()` and the transformers' GroupNorm use 32 groups (lvdm/basics.py, attention.py).
NORM_GROUPS = 32
# ResBlock / output GroupNorm keep torch's default eps; lvdm's transformers set eps=1e-6 themselves
# (diffusers' Transformer2DModel and TransformerTemporalModel hard-code the same 1e-6).
RESNET_EPS = 1e-5
# UNetModel: time_embed_dim = model_channels * 4.
TIME_EMBED_MULT = 4
# UNetModel.init_attn: TemporalTransformer(model_channels, n_heads=8, d_head=num_head_channels).
INIT_ATTENTION_HEADS = 8
# ResBlock builds TemporalConvBlock(..., dropout=0.1); inactive in eval mode, kept for fine-tuning.
TEMPORAL_CONV_DROPOUT = 0.1


@dataclass
class VideoCrafter2UNetOutput(BaseOutput):
    """Output of `VideoCrafter2UNet.forward`: the predicted noise, [B, C, F, H, W]."""

    sample: torch.Tensor


def _spatial_transformer(
    channels: int, head_channels: int, depth: int, context_dim: int
) -> Transformer2DModel:
    """lvdm SpatialTransformer(use_linear=True): self-attention, cross-attention to the text, GEGLU FF."""
    return Transformer2DModel(
        num_attention_heads=channels // head_channels,
        attention_head_dim=head_channels,
        in_channels=channels,
        num_layers=depth,
        cross_attention_dim=context_dim,
        norm_num_groups=NORM_GROUPS,
        use_linear_projection=True,
    )


def _temporal_transformer(
    channels: int, heads: int, head_channels: int, depth: int
) -> TransformerTemporalModel:
    """lvdm TemporalTransformer(only_self_att=True): two self-attentions over frames, GEGLU FF.

    With `only_self_att` lvdm drops the context, so its `attn2` attends to the frames again; diffusers'
    `double_self_attention=True` is that block.
    """
    return TransformerTemporalModel(
        num_attention_heads=heads,
        attention_head_dim=head_channels,
        in_channels=channels,
        num_layers=depth,
        norm_num_groups=NORM_GROUPS,
        double_self_attention=True,
    )


class _Level(nn.Module):
    """One resolution of the UNet: res blocks, each followed by its temporal conv and, for the first
    `attention_layers` of them, a spatial then a temporal transformer (lvdm's order inside one
    TimestepEmbedSequential)."""

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int,
        temb_channels: int,
        attention_layers: int,
        cfg: dict,
    ) -> None:
        super().__init__()
        head_channels = cfg["num_head_channels"]
        self.resnets = nn.ModuleList(
            ResnetBlock2D(
                in_channels=c,
                out_channels=out_channels,
                temb_channels=temb_channels,
                eps=RESNET_EPS,
                groups=NORM_GROUPS,
                dropout=cfg["dropout"],
            )
            for c in in_channels
        )
        n = len(in_channels) if cfg["temporal_conv"] else 0
        self.temp_convs = nn.ModuleList(
            TemporalConvLayer(
                out_channels, out_channels, dropout=TEMPORAL_CONV_DROPOUT, norm_num_groups=NORM_GROUPS
            )
            for _ in range(n)
        )
        n = attention_layers
        self.attentions = nn.ModuleList(
            _spatial_transformer(out_channels, head_channels, cfg["transformer_depth"], cfg["context_dim"])
            for _ in range(n)
        )
        n = attention_layers if cfg["temporal_attention"] else 0
        self.temp_attentions = nn.ModuleList(
            _temporal_transformer(
                out_channels, out_channels // head_channels, head_channels, cfg["temporal_transformer_depth"]
            )
            for _ in range(n)
        )

    def layer(
        self, j: int, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int
    ) -> torch.Tensor:
        """Res block j and what follows it; h is (b f) c h w."""
        h = self.resnets[j](h, emb)
        if self.temp_convs:
            h = self.temp_convs[j](h, num_frames=frames)
        if self.attentions:
            h = self.attentions[j](h, encoder_hidden_states=context, return_dict=False)[0]
        if self.temp_attentions:
            h = self.temp_attentions[j](h, num_frames=frames, return_dict=False)[0]
        return h


class DownLevel(_Level):
    """An encoder level: `num_res_blocks` layers, then a strided conv unless it is the last level."""

    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int, attention: bool, last: bool, cfg: dict
    ):
        n = cfg["num_res_blocks"]
        super().__init__(
            [in_channels] + [out_channels] * (n - 1), out_channels, temb_channels, n * attention, cfg
        )
        self.downsamplers = nn.ModuleList(
            []
            if last
            else [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=1, name="op")]
        )

    def forward(
        self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for j in range(len(self.resnets)):
            h = self.layer(j, h, emb, context, frames)
            skips.append(h)
        for down in self.downsamplers:
            h = down(h)
            skips.append(h)
        return h, skips


class MidLevel(_Level):
    """lvdm middle_block: res block (+ temporal conv), spatial + temporal transformer, res block."""

    def __init__(self, channels: int, temb_channels: int, cfg: dict):
        # Only the first res block is followed by the transformers.
        super().__init__([channels, channels], channels, temb_channels, 1, cfg)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.layer(0, h, emb, context, frames)
        h = self.resnets[1](h, emb)
        if self.temp_convs:
            h = self.temp_convs[1](h, num_frames=frames)
        return h


class UpLevel(_Level):
    """A decoder level: `num_res_blocks + 1` layers, each fed the concatenated skip, then an upsampling
    conv unless it is the top level."""

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int,
        temb_channels: int,
        attention: bool,
        last: bool,
        cfg: dict,
    ):
        super().__init__(in_channels, out_channels, temb_channels, len(in_channels) * attention, cfg)
        self.upsamplers = nn.ModuleList(
            [] if last else [Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]
        )

    def forward(
        self,
        h: torch.Tensor,
        skips: list[torch.Tensor],
        emb: torch.Tensor,
        context: torch.Tensor,
        frames: int,
    ) -> torch.Tensor:
        for j in range(len(self.resnets)):
            h = torch.cat([h, skips.pop()], dim=1)
            h = self.layer(j, h, emb, context, frames)
        for up in self.upsamplers:
            h = up(h)
        return h


def _check_ported(options: dict[str, tuple[bool, bool]], widths: list[int], num_head_channels: int) -> None:
    """Refuse lvdm options (name: (value, the value ported)) this port does not implement, and level widths
    that GroupNorm's groups or the attention heads do not divide."""
    for name, (value, ported) in options.items():
        if value != ported:
            raise CheckpointError(
                f"VideoCrafter2UNet: {name}={value} is not ported (VideoCrafter2's config uses {ported}); "
                f"use {name}={ported}"
            )
    for width in widths:
        if width % NORM_GROUPS or width % num_head_channels:
            raise CheckpointError(
                f"VideoCrafter2UNet: level width {width} must be a multiple of {NORM_GROUPS} (GroupNorm groups) "
                f"and of num_head_channels={num_head_channels}; change model_channels or channel_mult"
            )


class VideoCrafter2UNet(ModelMixin, ConfigMixin):
    """VideoCrafter2's text-to-video UNet (lvdm `UNetModel`); defaults = `inference_t2v_512_v2.0.yaml`.

    The lvdm options keep their yaml names. Values other than VideoCrafter2's for the options this port
    does not implement (relative positions, causal or cross-attending temporal attention, convolutional
    transformer projections) are refused, not ignored. `temporal_length` is only recorded: lvdm uses it
    for those options alone.
    """

    _supports_gradient_checkpointing = False
    _skip_layerwise_casting_patterns = ["norm", "time_embedding", "fps_embedding"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        model_channels: int = 320,
        channel_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (4, 2, 1),
        num_head_channels: int = 64,
        transformer_depth: int = 1,
        temporal_transformer_depth: int = 1,
        context_dim: int = OPENCLIP_H_WIDTH,
        dropout: float = 0.0,
        use_linear: bool = True,
        temporal_conv: bool = True,
        temporal_attention: bool = True,
        temporal_selfatt_only: bool = True,
        use_relative_position: bool = False,
        use_causal_attention: bool = False,
        temporal_length: int = 16,
        addition_attention: bool = True,
        fps_cond: bool = True,
    ) -> None:
        super().__init__()
        _check_ported(
            {
                "use_linear": (use_linear, True),
                "temporal_selfatt_only": (temporal_selfatt_only, True),
                "use_relative_position": (use_relative_position, False),
                "use_causal_attention": (use_causal_attention, False),
            },
            [model_channels * m for m in channel_mult],
            num_head_channels,
        )
        cfg = {
            "num_head_channels": num_head_channels,
            "transformer_depth": transformer_depth,
            "temporal_transformer_depth": temporal_transformer_depth,
            "context_dim": context_dim,
            "dropout": dropout,
            "temporal_conv": temporal_conv,
            "temporal_attention": temporal_attention,
            "num_res_blocks": num_res_blocks,
        }
        temb = model_channels * TIME_EMBED_MULT

        self.time_proj = Timesteps(model_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(model_channels, temb)
        # lvdm embeds the fps with the same sinusoid as the timestep and its own MLP, summed into emb.
        self.fps_embedding = TimestepEmbedding(model_channels, temb) if fps_cond else None

        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        # lvdm init_attn: a temporal transformer right after conv_in, 8 heads whatever the width.
        self.transformer_in = (
            _temporal_transformer(model_channels, INIT_ATTENTION_HEADS, num_head_channels, transformer_depth)
            if addition_attention
            else None
        )

        self._build_levels(model_channels, channel_mult, temb, attention_resolutions, cfg)
        self.conv_norm_out = nn.GroupNorm(NORM_GROUPS, model_channels, eps=RESNET_EPS)
        self.conv_out = nn.Conv2d(model_channels, out_channels, 3, padding=1)

    def _build_levels(
        self, model_channels: int, channel_mult: tuple[int, ...], temb: int, attention_resolutions, cfg: dict
    ) -> None:
        """down_blocks, mid_block and up_blocks, in this order (the order their weights are drawn in), each up
        level taking the skip connections of its down level in reverse."""
        widths = [model_channels * m for m in channel_mult]
        num_res_blocks, levels = cfg["num_res_blocks"], len(widths)
        self.down_blocks = nn.ModuleList()
        skip_channels = [model_channels]
        ch, ds = model_channels, 1
        for level, width in enumerate(widths):
            last = level == levels - 1
            self.down_blocks.append(DownLevel(ch, width, temb, ds in attention_resolutions, last, cfg))
            skip_channels += [width] * (num_res_blocks + (0 if last else 1))
            ch = width
            ds = ds if last else ds * 2

        self.mid_block = MidLevel(ch, temb, cfg)

        self.up_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            width = widths[level]
            ins = []
            for _ in range(num_res_blocks + 1):
                ins.append(ch + skip_channels.pop())
                ch = width
            self.up_blocks.append(UpLevel(ins, width, temb, ds in attention_resolutions, level == 0, cfg))
            ds = ds // 2 if level else ds

    def _check_inputs(
        self, sample: torch.Tensor, encoder_hidden_states: torch.Tensor, fps: int | torch.Tensor | None
    ) -> None:
        cfg = self.config
        if sample.ndim != 5 or sample.shape[1] != cfg.in_channels:
            raise UsageError(
                f"VideoCrafter2UNet: sample shape {list(sample.shape)} is not [B,{cfg.in_channels},F,H,W]; "
                "pass latents with frames on dim 2"
            )
        factor = 2 ** (len(cfg.channel_mult) - 1)
        if sample.shape[3] % factor or sample.shape[4] % factor:
            raise UsageError(
                f"VideoCrafter2UNet: latent size {sample.shape[3]}x{sample.shape[4]} must be a multiple of {factor} "
                f"({len(cfg.channel_mult) - 1} downsamplings); use a pixel size that is a multiple of {8 * factor}"
            )
        if encoder_hidden_states.ndim != 3:
            raise UsageError(
                f"VideoCrafter2UNet: encoder_hidden_states shape {list(encoder_hidden_states.shape)} is not [B,N,D]"
            )
        width = encoder_hidden_states.shape[-1]
        if width != cfg.context_dim:
            raise EncoderMismatchError(
                f"VideoCrafter2UNet: text embedding width {width} does not match the UNet's cross-attention width "
                f"{cfg.context_dim}; VideoCrafter2 reads OpenCLIP ViT-H/14 penultimate-layer embeddings "
                f"[B,77,{OPENCLIP_H_WIDTH}]"
            )
        if encoder_hidden_states.shape[0] != sample.shape[0]:
            raise UsageError(
                f"VideoCrafter2UNet: {encoder_hidden_states.shape[0]} text embeddings for {sample.shape[0]} videos; "
                "pass one per video"
            )
        if cfg.fps_cond and fps is None:
            raise UsageError(
                "VideoCrafter2UNet: fps is required (the model is fps-conditioned); pass e.g. fps=28"
            )

    @staticmethod
    def _per_video(
        value: int | float | torch.Tensor, batch: int, device: torch.device, name: str
    ) -> torch.Tensor:
        """A scalar or [B] timestep/fps as a [B] tensor."""
        value = torch.as_tensor(value, device=device)
        if value.ndim == 0:
            return value.expand(batch)
        if value.shape != (batch,):
            raise UsageError(
                f"VideoCrafter2UNet: {name} shape {list(value.shape)} is neither a scalar nor [{batch}]"
            )
        return value

    def forward(
        self,
        sample: torch.Tensor,
        timestep: int | float | torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        fps: int | torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoCrafter2UNetOutput | tuple[torch.Tensor]:
        """Predict the noise in `sample` [B,C,F,H,W] at `timestep` given text [B,N,D] and the video fps.

        `timestep` and `fps` are scalars or one value per video. Returns [B,C,F,H,W].
        """
        self._check_inputs(sample, encoder_hidden_states, fps)
        batch, _, frames, _, _ = sample.shape
        t = self._per_video(timestep, batch, sample.device, "timestep")
        emb = self.time_embedding(self.time_proj(t).to(self.dtype))
        if self.fps_embedding is not None:
            rate = self._per_video(fps, batch, sample.device, "fps")
            emb = emb + self.fps_embedding(self.time_proj(rate).to(self.dtype))
        # Every frame sees its video's timestep embedding and text (lvdm: repeat_interleave over frames).
        emb = repeat(emb, "b d -> (b f) d", f=frames)
        context = repeat(encoder_hidden_states, "b n d -> (b f) n d", f=frames)

        h = rearrange(sample, "b c f h w -> (b f) c h w").to(self.dtype)
        h = self.conv_in(h)
        if self.transformer_in is not None:
            h = self.transformer_in(h, num_frames=frames, return_dict=False)[0]
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, emb, context, frames)
            skips += block_skips
        h = self.mid_block(h, emb, context, frames)
        for block in self.up_blocks:
            h = block(h, skips, emb, context, frames)
        h = self.conv_out(F.silu(self.conv_norm_out(h)))
        out = rearrange(h, "(b f) c h w -> b c f h w", b=batch).to(sample.dtype)
        if not return_dict:
            return (out,)
        return VideoCrafter2UNetOutput(sample=out)
