"""Adapter specs: one small declarative TOML file per target model.

A spec says which diffusers pipeline a model uses, which text-encoder family it reads (and so which
embeddings fit), how many tokens and whether a mask goes with them, its defaults and its size rules.
Adding a model whose encoder family is known takes a spec file, not code: put it in a folder named by
`RENEG_VIDEO_ADAPTERS` (os.pathsep-separated), in `~/.config/reneg-video/adapters/`, or pass it with
`--adapter PATH`.

A spec may start from another one and state only what differs: `extends = "<name>"` takes the spec of
that name (or alias) from the same folders, built-in ones included, then the file's own keys win, tables
merged key by key (`[defaults]` may change one default). Not inherited: `name`, `aliases` and
`description`, which say which model the file is. `unset = ["repo_id", ...]` drops inherited keys, as a
stand-in drops its parent's weights source. Chains are followed; a cycle or an unknown parent is refused,
naming the file. Every stand-in spec (`tiny-*.toml`) extends its real model this way.

The built-in specs live in `reneg_video/specs/`, package data of the package itself (as open_clip keeps
its `model_configs/`), so a wheel and an editable install find them alike.
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import tomllib

from . import plugins
from .encoders import FAMILIES, FILL_EMPTY, FILL_MASKED, UNMASKED_FILLS, EncoderFamily
from .errors import SpecError, UsageError
from .settings import GuidanceSchedule, Settings

USER_ADAPTER_DIR = Path("~/.config/reneg-video/adapters").expanduser()
ADAPTERS_ENV = "RENEG_VIDEO_ADAPTERS"


@dataclass(frozen=True)
class Defaults:
    frames: int
    height: int
    width: int
    fps: int
    steps: int
    guidance: float
    scheduler: str | None = None  # a diffusers scheduler class name; None keeps the one the model ships
    # The handcrafted negative of --compare and reneg-validate's baseline; None: the ReNeg paper's prompt.
    negative_prompt: str | None = None


@dataclass(frozen=True)
class Rules:
    size_multiple: int  # height and width must be multiples of this (the VAE/patch grid)
    frame_step: int = 1  # frames must be frame_step * k + frame_offset (LTX-Video: 8k+1)
    frame_offset: int = 0
    min_steps: int = 1  # fewest denoising steps the pipeline can run (every built-in model runs 1)


@dataclass(frozen=True)
class AdapterSpec:
    """How to load a target model and feed it a negative embedding."""

    name: str
    pipeline: str  # diffusers pipeline class name
    encoder: str  # an encoders.FAMILIES key
    tokens: int  # token count the pipeline's text branch produces (any count the family accepts)
    mask: bool  # the pipeline takes negative_prompt_attention_mask (its denoiser attends under a mask)
    # "prompts": the pipeline repeats a given negative per video (SD, ZeroScope, PixArt);
    # "videos": it uses it as given, so it must already have prompts x videos rows (LTX-Video).
    negative_batch: str
    kind: str  # "video" or "image"
    defaults: Defaults
    rules: Rules
    aliases: tuple[str, ...] = ()
    description: str = ""
    repo_id: str | None = None  # Hugging Face repo, loaded from the local cache only
    # "<package>:<folder>", e.g. "shapes_world:weights/t2v": weights shipped inside an importable package
    # (models.pipeline.bundled_folder finds them wherever it is installed).
    bundled: str | None = None
    standin: bool = False  # built offline with seeded random weights: outputs noise
    gpu_dtype: str = "float16"
    fps_arg: str | None = None  # pipeline argument taking the frame rate (LTX: frame_rate)
    frames_arg: str = "num_frames"  # pipeline argument taking the frame count (Latte: video_length)
    call_kwargs: dict = field(default_factory=dict)  # extra arguments for every pipeline call
    setup: str = ""  # how to prepare weights that are not a diffusers repo (shown when they are missing)
    # Token strategy (encoders module docstring): "masked" for masked models; for unmasked models of a
    # masked family "empty-prompt" (default), "zeros" or "file-padding". None: the default for the spec.
    fill: str | None = None
    # False where this configuration runs without a negative branch (guidance 1, distilled models):
    # --neg is refused, naming why.
    negative_branch: bool = True
    image: bool = False  # the pipeline also takes a conditioning image (--image PATH; I2VGen-XL)
    # True where the VAE decodes only tiled (Allegro's raises otherwise): tiling stays on whatever the
    # memory preset says.
    vae_tiling_required: bool = False
    # AnimateDiff: the MotionAdapter (a Hugging Face repo or a folder) used unless --motion-adapter is given.
    motion_adapter: str | None = None
    # [guidance_schedule]: CFG scales per step by timestep (LTX-Video 0.9.7 dev's reference config), applied
    # unless the user passes --guidance; None: defaults.guidance at every step.
    guidance_schedule: GuidanceSchedule | None = None
    source: str = ""  # the file this spec came from

    @property
    def family(self) -> EncoderFamily:
        return FAMILIES[self.encoder]

    @property
    def token_fill(self) -> str:
        """The effective token strategy (`fill`, or the default for this spec's mask)."""
        if self.fill is not None:
            return self.fill
        if self.mask or not self.family.masked:
            return FILL_MASKED
        return FILL_EMPTY

    def frames_ok(self, frames: int) -> bool:
        return (
            frames > 0 and frames % self.rules.frame_step == self.rules.frame_offset % self.rules.frame_step
        )

    def frames_rule(self) -> str:
        r = self.rules
        return "any positive count" if r.frame_step == 1 else f"{r.frame_step}k+{r.frame_offset}"


_KINDS = ("video", "image")
_BATCH = ("prompts", "videos")


_DTYPES = ("float16", "bfloat16", "float32")


def parse_spec(data: dict, source: str) -> AdapterSpec:
    """Build a spec from parsed TOML, refusing unknown or missing keys, wrong types and defaults that
    break the spec's own rules, with the file named."""
    try:
        defaults = _build(Defaults, data.pop("defaults"), f"{source} [defaults]")
        rules = _build(Rules, data.pop("rules"), f"{source} [rules]")
    except KeyError as exc:
        raise SpecError(
            f"{source}: missing table [{exc.args[0]}]; see reneg_video/specs/zeroscope.toml for the layout"
        ) from None
    schedule = data.pop("guidance_schedule", None)
    if schedule is not None:
        data["guidance_schedule"] = _parse_schedule(schedule, f"{source} [guidance_schedule]")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise SpecError(f"{source}: aliases = {aliases!r}; expected a list of strings")
    data["aliases"] = tuple(aliases)
    spec = _build(AdapterSpec, {**data, "defaults": defaults, "rules": rules, "source": source}, source)
    if spec.encoder not in FAMILIES:
        raise SpecError(f"{source}: encoder {spec.encoder!r} is unknown; expected one of {sorted(FAMILIES)}")
    family = spec.family
    if not family.accepts_tokens(spec.tokens):
        fixed = f"exactly {family.positions} (its position table)" if family.positions else "a count >= 1"
        raise SpecError(f"{source}: tokens {spec.tokens}; the {spec.encoder} encoder takes {fixed}")
    if spec.mask and not family.masked:
        raise SpecError(
            f"{source}: mask=true contradicts the {spec.encoder} family (its embeddings carry no mask); "
            "set mask = false"
        )
    if spec.fill is not None:
        allowed = (FILL_MASKED,) if spec.mask or not family.masked else UNMASKED_FILLS
        if spec.fill not in allowed:
            raise SpecError(
                f"{source}: fill {spec.fill!r} with mask={str(spec.mask).lower()} in the {spec.encoder} family; "
                f"expected one of {allowed}"
            )
    if spec.kind not in _KINDS or spec.negative_batch not in _BATCH:
        raise SpecError(f"{source}: kind must be one of {_KINDS} and negative_batch one of {_BATCH}")
    if not spec.standin and not spec.repo_id and not spec.bundled:
        raise SpecError(
            f"{source}: a real model needs repo_id (the Hugging Face repo of its weights) or bundled"
        )
    if spec.gpu_dtype not in _DTYPES:
        raise SpecError(f"{source}: gpu_dtype {spec.gpu_dtype!r}; expected one of {_DTYPES}")
    r = spec.rules
    if r.size_multiple < 1 or r.frame_step < 1 or not 0 <= r.frame_offset < r.frame_step:
        raise SpecError(
            f"{source} [rules]: size_multiple {r.size_multiple}, frame_step {r.frame_step}, frame_offset "
            f"{r.frame_offset}; expected size_multiple >= 1, frame_step >= 1, 0 <= frame_offset < frame_step"
        )
    if spec.guidance_schedule is not None and not spec.negative_branch:
        raise SpecError(
            f"{source}: [guidance_schedule] with negative_branch = false; a model without a negative branch "
            "takes no guidance scales: remove one of them"
        )
    d = defaults
    try:
        validate_settings(spec, Settings(d.frames, d.height, d.width, d.steps, d.guidance, 0, d.fps))
    except UsageError as exc:
        raise SpecError(f"{source} [defaults]: {exc}; fix the spec's defaults") from None
    return spec


# diffusers' pipelines decide once per call, from `guidance_scale > 1`, to batch the negative branch with the
# positive one, then read the same test again at every step: a scale below 1 in the middle of a run would
# unbatch the latents but not the prompt embeddings. A schedule's scales therefore stay >= 1 (1 being the
# conditional prediction alone, what the reference computes at its guidance-1 steps).
SCHEDULE_MIN_SCALE = 1.0


def _parse_schedule(table, source: str) -> GuidanceSchedule:
    """[guidance_schedule] `timesteps` (thresholds in [0, 1], strictly descending) and `scales` (one each,
    >= 1, at least one above 1), refused with the file named."""
    if not isinstance(table, dict) or set(table) != {"timesteps", "scales"}:
        got = sorted(table) if isinstance(table, dict) else type(table).__name__
        raise SpecError(f"{source}: {got}; expected exactly the keys ['scales', 'timesteps']; fix the spec")
    lists = {}
    for key in ("timesteps", "scales"):
        values = table[key]
        numbers = isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )
        if not numbers or not values:
            raise SpecError(f"{source}: {key} = {values!r}; expected a non-empty list of finite numbers")
        lists[key] = tuple(float(v) for v in values)
    timesteps, scales = lists["timesteps"], lists["scales"]
    if len(timesteps) != len(scales):
        raise SpecError(
            f"{source}: {len(timesteps)} timesteps but {len(scales)} scales; expected one scale per threshold"
        )
    descending = all(a > b for a, b in itertools.pairwise(timesteps))
    if not descending or not 0.0 <= timesteps[-1] <= timesteps[0] <= 1.0:
        raise SpecError(
            f"{source}: timesteps = {list(timesteps)}; expected strictly descending thresholds in [0, 1] "
            "(the timestep over num_train_timesteps, 1 = pure noise)"
        )
    low = [s for s in scales if s < SCHEDULE_MIN_SCALE]
    if low:
        raise SpecError(
            f"{source}: scales {low} below {SCHEDULE_MIN_SCALE:g}; diffusers cannot turn CFG off mid-run, "
            "so use 1 (the conditional prediction alone) there"
        )
    if max(scales) <= SCHEDULE_MIN_SCALE:
        raise SpecError(
            f"{source}: scales = {list(scales)} never guide (all 1); remove the schedule and set "
            "guidance = 1 and negative_branch = false"
        )
    return GuidanceSchedule(timesteps, scales)


