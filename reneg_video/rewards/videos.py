"""Reward scores of whole videos, as `reneg-score` reports them: videos read from disk, every frame scored
(frames of videos with one prompt share the reward's batches), a summary per reward, a table, and the
JSON/CSV/PNG files. `commands.score` checks the options before anything here loads a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import UsageError

VIDEO_SUFFIXES = (".mp4", ".gif")


def read_video(path: Path) -> np.ndarray:
    """Read all frames of a .mp4 or .gif as uint8 RGB [F, H, W, 3]; refuse what is not one."""
    import imageio.v3 as iio

    if not path.exists():
        raise UsageError(f"video {str(path)!r} does not exist; expected a .mp4 or .gif file")
    if not path.is_file():
        raise UsageError(f"video {str(path)!r} is not a file; expected a .mp4 or .gif file")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(
            f"video {str(path)!r} has suffix {path.suffix!r}; expected one of {', '.join(VIDEO_SUFFIXES)} "
            "(convert it, e.g. with ffmpeg -i IN OUT.mp4)"
        )
    plugin = "pillow" if path.suffix.lower() == ".gif" else "FFMPEG"
    frames = []
    try:
        for frame in iio.imiter(path, plugin=plugin):
            frame = np.asarray(frame)
            if frame.ndim == 2:  # greyscale
                frame = np.repeat(frame[..., None], 3, axis=-1)
            frames.append(np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False))
    except Exception as exc:  # any decoder failure means the file is not a readable video
        raise UsageError(
            f"video {str(path)!r} could not be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
            "expected a valid .mp4 (h264) or .gif; check the file, re-encode it with ffmpeg"
        ) from None
    if not frames:
        raise UsageError(f"video {str(path)!r} holds no frames; expected at least one frame")
    if len({f.shape for f in frames}) != 1:
        raise UsageError(f"video {str(path)!r} has frames of differing sizes; expected one frame size")
    return np.stack(frames)


def summarise(scores: np.ndarray) -> dict[str, float | None]:
    """mean, min, max, population std and temporal = mean |s[i+1] - s[i]| (None for one frame)."""
    return {
        "mean": float(scores.mean()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "std": float(scores.std()),
        "temporal": float(np.abs(np.diff(scores)).mean()) if len(scores) > 1 else None,
    }


def build_report(prompt: str, scores: dict[str, np.ndarray], video: dict | None = None) -> dict:
    """One video's report; `video`, its video-level scores (`temporal.video_scores`), as "video_scores"."""
    names = list(scores)
    count = len(next(iter(scores.values())))
    frames = [{"index": i, **{name: float(scores[name][i]) for name in names}} for i in range(count)]
    report = {
        "prompt": prompt,
        "rewards": names,
        "frames": frames,
        "summary": {n: summarise(scores[n]) for n in names},
    }
    if video is not None:
        report["video_scores"] = video
    return report


def format_table(report: dict) -> str:
    names = report["rewards"]
    width = max(12, *(len(n) for n in names))
    lines = ["frame".ljust(8) + "".join(n.rjust(width + 2) for n in names)]
    for row in report["frames"]:
        lines.append(str(row["index"]).ljust(8) + "".join(f"{row[n]:{width + 2}.4f}" for n in names))
    lines.append("-" * len(lines[0]))
    for key in ("mean", "min", "max", "std", "temporal"):
        cells = []
        for n in names:
            value = report["summary"][n][key]
            cells.append(("n/a" if value is None else f"{value:.4f}").rjust(width + 2))
        lines.append(key.ljust(8) + "".join(cells))
    if "video_scores" in report:
        from .temporal import format_scores

        lines.append("video   " + format_scores(report["video_scores"]))
    if any(n.startswith("tiny-") for n in names):
        lines.append("note: tiny-* rewards are random models: their scores are noise.")
    return "\n".join(lines)


def write_outputs(
    report: dict, json_path: Path | None = None, csv_path: Path | None = None, plot_path: Path | None = None
) -> None:
    """The report as JSON, its per-frame scores as CSV (a video column for several videos), its curves as
    a PNG (one video); each written atomically, only where a path is given."""
    import csv
    import json

    from ..core.atomic import atomic_path

    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if csv_path:
        with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            entries = report.get("videos", [report])
            extra = list(CSV_PAIR_COLUMNS) if "video_scores" in entries[0] else []
            lead = ["video"] if "videos" in report else []  # several videos: one row per frame of each
            writer.writerow([*lead, "index", *report["rewards"], *extra])
            for entry in entries:
                for row in entry["frames"]:
                    cells = [row["index"], *(repr(row[n]) for n in report["rewards"])]
                    pairs = _pair_cells(entry, row["index"]) if extra else []
                    writer.writerow([*([entry["video"]] if lead else []), *cells, *pairs])
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        index = [row["index"] for row in report["frames"]]
        for name in report["rewards"]:
            label = f"{name} (noise)" if name.startswith("tiny-") else name
            ax.plot(index, [row[name] for row in report["frames"]], marker="o", markersize=3, label=label)
        ax.set_xlabel("frame")
        ax.set_ylabel("score (higher is better)")
        ax.set_title(f"per-frame reward: {report['prompt'][:70]}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(plot_path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


# Per-frame CSV columns behind the video-level scores: frame i's MAD to frame i - 1 and its VBench
# consistency term (empty for frame 0, and consistency empty when no reward embedded the frames).
CSV_PAIR_COLUMNS = ("mad_to_previous", "consistency_term")


def _pair_cells(entry: dict, index: int) -> list[str]:
    video = entry["video_scores"]
    if index == 0:
        return ["", ""]
    consistency = video["pair_consistency"]
    return [repr(video["pair_mad"][index - 1]), "" if consistency is None else repr(consistency[index - 1])]


def video_paths(items: Sequence[str]) -> list[Path]:
    """The videos named: files as given, folders as their .mp4/.gif files sorted by name (hidden skipped)."""
    paths: list[Path] = []
    for text in items:
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir()
                if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file() and not p.name.startswith(".")
            )  # fmt: skip
            if not found:
                raise UsageError(f"video folder {text!r} holds no .mp4 or .gif files; expected videos in it")
            paths += found
        else:
            paths.append(path)
    return paths


