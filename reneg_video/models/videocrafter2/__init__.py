"""VideoCrafter2 (AILab-CVC/VideoCrafter, lvdm) ported to diffusers.

VideoCrafter2UNet       the 3D UNet (unet.py)
unet_from_original      lvdm checkpoint tensors -> VideoCrafter2UNet (convert.py)
unet_to_original        the inverse
python -m reneg_video.commands.convert_videocrafter2 CKPT OUT_DIR   whole checkpoint -> diffusers folder
VideoCrafter2Pipeline   text-to-video with lvdm's sampling (pipeline.py; imported on first use)
"""

from __future__ import annotations

from .convert import unet_from_original, unet_to_original
from .unet import VideoCrafter2UNet, VideoCrafter2UNetOutput

__all__ = [
    "VideoCrafter2Pipeline",
    "VideoCrafter2PipelineOutput",
    "VideoCrafter2UNet",
    "VideoCrafter2UNetOutput",
    "unet_from_original",
    "unet_to_original",
    "videocrafter2_scheduler",
]

_PIPELINE = ("VideoCrafter2Pipeline", "VideoCrafter2PipelineOutput", "videocrafter2_scheduler")


def __getattr__(name: str):
    # The pipeline imports transformers; load it only when asked for.
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
