"""One node: a ReNeg file -> CONDITIONING for a sampler's negative input, matched to a model family.

The tokens and mask are the ones `reneg_video.attach` gives the diffusers pipeline of the same model
(`reneg_video.core.conditioning.comfy_conditioning`): CLIP-space models (ZeroScope, VideoCrafter2,
AnimateDiff/SD) get the file's [1,77,D] tensor with no mask; LTX-Video gets the PixArt-alpha file padded to
128 tokens with the attention mask (token 0 kept) in the conditioning's dict.
"""

from __future__ import annotations

# ComfyUI's model folder for embeddings (folder_paths.folder_names_and_paths["embeddings"]).
EMBEDDINGS_FOLDER = "embeddings"
# Suffixes of files reneg_video.load_embedding reads (released pickles, safetensors, project format).
EMBEDDING_SUFFIXES = (".bin", ".pt", ".safetensors")


def _embedding_files() -> list[str]:
    """Embedding files ComfyUI knows, or none when ComfyUI is absent (imported outside ComfyUI)."""
    try:
        import folder_paths
    except ImportError:
        return []
    names = folder_paths.get_filename_list(EMBEDDINGS_FOLDER)
    return sorted(n for n in names if n.lower().endswith(EMBEDDING_SUFFIXES))


def _model_names() -> list[str]:
    from reneg_video.core.specs import list_models

    return list_models()


class ReNegNegativeConditioning:
    """Load a ReNeg embedding file and output it as negative CONDITIONING for the chosen model."""

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