def score_videos(reward, videos: list[np.ndarray], prompts: list[str], batch_size: int) -> list[np.ndarray]:
    """Per-frame scores of each video. Videos with the same prompt and frame size are scored together,
    so the reward's batches of `batch_size` frames span videos."""
    groups: dict[tuple, list[int]] = {}
    for i, (video, prompt) in enumerate(zip(videos, prompts, strict=True)):
        groups.setdefault((prompt, video.shape[1:]), []).append(i)
    out: list[np.ndarray | None] = [None] * len(videos)
    for (prompt, _), members in groups.items():
        frames = np.concatenate([videos[i] for i in members])
        values = reward.score_frames(frames, prompt, batch_size=batch_size).detach().cpu().double().numpy()
        if not np.isfinite(values).all():
            raise RuntimeError(f"{reward.name} produced non-finite scores")
        bounds = np.cumsum([0] + [len(videos[i]) for i in members])
        for i, start, stop in zip(members, bounds[:-1], bounds[1:], strict=True):
            out[i] = values[start:stop]
    return out


def reward_files(names: Sequence[str], checkpoint=None, med_config=None, tokenizer=None) -> dict:
    """Find every named reward's weights now, so that a missing one refuses before any model loads;
    returns ImageReward's files (from its options, else its environment variables or the HF cache)."""
    files = {}
    if "imagereward" in names:
        from .imagereward import resolve_files

        found = resolve_files(checkpoint, med_config, tokenizer)
        files = {"checkpoint": found.checkpoint, "med_config": found.med_config, "tokenizer": found.tokenizer}
    if "clip" in names or "pickscore" in names:
        from . import clip

        if "clip" in names:
            clip._local_folder(None, clip.ENV_CLIP, clip.CLIP_REPO, "CLIP model")
        if "pickscore" in names:
            clip._local_folder(None, clip.ENV_PICKSCORE, clip.PICKSCORE_REPO, "PickScore model")
            clip._local_folder(
                None, clip.ENV_PICKSCORE_TOKENIZER, clip.PICKSCORE_TOKENIZER_REPO, "PickScore tokenizer"
            )
    if "hpsv2" in names:
        from . import hpsv2

        hpsv2.resolve_checkpoint()
        hpsv2.resolve_tokenizer()
    if "aesthetic" in names:
        from . import aesthetic

        aesthetic.resolve_checkpoint()
        aesthetic.resolve_clip()
    return files


def score_with_each(
    names: Sequence[str],
    videos: list[np.ndarray],
    prompts: list[str],
    device: str,
    batch_size: int,
    files: dict,
) -> tuple[list[dict[str, np.ndarray]], list[dict]]:
    """Per video {reward: per-frame scores}, the rewards loaded one at a time (only one model in memory);
    `files` are ImageReward's (`reward_files`). Also each video's video-level scores
    (`temporal.video_scores`), consistency on the embeddings of the first reward with a CLIP image tower."""
    from . import load_reward
    from .temporal import embedder, video_scores

    scores: list[dict[str, np.ndarray]] = [{} for _ in videos]
    embedded, reasons = None, []
    for name in names:
        kwargs = {"device": device, "batch_size": batch_size}
        if name == "imagereward":
            kwargs.update(files)
        reward = load_reward(name, **kwargs)
        for per_video, values in zip(scores, score_videos(reward, videos, prompts, batch_size), strict=True):
            per_video[name] = values
        if embedded is None:
            found, embed = embedder(reward)
            if found is None:
                reasons.append(embed)
            else:
                embedded = (found, [embed(video, batch_size=batch_size) for video in videos])
        del reward
    if embedded is None:
        return scores, [video_scores(video, skipped="; ".join(reasons)) for video in videos]
    found, embeddings = embedded
    level = [video_scores(v, e) for v, e in zip(videos, embeddings, strict=True)]
    return scores, [{**v, "embedding": found} for v in level]


def combined_report(
    paths: list[Path],
    prompts: list[str],
    names: list[str],
    scores: list[dict],
    video: list[dict] | None = None,
) -> dict:
    """One video's report (`build_report`), or for several {"rewards", "videos": [{"video", ...}, ...]};
    `video`: each video's video-level scores (`score_with_each`)."""
    video = video or [None] * len(paths)
    reports = [build_report(*args) for args in zip(prompts, scores, video, strict=True)]
    if len(paths) == 1:
        return reports[0]
    return {"rewards": names, "videos": [{"video": str(p), **r} for p, r in zip(paths, reports, strict=True)]}
