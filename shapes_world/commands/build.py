"""`reneg-build-shapes`: train every model of the shapes world from seeds (resumable).

    reneg-build-shapes --out build/shapes            # the full build (~1.5 h, 2 CPU cores)
    reneg-build-shapes --out build/shapes --resume   # continue a killed build
    reneg-build-shapes --out /tmp/q --quick          # a reduced build (~1.5 min)
    reneg-build-shapes --out /tmp/g --vae-from shapes_world/weights/common/vae   # on the shipped VAE

Then `--install` copies OUT/export into the package's shipped weights folder, the text encoder, tokenizer
and VAE both generators share once in weights/common (`install`), and writes each generator's guidance
chosen by the export stage's sweep into its spec's `[defaults] guidance` line (`set_spec_guidance`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from reneg_video.core.atomic import atomic_path
from reneg_video.core.errors import ReNegError, UsageError
from reneg_video.models.pipeline import SHARED_COMPONENTS_FILE

from .. import world as W
from ..plugin import SPECS_DIR


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as every other refusal
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    from ..build import STAGES

    p = _Parser(
        prog="reneg-build-shapes",
        description="Train the shapes world (tiny CLIP text encoder, VAE, text-to-image and text-to-video "
        "UNets, learned reward) from seeds. Each stage checkpoints; --resume continues a killed build.",
        epilog="stages: " + ", ".join(STAGES) + ". The export stage writes OUT/export/{t2i,t2v,reward} "
        "(float16 safetensors) and the judge accuracy of both generators in OUT/export/stage.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="build folder (new, or existing with --resume)"
    )
    p.add_argument("--quick", action="store_true", help="reduced steps: a build for tests/CI, learns little")
    p.add_argument("--resume", action="store_true", help="continue the build in --out")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage's data, init and noise")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to run, in order")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--vae-from",
        metavar="DIR",
        help="take this trained AutoencoderKL (e.g. shapes_world/weights/common/vae) as the "
        "build's VAE instead of training one: the vae stage copies it, the decoder stage is skipped "
        "(about 75 min less at one thread, for work on the generators)",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="after the build, copy OUT/export/* into shapes_world/weights/ and write each generator's "
        "judge-optimal guidance (the export stage's guidance sweep) into the [defaults] guidance line of "
        "shapes_world/specs/shapes-t2i.toml and shapes-t2v.toml, printing what changed",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.seed < 0 or args.threads < 1:
            raise UsageError(
                f"--seed {args.seed} / --threads {args.threads}: expected seed >= 0, threads >= 1"
            )
        import torch
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        from ..build import BuildConfig, build

        diffusers_logging.set_verbosity_error()
        transformers_logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
        cfg = BuildConfig.quick(args.seed) if args.quick else BuildConfig(seed=args.seed)
        cfg.vae_from = args.vae_from
        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        timings = build(args.out, cfg, resume=args.resume, stages=stages)
        if args.install:
            install(Path(args.out))
    except ReNegError as exc:
        print(f"reneg-build-shapes: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "seconds": timings}))
    return 0


def install(out: Path) -> None:
    """Copy the exported models into the package (the shipped weights), keeping shipped embeddings.

    The generators' shared components (W.SHARED_COMPONENTS) go once into weights/common, and each
    generator's folder names them in SHARED_COMPONENTS_FILE (reneg_video loads them from there); they
    must be byte-identical in both exports, as every build makes them (one frozen text encoder, one VAE).
    Then each generator's guidance chosen by the export's sweep goes into its spec (specs/ beside weights/)."""
    export = out / "export"
    if not (export / "stage.json").exists():
        raise UsageError(f"--install: {export} is not a finished export; run the export stage first")
    first, *others = W.GENERATORS
    for name in W.SHARED_COMPONENTS:
        for other in others:
            if _files(export / first / name) != _files(export / other / name):
                raise UsageError(
                    f"--install: {export / first / name} and {export / other / name} differ; expected one "
                    f"{name} shared by {', '.join(W.GENERATORS)} (a build writes them from the same stages)"
                )
    root = W.weights_root()
    plan = guidance_plan(json.loads((export / "stage.json").read_text()), root.parent / SPECS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    for name in (*W.MODELS, W.COMMON_DIR):
        if (root / name).exists():
            shutil.rmtree(root / name)
    for name in W.MODELS:
        shared = W.SHARED_COMPONENTS if name in W.GENERATORS else ()
        shutil.copytree(
            export / name, root / name, ignore=lambda _folder, names, s=shared: set(s) & set(names)
        )
        if shared:
            places = {part: f"../{W.COMMON_DIR}/{part}" for part in shared}
            (root / name / SHARED_COMPONENTS_FILE).write_text(json.dumps(places, indent=1) + "\n")
    for name in W.SHARED_COMPONENTS:
        shutil.copytree(export / first / name, root / W.COMMON_DIR / name)
    shutil.copy(export / "stage.json", root / "build_summary.json")
    write_guidance(plan)


def guidance_plan(summary: dict, specs: Path) -> list[tuple[Path, str, float, float]]:
    """What --install writes into the specs: per generator (spec path, its new text, old guidance, the
    guidance chosen by the export stage's sweep, `summary["guidance_sweep"][name]["chosen"]`). Checked
    before any weights are replaced; an export without a sweep (built before it existed) plans nothing."""
    sweep = summary.get("guidance_sweep")
    if not sweep:
        return []
    plan = []
    for name in W.GENERATORS:
        path = specs / f"shapes-{name}.toml"
        if not path.is_file():
            raise UsageError(f"--install: {path}: no such spec, expected one per generator in {specs}")
        chosen = float(sweep[name]["chosen"])
        text, old = spec_with_guidance(path.read_text(), chosen, path)
        plan.append((path, text, old, chosen))
    return plan


def write_guidance(plan: list[tuple[Path, str, float, float]]) -> None:
    """Write each planned spec atomically (only where the guidance changes) and print what changed."""
    if not plan:
        print(
            "reneg-build-shapes: the export records no guidance sweep; specs left unchanged", file=sys.stderr
        )
    for path, text, old, new in plan:
        if old != new:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        what = "unchanged" if old == new else f"{old} -> {new}"
        print(
            f"reneg-build-shapes: {path}: [defaults] guidance {what} (judge-optimal in the export's sweep)",
            file=sys.stderr,
        )


def set_spec_guidance(path: Path, guidance: float) -> tuple[float, float]:
    """Set the spec's [defaults] guidance (spec_with_guidance), atomically. Returns (old, new)."""
    text, old = spec_with_guidance(path.read_text(), guidance, path)
    write_guidance([(path, text, old, guidance)])
    return old, guidance


_GUIDANCE_LINE = re.compile(r"^(guidance\s*=\s*)([^#\s]+)(.*)$")


def spec_with_guidance(text: str, guidance: float, where: Path) -> tuple[str, float]:
    """`text` (a spec) with the `guidance = ...` line of its [defaults] table set to `guidance`, a trailing
    comment kept and every other line byte for byte; and the old value."""
    lines = text.splitlines(keepends=True)
    table, found = None, []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            table = stripped
        elif table == "[defaults]" and _GUIDANCE_LINE.match(line.rstrip("\r\n")):
            found.append(i)
    if len(found) != 1:
        raise UsageError(
            f"--install: {where}: expected one `guidance = ...` line in [defaults], found {len(found)}"
        )
    i = found[0]
    body = lines[i].rstrip("\r\n")
    head, value, tail = _GUIDANCE_LINE.match(body).groups()
    lines[i] = f"{head}{guidance!r}{tail}{lines[i][len(body) :]}"
    return "".join(lines), float(value)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


if __name__ == "__main__":
    sys.exit(main())
