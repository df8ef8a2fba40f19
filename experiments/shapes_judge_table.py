"""The judge on clean and degraded procedural data (docs/shapes.md): `python experiments/shapes_judge_table.py`."""

from __future__ import annotations

import numpy as np

from shapes_world import data
from shapes_world.judge import judge_many


def main(n: int = 200) -> None:
    rng = np.random.default_rng(2024)
    cols = ["accuracy", "passed", "present", "shape", "colour", "background", "motion", "crisp"]
    cols += ["steady", "smooth", "unmarked", "unghosted", "stable"]
    print("| data | n | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    rows = {"clean images": (False, (), ()), "clean videos": (True, (), ())}
    rows.update({f"videos: {k}": (True, (k,), ()) for k in data.VIDEO_DEGRADATIONS})
    # Video artefacts (issue 29) alone on otherwise clean clips; rows added after the v1 rows, so those
    # draw the same data as before.
    rows.update({f"videos: {k} (artefact)": (True, (), (k,)) for k in data.VIDEO_ARTEFACTS})
    for name, (video, kinds, artefacts) in rows.items():
        frames, prompts = [], []
        for _ in range(n):
            a = data.random_attributes(rng, video)
            frames.append(
                data.render(
                    a, rng, frames=data.FRAMES if video else 1, degradations=kinds, artefacts=artefacts
                )
            )
            prompts.append(data.caption_for(a))
        r = judge_many(frames, prompts)
        cells = [f"{r[c]:.3f}" if c in r else "-" for c in cols]
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
