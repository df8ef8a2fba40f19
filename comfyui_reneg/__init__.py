"""ReNeg negative embeddings as ComfyUI nodes.

Install: copy or link this folder into ComfyUI's `custom_nodes/` (e.g. `ln -s $PWD/comfyui_reneg
ComfyUI/custom_nodes/reneg`) and `pip install` reneg-video into ComfyUI's Python. Put the embedding files
(`sd2.1_reneg_emb.bin`, `pixart-alpha_reneg_emb.bin`, `.safetensors`) in `ComfyUI/models/embeddings/`.
ComfyUI's modules are imported only when a node runs, so this package also imports without ComfyUI.
The model dropdown lists real models; start ComfyUI with `RENEG_VIDEO_STANDINS=1` to also list the stand-in
(`tiny-*`) and bundled demo (`shapes-*`) models, which exist for tests and demos.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
