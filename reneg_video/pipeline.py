"""Step 3 of a call: load the target pipeline, real or stand-in, through `from_pretrained`.

Nothing is downloaded: real models load from `--model-path DIR` or the local Hugging Face cache (filled
elsewhere); stand-ins are built offline once into a cache folder and then load the same way.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch

from .errors import ModelNotFoundError, SpecError, UsageError
from .specs import AdapterSpec, load_spec, registry

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(
            f"--device {device!r} is not a torch device; expected auto, cpu, cuda or cuda:N"
        ) from None


def resolve_dtype(dtype: str | torch.dtype | None, spec: AdapterSpec, device: torch.device) -> torch.dtype:
    """`auto`: the spec's half precision on GPU, float32 on CPU (CPU half precision is slow and lossy)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return DTYPES[spec.gpu_dtype] if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r} is unknown; expected auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def pipeline_class(spec: AdapterSpec) -> type:
    """`Name` from diffusers, or `package.module:Name` for pipelines outside diffusers."""
    module_name, _, class_name = spec.pipeline.rpartition(":")
    module = importlib.import_module(module_name or "diffusers")
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise SpecError(f"{spec.source}: pipeline {spec.pipeline!r} not found in {module.__name__}") from None


def spec_for_folder(folder: Path) -> AdapterSpec:
    """The spec of a diffusers folder, from its pipeline class and text-encoder width."""
    index = json.loads((folder / "model_index.json").read_text())
    config_path = folder / "text_encoder" / "config.json"
    width = None
    if config_path.exists():
        config = json.loads(config_path.read_text())
        width = config.get("hidden_size") or config.get("d_model")
    for spec in registry().values():
        same_class = spec.pipeline.rpartition(":")[2] == index.get("_class_name")
        if not spec.standin and same_class and (width is None or spec.family.width == width):
            return spec
    raise SpecError(
        f"{folder}: no adapter spec for pipeline {index.get('_class_name')} with text width {width}; "
        "write one (see adapters/zeroscope.toml) and pass it with --adapter PATH.toml"
    )


def resolve_spec(
    name_or_path: str | os.PathLike[str], adapter: str | os.PathLike[str] | None = None
) -> AdapterSpec:
    if adapter is not None:
        return load_spec(adapter)
    path = Path(name_or_path)
    if path.is_dir() and (path / "model_index.json").exists():
        return spec_for_folder(path)
    return load_spec(str(name_or_path))


def model_folder(spec: AdapterSpec, model_path: str | os.PathLike[str] | None = None) -> Path:
    """Where the weights are; raises ModelNotFoundError (with how to get them) when absent."""
    if model_path is not None:
        folder = Path(model_path)
        if folder.is_file() and spec.setup:
            raise ModelNotFoundError(f"--model-path {folder}: a file; {spec.setup}")
        if not (folder / "model_index.json").exists():
            raise ModelNotFoundError(
                f"--model-path {folder}: no model_index.json there; pass a diffusers model folder "
                f"(e.g. a snapshot of {spec.repo_id or spec.name})"
            )
        return folder
    if spec.standin:
        from .standins import standin_path

        return standin_path(spec)
    if spec.bundled:
        world, _, name = spec.bundled.partition("/")
        folder = (
            Path(importlib.import_module(f"reneg_video.models.{world}").__file__).parent / "weights" / name
        )
        if not (folder / "model_index.json").exists():
            raise ModelNotFoundError(
                f"{spec.name}: bundled weights missing in {folder}; reinstall the package"
            )
        return folder
    if spec.setup:
        raise ModelNotFoundError(f"{spec.name}: weights not given; {spec.setup}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec.repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelNotFoundError(
            f"{spec.name}: {spec.repo_id} is not in the local Hugging Face cache and nothing is downloaded; "
            f"on a machine with network run `hf download {spec.repo_id}` and copy the cache here, "
            "or pass --model-path DIR"
        ) from None


def load_pipeline(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    *,
    model_path: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
    memory: str | None = None,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
):
    """Load a pipeline by model name (`zeroscope`, `ltx-video`, `tiny-zeroscope`, ...), diffusers
    folder, or spec file. The pipeline remembers its spec for `attach`.

    `memory` (None = diffusers defaults, untouched): a preset of `reneg_video.memory` (auto, off, balanced,
    low, minimal) applied for videos of `frames` x `height` x `width` (default: the spec's); the effective
    settings are in `pipe.reneg_memory`."""
    spec = resolve_spec(name_or_path, adapter)
    if model_path is None and Path(name_or_path).is_dir():
        model_path = name_or_path
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, spec, device)
    folder = model_folder(spec, model_path)
    pipe = pipeline_class(spec).from_pretrained(folder, dtype=torch_dtype, local_files_only=True)
    if spec.defaults.scheduler and type(pipe.scheduler).__name__ != spec.defaults.scheduler:
        import diffusers

        scheduler_cls = getattr(diffusers, spec.defaults.scheduler)
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.reneg_spec = spec
    if memory is None:
        pipe.to(device)
        return pipe
    from .memory import OFFLOAD_MODES, apply_memory_preset, check_preset

    check_preset(memory)
    d = spec.defaults
    size = {"frames": frames or d.frames, "height": height or d.height, "width": width or d.width}
    # Before `.to(device)`: CPU offload (CUDA) places the models itself and auto reads the free memory
    # before the weights occupy it.
    settings = apply_memory_preset(pipe, memory, device=device, **size)
    if settings["cpu_offload"] not in OFFLOAD_MODES:
        pipe.to(device)
    return pipe