def validate_settings(spec: AdapterSpec, s: Settings) -> None:
    """Refuse settings that break the spec's rules (frame rule, size multiple, ranges), naming the fix."""
    if s.frames <= 0:
        raise UsageError(
            f"--frames {s.frames}: expected a positive frame count (default {spec.defaults.frames})"
        )
    if spec.kind == "image" and s.frames != 1:
        raise UsageError(f"--frames {s.frames}: {spec.name} is an image model; expected 1")
    if not spec.frames_ok(s.frames):
        step = spec.rules.frame_step
        near = (s.frames // step) * step + spec.rules.frame_offset
        raise UsageError(
            f"--frames {s.frames}: {spec.name} needs {spec.frames_rule()} frames (its VAE compresses time "
            f"by {step}); try --frames {near}"
        )
    m = spec.rules.size_multiple
    for name, value in (("height", s.height), ("width", s.width)):
        if value <= 0 or value % m:
            fixed = max(m, round(value / m) * m)
            raise UsageError(
                f"--{name} {value}: {spec.name} needs a positive multiple of {m}; try --{name} {fixed}"
            )
    if s.steps < max(1, spec.rules.min_steps):
        low = max(1, spec.rules.min_steps)
        raise UsageError(
            f"--steps {s.steps}: {spec.name} needs at least {low} denoising steps; try --steps {low}"
        )
    if not math.isfinite(s.guidance) or s.guidance < 0:
        raise UsageError(f"--guidance {s.guidance}: expected a finite number >= 0 (CFG runs only above 1)")
    if s.fps <= 0:
        raise UsageError(f"--fps {s.fps}: expected a positive frame rate")
    if s.seed < 0:
        raise UsageError(f"--seed {s.seed}: expected a non-negative integer")


# Field annotations (strings: `from __future__ import annotations`) -> the TOML types accepted.
_FIELD_TYPES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str | None": (str,),  # None is the default; TOML has no null
    "dict": (dict,),
    "tuple[str, ...]": (tuple,),
}


