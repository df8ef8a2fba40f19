"""Which token strategy should an unmasked target use for the rows a file does not define? (issue 13)

A T5 file learned under a mask (PixArt-alpha: 120 rows, only the first kept) given to a model that runs
T5 unmasked with more rows (CogVideoX: 226) needs its other rows filled: `empty-prompt` (the target's own
empty-prompt rows, the default), `zeros` or `file-padding` (reneg_video/core/encoders.py). No real T5
model runs here, so the question is asked in the shapes world, whose generators attend to all 16 rows
unmasked, as CogVideoX does: the shipped shapes ReNeg embedding keeps its first K rows (as if learned
under a mask of K), the other rows are filled by each strategy through the same `match_tokens` the
adapters use, and every arm is rendered on held-out prompts with the same noise, judged and scored:

    python experiments/shapes_token_fill.py --model shapes-t2i --kept 2,8 --seeds 2 --out runs/token-fill

Writes OUT/fills/*.safetensors (the arms), OUT/report.json (shapes-eval's) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from reneg_video.core.embedding import NegativeEmbedding, load_embedding
from reneg_video.core.encoders import FILL_EMPTY, FILL_FILE, FILL_ZEROS, match_tokens
from reneg_video.models.pipeline import load_pipeline
from shapes_world import world
from shapes_world.commands import eval as shapes_eval

SHIPPED = world.weights_root() / world.RENEG_BIN
COLUMNS = ("judge_accuracy", "reward", "passed")


def _empty_rows(model: str, model_path: str | None) -> torch.Tensor:
    """The target's own encoding of the empty prompt, [1, 16, 128], as its pipeline makes the null arm."""
    pipe = load_pipeline(model, "cpu", "float32", model_path=model_path)
    ids = pipe.tokenizer(
        "", padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="shapes-t2i", help="shapes-t2i or shapes-t2v")
    p.add_argument("--model-path", metavar="DIR", help="the generator's diffusers folder (default: shipped)")
    p.add_argument("--neg", default=str(SHIPPED), help="the full embedding whose rows are kept")
    p.add_argument("--kept", default="2,8", help="comma-separated K: rows of the file kept")
    p.add_argument("--max-prompts", type=int, help="only the first held-out prompts")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()

    full = load_embedding(args.neg)
    empty = _empty_rows(args.model, args.model_path)
    tokens = full.tokens
    fills = args.out / "fills"
    fills.mkdir(parents=True, exist_ok=True)
    arms = [fills / "full.safetensors"]
    NegativeEmbedding(full.tensor, None, full.family).save(arms[0])
    for kept in (int(k) for k in args.kept.split(",")):
        mask = torch.zeros(1, tokens, dtype=torch.bool)
        mask[:, :kept] = True
        for fill in (FILL_EMPTY, FILL_ZEROS, FILL_FILE):
            # The file-padding arm repeats the file's last kept row, as a masked file's padding does.
            source = torch.cat(
                [full.tensor[:, :kept], full.tensor[:, kept - 1 : kept].expand(1, tokens - kept, -1)], 1
            )
            tensor, _ = match_tokens(source, mask, tokens, f"kept {kept}", fill=fill, empty=empty)
            path = fills / f"k{kept}-{fill}.safetensors"
            NegativeEmbedding(tensor, None, full.family).save(path)
            arms.append(path)
    argv = ["--model", args.model, "--prompts", "heldout", "--seeds", str(args.seeds), "--out", str(args.out)]
    if args.max_prompts:
        argv += ["--max-prompts", str(args.max_prompts)]
    if args.model_path:
        argv += ["--model-path", args.model_path]
    for arm in arms:
        argv += ["--neg", str(arm)]
    if shapes_eval.main(argv) != 0:
        raise SystemExit(2)
    report = json.loads((args.out / "report.json").read_text())
    print("| arm | judge accuracy | shapes-reward | passed |\n|---|---|---|---|")
    for name, r in report["arms"].items():
        cells = []
        for key in COLUMNS:
            v = r.get(key)
            cells.append(
                "-" if not isinstance(v, dict) else f"{v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
