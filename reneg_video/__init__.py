"""reneg-video: ReNeg negative embeddings for text-to-video diffusion.

One call reads top to bottom, each step in the module named for it::

    neg = reneg_video.load_embedding("sd2.1_reneg_emb.bin")      # embedding.py
    pipe = reneg_video.load_pipeline("zeroscope")                 # pipeline.py (specs.py, standins.py)
    reneg_video.attach(pipe, neg)                                 # inject.py (encoders.py matches)
    frames = pipe(prompt="a corgi surfing a wave").frames[0]      # generate.py wraps this for the CLI
    reneg_video.export_video(frames, "corgi.mp4", fps=8)          # export.py
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core.embedding import NegativeEmbedding, load_embedding
from .core.errors import (
    CheckpointError,
    EmbeddingFileError,
    EncoderMismatchError,
    ExportError,
    ModelNotFoundError,
    ReNegError,
    RewardError,
    SpecError,
    TextualInversionError,
    UnsafeFileError,
    UsageError,
)

__version__ = "0.1.0"

# Heavy imports (diffusers, transformers) load on first use, so `load_embedding` stays quick.
_LAZY = {
    "load_pipeline": "models.pipeline",
    "attach": "core.inject",
    "detach": "core.inject",
    "export_video": "core.export",
    "list_models": "core.specs",
    "load_spec": "core.specs",
    "AdapterSpec": "core.specs",
    "load_reward": "rewards",
    "parse_reward_spec": "rewards",
    "apply_memory_preset": "core.memory",
    "guidance_rule": "core.guidance",
}

if TYPE_CHECKING:
    from .core.export import export_video
    from .core.guidance import guidance_rule
    from .core.inject import attach, detach
    from .core.memory import apply_memory_preset
    from .core.specs import AdapterSpec, list_models, load_spec
    from .models.pipeline import load_pipeline
    from .rewards import load_reward, parse_reward_spec


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'reneg_video' has no attribute {name!r}")


__all__ = [
    "AdapterSpec",
    "CheckpointError",
    "EmbeddingFileError",
    "EncoderMismatchError",
    "ExportError",
    "ModelNotFoundError",
    "NegativeEmbedding",
    "ReNegError",
    "RewardError",
    "SpecError",
    "TextualInversionError",
    "UnsafeFileError",
    "UsageError",
    "apply_memory_preset",
    "attach",
    "detach",
    "export_video",
    "guidance_rule",
    "list_models",
    "load_embedding",
    "load_pipeline",
    "load_reward",
    "load_spec",
    "parse_reward_spec",
]