def _build(cls, table: dict, source: str):
    if not isinstance(table, dict):
        raise SpecError(f"{source}: a {type(table).__name__} where a table was expected; fix the spec")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise SpecError(f"{source}: unknown keys {unknown}; expected some of {sorted(names)}")
    for f in fields(cls):
        accepted = _FIELD_TYPES.get(str(f.type))
        if f.name not in table or accepted is None:
            continue
        value = table[f.name]
        wrong_bool = isinstance(value, bool) and bool not in accepted  # bool is an int subclass
        if wrong_bool or not isinstance(value, accepted):
            raise SpecError(f"{source}: {f.name} = {value!r}; expected a {f.type} value; fix the spec")
    try:
        return cls(**table)
    except TypeError as exc:
        raise SpecError(f"{source}: {exc}") from None


# Keys `extends` does not pass on: they say which model a file is (an inherited alias would make two
# specs answer to one name).
OWN_KEYS = ("name", "aliases", "description")


def _read_table(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such adapter spec; pass the path of a .toml spec file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise SpecError(f"{path}: not a readable TOML spec ({exc}); fix the file") from None


def _merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: tables merged key by key (recursively), any other value replaced."""
    out = dict(base)
    for key, value in over.items():
        both_tables = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_tables else value
    return out


class _Folders:
    """The raw tables of every spec file in the spec folders, found by spec name or alias, read once."""

    def __init__(self, files: list[Path]) -> None:
        self.tables = {path: _read_table(path) for path in files}
        self.by_name: dict[str, list[Path]] = {}
        for path, table in self.tables.items():
            aliases = table.get("aliases", [])
            names = [table.get("name"), *(aliases if isinstance(aliases, list) else [])]
            for name in names:
                if isinstance(name, str):
                    self.by_name.setdefault(name.lower(), []).append(path)

    def names(self) -> list[str]:
        return sorted({t["name"] for t in self.tables.values() if isinstance(t.get("name"), str)})

    def find(self, name: str, child: Path) -> Path | None:
        """The file `load_spec(name)` would read (later folders win), other than `child` itself, so that a
        user spec may extend the built-in spec it overrides."""
        found = [path for path in self.by_name.get(name.lower(), []) if not _same_file(path, child)]
        return found[-1] if found else None


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()  # a spec given by a relative path is still the folder's file


def _resolve_table(
    path: Path, table: dict, folders: Callable[[], _Folders], chain: tuple[Path, ...] = ()
) -> dict:
    """The whole table of the spec file `path` (its parsed TOML `table`): with `extends`, the parent's
    resolved table with this file's keys merged on top (see the module docstring); else `table` itself."""
    table = copy.deepcopy(table)
    parent_name = table.pop("extends", None)
    unset = table.pop("unset", None)
    if parent_name is None:
        if unset is not None:
            raise SpecError(f"{path}: unset without extends; unset drops keys inherited from a parent spec")
        return table
    if not isinstance(parent_name, str) or not parent_name:
        raise SpecError(
            f'{path}: extends = {parent_name!r}; expected the name of another spec, e.g. "zeroscope"'
        )
    known = folders()
    parent_path = known.find(parent_name, path)
    if parent_path is None:
        raise SpecError(
            f"{path}: extends {parent_name!r}, which is no known spec; expected the name of a built-in or "
            f"adapter-folder spec: {', '.join(known.names())}"
        )
    followed = (*chain, path)
    seen = [i for i, p in enumerate(followed) if _same_file(p, parent_path)]
    if seen:
        loop = " -> ".join(p.name for p in (*followed[seen[0] :], parent_path))
        raise SpecError(f"{path}: extends {parent_name!r} in a cycle ({loop}); remove one of these extends")
    parent = _resolve_table(parent_path, known.tables[parent_path], folders, (*chain, path))
    inherited = {key: value for key, value in parent.items() if key not in OWN_KEYS}
    if unset is not None:
        if not isinstance(unset, list) or not all(isinstance(k, str) and k in inherited for k in unset):
            raise SpecError(
                f"{path}: unset = {unset!r}; expected a list of keys {parent_name!r} passes on "
                f"(some of {sorted(inherited)})"
            )
        for key in unset:
            del inherited[key]
    return _merge(inherited, table)


def load_spec_file(path: str | os.PathLike[str]) -> AdapterSpec:
    """The spec in one .toml file (resolving its `extends` against the spec folders)."""
    path = Path(path)
    folders = functools.cache(lambda: _Folders(_spec_files()))  # read only if the file extends another
    return parse_spec(_resolve_table(path, _read_table(path), folders), str(path))


def _spec_files() -> list[Path]:
    builtin = resources.files("reneg_video") / "specs"
    files = sorted(Path(str(p)) for p in builtin.iterdir() if p.name.endswith(".toml"))
    folders = plugins.spec_folders() + [
        Path(d) for d in os.environ.get(ADAPTERS_ENV, "").split(os.pathsep) if d
    ]
    folders.append(USER_ADAPTER_DIR)
    for folder in folders:
        if folder.is_dir():
            files.extend(sorted(folder.glob("*.toml")))
    return files


def registry() -> dict[str, AdapterSpec]:
    """Every known spec by name and alias; user specs may override built-in ones."""
    known = _Folders(_spec_files())
    table: dict[str, AdapterSpec] = {}
    for path, raw in known.tables.items():
        spec = parse_spec(_resolve_table(path, raw, lambda: known), str(path))
        for key in (spec.name, *spec.aliases):
            table[key.lower()] = spec
    return table


def list_models() -> list[str]:
    """Names of every known model (built-in and user specs), stand-ins included."""
    return sorted({spec.name for spec in registry().values()})


def load_spec(name_or_path: str | os.PathLike[str]) -> AdapterSpec:
    """A spec by model name or alias, or from a .toml file path."""
    text = str(name_or_path)
    if text.endswith(".toml"):
        return load_spec_file(text)
    specs = registry()
    spec = specs.get(text.lower())
    if spec is None:
        # The nearest name or alias, not all of them (41 names made a 770-character line).
        close = difflib.get_close_matches(text.lower(), sorted(specs), n=1)
        if close:
            raise SpecError(f"unknown model {text!r}; did you mean {close[0]!r}? (`--list-models` lists all)")
        raise SpecError(
            f"unknown model {text!r}; `--list-models` lists all (a model of your own: --adapter PATH.toml)"
        )
    return spec


def describe_fit(spec: AdapterSpec) -> str:
    """Which released embedding file fits this model and why, in one line (--list-models, README)."""
    family = spec.family
    if family.foreign:
        return (
            f"fits no released file: {family.description} is not a space any ReNeg embedding was learned in"
        )
    if not spec.negative_branch:
        return "takes no --neg: it has no negative branch (it runs at guidance 1, distilled)"
    files = " or ".join(family.files) or f"an embedding of the {family.name} space"
    if not family.masked:
        how = f"{spec.tokens} tokens: the file as is"
    else:
        have = "/".join(map(str, family.tokens)) or "T"
        fill = spec.token_fill
        if fill == FILL_MASKED:
            span = have if have == str(spec.tokens) else f"{have} -> {spec.tokens}"
            how = f"{span} tokens under a mask: only the file's kept tokens are attended"
        else:
            how = f"{spec.tokens} unmasked tokens: the file's kept tokens, then fill {fill!r}"
    return f"--neg {files}: the same {family.name} space; {how}"
