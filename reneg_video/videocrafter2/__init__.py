"""VideoCrafter2 (AILab-CVC/VideoCrafter, lvdm) ported to diffusers.

VideoCrafter2UNet       the 3D UNet (unet.py)
unet_from_original      lvdm checkpoint tensors -> VideoCrafter2UNet (convert.py)
unet_to_original        the inverse
python -m reneg_video.videocrafter2.convert CKPT OUT_DIR   whole checkpoint -> diffusers folder
"""

from __future__ import annotations

from .convert import unet_from_original, unet_to_original
from .unet import VideoCrafter2UNet, VideoCrafter2UNetOutput

__all__ = ["VideoCrafter2UNet", "VideoCrafter2UNetOutput", "unet_from_original", "unet_to_original"]
