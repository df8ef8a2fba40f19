"""The export stage's guidance sweep (issue 29 item 3): each generator sampled with null text (the empty
negative) at every guidance of SWEEP_GUIDANCES on the same held-out prompts x seeds, judged, and the
judge-optimal guidance chosen (`choose_guidance`). The export's judge figure is then measured at the chosen
value, and `reneg-build-shapes --install` writes it as the spec's `[defaults] guidance`.
"""

from __future__ import annotations

from .. import data as shapes_data
from ..judge import judge_many
from .common import BuildConfig, sample

# The grid: 1.5 is the lowest scale at which classifier-free guidance still pushes towards the text (at 1.0
# and below the pipelines skip the unconditional branch); then steps of about x1.3-1.5 up to 7.5, SD's
# default. It holds both previous fixed values (BuildConfig.eval_guidance 5.0 for t2i, eval_guidance_t2v 2.5
# for t2v, where zero-terminal-SNR t2v lost its crispness at 5), so the sweep table says how the shipped
# defaults compare with the chosen one on the same samples.
SWEEP_GUIDANCES = (1.5, 2.0, 2.5, 3.5, 5.0, 7.5)
# Held-out prompts per generator in the full build's sweep (its first prompts of the export's evaluation
# list), one seed each. Sized by cost at one thread on the 2-core build machine (docs/shapes.md,
# "Reproducing"): a t2i sample at 20 steps takes about 0.6 s, a t2v clip at 16x16 latents about 11 s, so
# the t2i sweep (6 x 40 samples) costs about 2.5 min and the t2v sweep (6 x 12 clips) about 13 min; with 6
# clips a value could win by one clip's checks (~0.05 of accuracy). A build with fewer eval_prompts (the
# quick build) sweeps proportionally fewer (`sweep_prompts`), at least one.
SWEEP_PROMPTS = {"t2i": 40, "t2v": 12}
# The sweep's seeds: not the export's judge seeds (0 .. eval_seeds - 1), so the judge figure reported at the
# chosen guidance is measured on other samples than the ones that chose it (no winner's-curse inflation).
SWEEP_SEEDS = (1000,)
# Accuracies closer than this are a tie: the lower guidance wins (it moves the sample less from the model's
# own distribution; when the judge cannot tell them apart, the gentler push is the cheaper one to be wrong).
TIE = 1e-9
RULE = "highest judge accuracy on the sweep's samples; ties (within 1e-9) to the lower guidance"


def held_out_prompts(count: int) -> list[str]:
    """The first `count` prompts of the export's evaluation list (held-out prompts, cycled)."""
    _, held = shapes_data.split_prompts()
    return [held[i % len(held)] for i in range(count)]


def sweep_prompts(cfg: BuildConfig, name: str) -> int:
    """Prompts in `name`'s sweep: SWEEP_PROMPTS scaled by the build's eval_prompts over the full build's."""
    full = BuildConfig().eval_prompts
    return max(1, SWEEP_PROMPTS[name] * cfg.eval_prompts // full)


def sweep_rows(cfg: BuildConfig, name: str) -> tuple[list[str], list[int]]:
    """The sweep's (prompt, seed) rows for generator `name`, the same at every guidance (paired)."""
    rows = [(p, s) for p in held_out_prompts(sweep_prompts(cfg, name)) for s in SWEEP_SEEDS]
    return [p for p, _ in rows], [s for _, s in rows]


def choose_guidance(table: list[dict]) -> float:
    """The guidance of the row with the highest `accuracy`; among rows within TIE of it, the lowest."""
    if not table:
        raise ValueError("choose_guidance: an empty sweep table")
    best = max(row["accuracy"] for row in table)
    return min(float(row["guidance"]) for row in table if row["accuracy"] >= best - TIE)


def sweep_guidance(
    pipe,
    prompts: list[str],
    seeds: list[int],
    *,
    video: bool,
    steps: int,
    grid: tuple[float, ...] = SWEEP_GUIDANCES,
) -> list[dict]:
    """One row per guidance of `grid`: {"guidance", every judge_many key (accuracy, passed, each check's
    mean, n)}, from the same prompts x seeds at every value, null negative."""
    table = []
    for guidance in grid:
        frames = sample(pipe, prompts, seeds, video=video, steps=steps, guidance=guidance)
        table.append({"guidance": float(guidance), **judge_many(list(frames), prompts)})
    return table


def sweep_summary(tables: dict[str, list[dict]], rows: dict[str, tuple[list[str], list[int]]], steps: int):
    """What stage.json records of the sweep: the grid, the rule, and per generator its table and choice."""
    out: dict = {"grid": list(SWEEP_GUIDANCES), "steps": steps, "negative": "", "rule": RULE}
    for name, table in tables.items():
        prompts, seeds = rows[name]
        out[name] = {
            "prompts": len(set(prompts)),
            "seeds": sorted(set(seeds)),
            "table": table,
            "chosen": choose_guidance(table),
        }
    return out
