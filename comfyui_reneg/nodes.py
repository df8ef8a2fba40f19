"""One node: a ReNeg file -> CONDITIONING for a sampler's negative input, matched to a model family.

The tokens and mask are the ones `reneg_video.attach` gives the diffusers pipeline of the same model
(`reneg_video.core.conditioning.comfy_conditioning`): CLIP-space models (ZeroScope, VideoCrafter2,
AnimateDiff/SD) get the file's [1,77,D] tensor with no mask; LTX-Video gets the PixArt-alpha file padded to
128 tokens with the attention mask (token 0 kept) in the conditioning's dict.

The model dropdown lists real models only. Stand-ins (`tiny-*`, seeded random weights: their output is
noise) and the bundled demo models (`shapes-*`, the shapes world's 32x32 models) exist for tests and
demos; set the environment variable `RENEG_VIDEO_STANDINS=1` before starting ComfyUI to list them too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reneg_video.core.specs import AdapterSpec

# ComfyUI's model folder for embeddings (folder_paths.folder_names_and_paths["embeddings"]).
EMBEDDINGS_FOLDER = "embeddings"
# Suffixes of files reneg_video.load_embedding reads (released pickles, safetensors, project format).
EMBEDDING_SUFFIXES = (".bin", ".pt", ".safetensors")
# Set to "1" to offer stand-in and bundled demo models in the dropdown (tests, demos); unset for users,
# who would otherwise scroll past ~20 models that produce noise or 32x32 toy videos.
STANDINS_ENV = "RENEG_VIDEO_STANDINS"


def _embedding_files() -> list[str]:
    """Embedding files ComfyUI knows, or none when ComfyUI is absent (imported outside ComfyUI)."""
    try:
        import folder_paths
    except ImportError:
        return []
    names = folder_paths.get_filename_list(EMBEDDINGS_FOLDER)
    return sorted(n for n in names if n.lower().endswith(EMBEDDING_SUFFIXES))


def _is_demo(spec: AdapterSpec) -> bool:
    """A stand-in (random weights) or a bundled demo model (weights shipped with a package, e.g. shapes-*):
    decided by the spec's own fields, so a plugin's demo models are hidden without naming them here."""
    return bool(spec.standin or spec.bundled)


def _model_names() -> list[str]:
    """Model names for the dropdown: real models, plus demo/stand-in ones when STANDINS_ENV is "1"."""
    from reneg_video.core.specs import registry

    with_demos = os.environ.get(STANDINS_ENV) == "1"
    # registry() is keyed by name and alias; one entry per spec name.
    specs = {spec.name: spec for spec in registry().values()}
    return sorted(name for name, spec in specs.items() if with_demos or not _is_demo(spec))


class ReNegNegativeConditioning:
    """Load a ReNeg embedding file and output it as negative CONDITIONING for the chosen model.

    The model list holds real models; stand-in and demo models are added only when ComfyUI runs with
    `RENEG_VIDEO_STANDINS=1` (see the module docstring).
    """

    @classmethod
    def INPUT_TYPES(cls) -> dict:  # noqa: N802 (ComfyUI's interface)
        models = _model_names()
        return {
            "required": {
                "embedding": (_embedding_files(),),
                "model": (models, {"default": "ltx-video" if "ltx-video" in models else models[0]}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("negative",)
    FUNCTION = "load"
    CATEGORY = "conditioning/reneg"
    DESCRIPTION = "ReNeg negative embedding (arXiv 2412.19637) for the negative input of a sampler."

    def load(self, embedding: str, model: str) -> tuple[list]:
        import folder_paths

        from reneg_video import load_embedding
        from reneg_video.core.conditioning import comfy_conditioning
        from reneg_video.core.specs import load_spec

        path = folder_paths.get_full_path(EMBEDDINGS_FOLDER, embedding)
        if path is None:
            raise FileNotFoundError(f"ReNeg: {embedding!r} is not in ComfyUI's models/embeddings folder")
        return (comfy_conditioning(load_embedding(path), load_spec(model)),)


NODE_CLASS_MAPPINGS = {"ReNegNegativeConditioning": ReNegNegativeConditioning}
NODE_DISPLAY_NAME_MAPPINGS = {"ReNegNegativeConditioning": "ReNeg Negative Embedding"}
