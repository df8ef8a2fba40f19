"""Step 3 of a call: load the target pipeline, real or stand-in, through `from_pretrained`.

Nothing is downloaded: real models load from `--model-path DIR` or the local Hugging Face cache (filled
elsewhere); stand-ins are built offline once into a cache folder and then load the same way; bundled models
(a spec's `bundled = "<package>:<folder>"`) load from a folder shipped inside an installed package, whose
shared components may live once beside it (SHARED_COMPONENTS_FILE).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ModelNotFoundError, SpecError, UsageError
from ..core.specs import AdapterSpec, load_spec, registry

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# LTX-Video 0.9.1+ VAEs are timestep-conditioned: they decode a slightly re-noised latent at this timestep and
# noise scale (the values of diffusers' LTX-Video 0.9.1 example and Lightricks' inference config). Without them
# LTXPipeline decodes at timestep 0.0, which those VAEs were not trained for.
LTX_DECODE_TIMESTEP = 0.05
LTX_DECODE_NOISE_SCALE = 0.025

log = logging.getLogger(__name__)


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


# Several specs share a pipeline class and text width; a folder that names none of their repos gets the
# model this project supported first for that class (what such a folder meant before the others came).
FOLDER_DEFAULTS = {
    "TextToVideoSDPipeline": "zeroscope",
    "LTXPipeline": "ltx-video",
    "LTXConditionPipeline": "ltx-video-0.9.5",
    "CogVideoXPipeline": "cogvideox-2b",
}


def spec_for_folder(folder: Path) -> AdapterSpec:
    """The spec of a diffusers folder, from its pipeline class and text-encoder width; where several
    specs fit, the one whose repo the path names (a Hugging Face cache snapshot, or a folder named like
    the repo), else FOLDER_DEFAULTS."""
    index = json.loads((folder / "model_index.json").read_text())
    config_path = component_folder(folder, "text_encoder") / "config.json"
    width = None
    if config_path.exists():
        config = json.loads(config_path.read_text())
        width = config.get("hidden_size") or config.get("d_model")
    class_name = index.get("_class_name")
    candidates = {}
    for spec in registry().values():
        same_class = spec.pipeline.rpartition(":")[2] == class_name
        if not spec.standin and same_class and (width is None or spec.family.width == width):
            candidates[spec.name] = spec
    if not candidates:
        raise SpecError(
            f"{folder}: no adapter spec for pipeline {class_name} with text width {width}; "
            "write one (see reneg_video/specs/zeroscope.toml) and pass it with --adapter PATH.toml"
        )
    path = str(folder.resolve()).lower()
    for spec in candidates.values():
        repo = (spec.repo_id or "").lower()
        if repo and (
            "models--" + repo.replace("/", "--") in path or folder.name.lower() == repo.split("/")[-1]
        ):
            return spec
    default = FOLDER_DEFAULTS.get(class_name)
    return candidates.get(default) or next(iter(candidates.values()))


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
    """Where the weights are (a diffusers folder, or a single-file `.safetensors` where the spec's pipeline
    takes one); raises ModelNotFoundError (with how to get them) when absent."""
    if model_path is not None:
        folder = Path(model_path)
        if folder.is_file() and folder.suffix == ".safetensors" and spec.pipeline in SINGLE_FILE_PIPELINES:
            return folder
        if folder.is_file() and spec.setup:
            raise ModelNotFoundError(f"--model-path {folder}: a file; {spec.setup}")
        if not (folder / "model_index.json").exists():
            single = (
                " (or, for LTX-Video, a single-file .safetensors)"
                if spec.pipeline in SINGLE_FILE_PIPELINES
                else ""
            )
            raise ModelNotFoundError(
                f"--model-path {folder}: no model_index.json there; pass a diffusers model folder{single} "
                f"(e.g. a snapshot of {spec.repo_id or spec.name})"
            )
        return folder
    if spec.standin:
        from .standins import standin_path

        return standin_path(spec)
    if spec.bundled:
        folder = bundled_folder(spec)
        if not (folder / "model_index.json").exists():
            raise ModelNotFoundError(
                f"{spec.name}: bundled weights missing in {folder}; reinstall the package"
            )
        return folder
    if spec.setup:
        raise ModelNotFoundError(f"{spec.name}: weights not given; {spec.setup}")
    try:
        return _cached_snapshot(spec.repo_id)
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"{spec.name}: {spec.repo_id} is not in the local Hugging Face cache and nothing is downloaded; "
            f"on a machine with network run `hf download {spec.repo_id}` and copy the cache here, "
            "or pass --model-path DIR"
        ) from None


def bundled_folder(spec: AdapterSpec) -> Path:
    """The weights of `bundled = "<package>:<folder>"` (e.g. "shapes_world:weights/t2v"): a folder inside an
    importable package, found through importlib.resources wherever that package is installed. The library
    names no package itself: the spec that ships with the weights does."""
    package, sep, inner = spec.bundled.partition(":")
    if not (sep and package and inner):
        raise SpecError(
            f"{spec.source}: bundled {spec.bundled!r}; expected '<package>:<folder>', "
            "e.g. 'shapes_world:weights/t2v'"
        )
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise ModelNotFoundError(
            f"{spec.name}: its weights ship in the package {package!r}, which is not installed; install it"
        ) from None
    return Path(str(root)) / inner


# A model folder may leave out components it shares with sibling models and say where they are in this file:
# {"text_encoder": "../common/text_encoder", ...}, paths relative to the folder (the shapes world stores its
# text encoder, tokenizer and VAE once for shapes-t2i and shapes-t2v). `from_pretrained` takes components
# passed as keyword arguments instead of looking for them in the folder, so they are loaded first.
SHARED_COMPONENTS_FILE = "shared_components.json"


def component_folder(folder: Path, name: str) -> Path:
    """Where component `name` of the diffusers folder `folder` is: its subfolder, or where the folder's
    SHARED_COMPONENTS_FILE places it."""
    shared = folder / SHARED_COMPONENTS_FILE
    if shared.is_file():
        relative = json.loads(shared.read_text()).get(name)
        if relative is not None:
            return folder / relative
    return folder / name


def shared_components(folder: Path, dtype: torch.dtype) -> dict[str, Any]:
    """The components `folder`'s SHARED_COMPONENTS_FILE places elsewhere, loaded as `from_pretrained` loads
    a subfolder (the class model_index.json names, `dtype` for models); {} for a folder without that file."""
    shared = folder / SHARED_COMPONENTS_FILE
    if not shared.is_file():
        return {}
    index = json.loads((folder / "model_index.json").read_text())
    components = {}
    for name in json.loads(shared.read_text()):
        source = component_folder(folder, name)
        if name not in index or not source.is_dir():
            raise ModelNotFoundError(
                f"{folder}: {SHARED_COMPONENTS_FILE} places {name!r} in {source}, which "
                f"{'is missing' if name in index else 'model_index.json does not name'}; reinstall the package "
                "or pass --model-path DIR with a complete diffusers folder"
            )
        library, class_name = index[name]
        cls = getattr(importlib.import_module(library), class_name)
        kwargs = {"dtype": dtype} if issubclass(cls, torch.nn.Module) else {}
        components[name] = cls.from_pretrained(source, local_files_only=True, **kwargs)
    return components


def _cached_snapshot(repo_id: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelNotFoundError(f"{repo_id} is not in the local Hugging Face cache") from None


def _is_folder(name_or_path: str | os.PathLike[str]) -> bool:
    return bool(str(name_or_path)) and Path(name_or_path).is_dir()  # Path("") is ".", a folder


# --- single-file checkpoints --------------------------------------------------------------------------
# LTX-Video as ComfyUI and the LTX repo hold it: transformer + VAE in one `.safetensors`, original key layout.
# diffusers' `from_single_file` converts it given a config; the configs of the LTXPipeline releases ship in
# `ltx_configs/<diffusers model type>/{transformer,vae}/config.json`, so nothing is downloaded.
SINGLE_FILE_PIPELINES = ("LTXPipeline",)
SINGLE_FILE_CONFIGS = Path(__file__).resolve().parent / "ltx_configs"
# What a single file lacks, in the spec's repo: what `hf download REPO --include ...` must fetch.
SINGLE_FILE_BASE = ("model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*")


def single_file_base(
    spec: AdapterSpec, name_or_path: str | os.PathLike[str], checkpoint: Path | None = None
) -> Path:
    """Where a single-file checkpoint's text encoder, tokenizer and scheduler come from: the diffusers folder
    given as the model, else the local HF cache of the spec's repo. Raises a one-line ModelNotFoundError
    naming what is missing and the `hf download --include` that fetches only that."""
    if _is_folder(name_or_path):
        base, where = Path(name_or_path), str(name_or_path)
    else:
        where = f"{spec.repo_id} in the local Hugging Face cache"
        try:
            base = _cached_snapshot(spec.repo_id)
        except ModelNotFoundError:
            base = None
    needed = ("model_index.json", "text_encoder/config.json", "tokenizer", "scheduler")
    missing = list(needed) if base is None else [p for p in needed if not (base / p).exists()]
    if missing:
        include = " ".join(f'"{p}"' for p in SINGLE_FILE_BASE)
        raise ModelNotFoundError(
            f"--model-path {checkpoint}: a single-file checkpoint holds the transformer and VAE only; the text "
            f"encoder, tokenizer and scheduler come from {where}, which lacks {', '.join(missing)}; run "
            f"`hf download {spec.repo_id} --include {include}` (not its checkpoints) where there is "
            "network, or pass --model DIR (a diffusers LTX-Video folder)"
        )
    return base


def _single_file_configs(path: Path, checkpoint: dict, base: Path, user_folder: bool) -> Path:
    """The config root for `from_single_file`: a diffusers folder the user gave, else the shipped configs of
    the release the checkpoint's keys identify (diffusers' `infer_diffusers_model_type`)."""
    if user_folder and all((base / part / "config.json").exists() for part in ("transformer", "vae")):
        return base
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    shipped = sorted(p.name for p in SINGLE_FILE_CONFIGS.iterdir() if p.is_dir())
    try:
        model_type = infer_diffusers_model_type(checkpoint)
    except (KeyError, IndexError, AttributeError):
        model_type = "unknown"
    if model_type not in shipped:
        raise ModelNotFoundError(
            f"--model-path {path}: a {model_type!r} checkpoint; the LTXPipeline releases with shipped configs "
            f"are {shipped} (0.9.5 and later need LTXConditionPipeline); pass --model DIR, a diffusers folder "
            "with its transformer/ and vae/ configs"
        )
    return SINGLE_FILE_CONFIGS / model_type


def _load_single_file(spec: AdapterSpec, path: Path, base: Path, user_folder: bool, dtype: torch.dtype):
    import diffusers
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        checkpoint = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelNotFoundError(f"--model-path {path}: not a readable .safetensors file ({exc})") from None
    configs = _single_file_configs(path, checkpoint, base, user_folder)
    components = {}
    for name in ("transformer", "vae"):
        class_name = json.loads((configs / name / "config.json").read_text())["_class_name"]
        try:
            components[name] = getattr(diffusers, class_name).from_single_file(
                dict(checkpoint),  # the converters pop keys: each gets its own view of the tensors
                config=str(configs),
                subfolder=name,
                torch_dtype=dtype,
                local_files_only=True,
            )
        except (ValueError, RuntimeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotFoundError(
                f"--model-path {path}: its {name} does not match the config in {configs / name} ({first}); "
                "pass --model DIR with the configs of this checkpoint's release"
            ) from None
    return pipeline_class(spec).from_pretrained(base, **components, dtype=dtype, local_files_only=True)


def resolve_model(
    name_or_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> tuple[AdapterSpec, Path]:
    """The spec and the weights folder of `--model NAME|DIR [--model-path DIR] [--adapter SPEC]`.

    The one resolution `load_pipeline` and every CLI share: a diffusers folder given as the model is the
    weights folder too (never the cached copy of the repo its spec names); `model_path` wins when both are
    given. `model_path` may be a single-file LTX-Video `.safetensors`: its text encoder, tokenizer and
    scheduler then come from the folder given as the model, else the spec's repo in the HF cache
    (`single_file_base`). Raises ModelNotFoundError/SpecError before anything loads."""
    spec = resolve_spec(name_or_path, adapter)
    if model_path is None and _is_folder(name_or_path):
        model_path = name_or_path
    weights = model_folder(spec, model_path)
    if weights.is_file():
        single_file_base(spec, name_or_path, weights)  # refuse a missing text encoder before loading
    return spec, weights


class _ExpectedPickleOnlyNotice(logging.Filter):
    """Drops the notice diffusers logs for a component folder that ships `.bin` weights and no
    `.safetensors` (ZeroScope's repo): "An error occurred while trying to fetch DIR: Error no file named
    X.safetensors found in directory DIR." and the "Defaulting to unsafe serialization" line right after it.
    diffusers then reads the `.bin` with `torch.load(weights_only=True)`. Any other record passes, and so
    does this one when the `.bin` is absent too (then loading really fails)."""

    _NOTICE = re.compile(
        r"An error occurred while trying to fetch (?P<dir>.+): Error no file named (?P<name>\S+)\.safetensors "
        r"found in directory (?P=dir)\.$"
    )
    _FOLLOW_UP = "Defaulting to unsafe serialization"

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._after_notice = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        after_notice, self._after_notice = self._after_notice, False
        if after_notice and message.startswith(self._FOLLOW_UP):
            self.dropped += 1
            return False
        m = self._NOTICE.match(message)
        if m and (Path(m["dir"]) / f"{m['name']}.bin").is_file():
            self.dropped += 1
            self._after_notice = True
            return False
        return True


@contextmanager
def _quiet_expected_pickle_notices():
    logger = logging.getLogger("diffusers.models.modeling_utils")
    notice = _ExpectedPickleOnlyNotice()
    logger.addFilter(notice)
    try:
        yield notice
    finally:
        logger.removeFilter(notice)


def call_settings(pipe) -> dict:
    """Pipeline-call arguments this loaded model needs, decided from its components' configs (not its name).

    A timestep-conditioned VAE (`timestep_conditioning` in the VAE config: LTX-Video 0.9.1 and later) gets
    `decode_timestep` and `decode_noise_scale`; diffusers' defaults (0.0, silently) fit only 0.9.0."""
    vae_config = getattr(getattr(pipe, "vae", None), "config", None) or {}
    accepted = inspect.signature(type(pipe).__call__).parameters
    if vae_config.get("timestep_conditioning") and "decode_timestep" in accepted:
        return {"decode_timestep": LTX_DECODE_TIMESTEP, "decode_noise_scale": LTX_DECODE_NOISE_SCALE}
    return {}


def motion_adapter_folder(source: str | os.PathLike[str]) -> Path:
    """A MotionAdapter's folder: `source` itself, or its repo's snapshot in the local HF cache."""
    folder = Path(source)
    if folder.is_dir():
        if not (folder / "config.json").exists():
            raise ModelNotFoundError(
                f"--motion-adapter {folder}: no config.json there; pass a diffusers MotionAdapter folder"
            )
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelNotFoundError(
            f"motion adapter {source}: not a folder and not in the local Hugging Face cache; run "
            f"`hf download {source}` on a machine with network, or pass --motion-adapter DIR"
        ) from None


def load_motion_adapter(source: str | os.PathLike[str], dtype: torch.dtype):
    from diffusers import MotionAdapter

    return MotionAdapter.from_pretrained(motion_adapter_folder(source), dtype=dtype, local_files_only=True)


def _clip_skip_shim(pipe) -> None:
    """diffusers 0.42's clip_skip path (I2VGen-XL's default clip_skip=1 = the penultimate layer, and
    AnimateDiff's clip_skip) reads `text_encoder.text_model.final_layer_norm`, the transformers 4
    layout; transformers 5's CLIPTextModel holds `final_layer_norm` itself. Point `text_model` at the
    model (a plain attribute, not a registered submodule, so weights and state dicts are unchanged)."""
    encoder = getattr(pipe, "text_encoder", None)
    if encoder is not None and not hasattr(encoder, "text_model") and hasattr(encoder, "final_layer_norm"):
        object.__setattr__(encoder, "text_model", encoder)


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
    motion_adapter: str | os.PathLike[str] | None = None,
    speed: str | None = None,
):
    """Load a pipeline by model name (`zeroscope`, `ltx-video`, `tiny-zeroscope`, ...), diffusers
    folder, or spec file. The pipeline remembers its spec for `attach`.

    `memory` (None = diffusers defaults, untouched): a preset of `reneg_video.core.memory` (auto, off, balanced,
    low, minimal) applied for videos of `frames` x `height` x `width` (default: the spec's); the effective
    settings are in `pipe.reneg_memory`. `pipe.reneg_call` holds the call arguments the loaded model needs
    (`call_settings`), which `reneg_video.models.generate.generate` passes on. `motion_adapter` (AnimateDiff):
    a MotionAdapter folder or Hugging Face repo replacing the spec's default adapter (a stand-in's default is
    the one built with it). `speed` (None = untouched): off, fast, fastest of
    `reneg_video.core.speed`, effective settings in `pipe.reneg_speed` (run `scaled_steps` of them)."""
    spec, folder = resolve_model(name_or_path, model_path, adapter)
    if speed is not None:
        from ..core.speed import check_speed

        check_speed(speed)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, spec, device)
    extra = {}
    adapter_source = motion_adapter or (None if spec.standin else spec.motion_adapter)
    if adapter_source is not None:
        extra["motion_adapter"] = load_motion_adapter(adapter_source, torch_dtype)
    with _quiet_expected_pickle_notices():
        if folder.is_file():
            base = single_file_base(spec, name_or_path, folder)
            pipe = _load_single_file(spec, folder, base, _is_folder(name_or_path), torch_dtype)
        else:
            shared = shared_components(folder, torch_dtype)
            pipe = pipeline_class(spec).from_pretrained(
                folder, dtype=torch_dtype, local_files_only=True, **shared, **extra
            )
    if extra and hasattr(pipe.unet, "load_motion_modules"):
        # A folder saved with its UNetMotionModel (a stand-in, a saved AnimateDiff pipeline) keeps its
        # own motion layers unless told: load the given adapter's into it.
        pipe.unet.load_motion_modules(extra["motion_adapter"])
    if spec.defaults.scheduler and type(pipe.scheduler).__name__ != spec.defaults.scheduler:
        import diffusers

        scheduler_cls = getattr(diffusers, spec.defaults.scheduler)
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    _clip_skip_shim(pipe)
    pipe.reneg_spec = spec
    pipe.reneg_folder = folder
    if spec.vae_tiling_required:
        pipe.vae.enable_tiling()
    # What `generate` adds to every call for this model; the spec's own call_kwargs win over it.
    pipe.reneg_call = call_settings(pipe)
    if pipe.reneg_call:
        log.info("call settings from the model's configs: %s", pipe.reneg_call)
    if memory is None:
        pipe.to(device)
        return _with_speed(pipe, speed, device)
    from ..core.memory import OFFLOAD_MODES, apply_memory_preset, check_preset

    check_preset(memory)
    d = spec.defaults
    size = {"frames": frames or d.frames, "height": height or d.height, "width": width or d.width}
    # Before `.to(device)`: CPU offload (CUDA) places the models itself and auto reads the free memory
    # before the weights occupy it.
    settings = apply_memory_preset(pipe, memory, device=device, **size)
    if spec.vae_tiling_required and not settings.get("vae_tiling"):
        pipe.vae.enable_tiling()  # this VAE cannot decode untiled
        settings["vae_tiling"] = "required by the model"
    if settings["cpu_offload"] not in OFFLOAD_MODES:
        pipe.to(device)
    return _with_speed(pipe, speed, device)


def _with_speed(pipe, speed: str | None, device: torch.device):
    """The speed preset last: regional compilation wants the weights already on the device."""
    if speed is not None:
        from ..core.speed import apply_speed_preset

        apply_speed_preset(pipe, speed, device=device)
    return pipe
