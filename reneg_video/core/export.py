"""Step 7 of a call: write frames as MP4 (H.264) or GIF, atomically and validated.

Every file is written to a hidden temporary sibling, read back and checked (codec, pixel format, frame
count, faststart for MP4; frame count and looping for GIF), and only then renamed onto the destination.
An interrupted or failed export leaves the destination as it was.

Frames: [F, H, W, 3] float in [0, 1] (diffusers `output_type="np"`), uint8, or a list of PIL images.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import ExportError

SUFFIXES = (".mp4", ".gif")
# Browsers play GIF delays of 10 ms or less as 100 ms, and GIF delays are whole centiseconds:
# 50 fps (20 ms) is the fastest rate that plays as written.
GIF_MAX_FPS = 50
# H.264 with yuv420p subsamples chroma 2x2, so both sides must be even.
YUV420_MULTIPLE = 2
MP4_CODEC = "libx264"
MP4_PIX_FMT = "yuv420p"
# A render whose short side is under TINY_SHORT_SIDE px (the shapes world's 32, the stand-ins' 64) is a
# thumbnail in an ordinary player; `--upscale auto` enlarges it by the smallest whole factor that brings the
# short side to VIEW_SHORT_SIDE, nearest-neighbour, so no pixel value is invented.
TINY_SHORT_SIDE = 128
VIEW_SHORT_SIDE = 256
UPSCALE_AUTO = "auto"
UPSCALE_OFF = "off"
# The strip above each panel of a --compare video that names its arm (PIL's built-in bitmap font).
LABEL_STRIP = 16


def to_uint8(frames) -> np.ndarray:
    """Frames as uint8 [F, H, W, 3]; floats are clipped to [0, 1] after a finiteness check."""
    if isinstance(frames, list | tuple):
        frames = np.stack([np.asarray(f.convert("RGB") if hasattr(f, "convert") else f) for f in frames])
    if hasattr(frames, "detach"):  # torch tensor
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ExportError(f"frames of shape {list(frames.shape)}; expected [frames>0, height, width, 3]")
    if frames.dtype == np.uint8:
        return frames
    if not np.isfinite(frames).all():
        raise ExportError(
            f"{int((~np.isfinite(frames)).sum())} NaN/Inf pixel values; the generation diverged, try another seed or dtype=float32"
        )
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad odd sizes by repeating the last row/column (no resampling)."""
    h, w = frames.shape[1:3]
    pad_h, pad_w = h % YUV420_MULTIPLE, w % YUV420_MULTIPLE
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def upscale_factor(height: int, width: int, upscale: str | int) -> int:
    """The whole factor `--upscale` asks for at this size: auto (tiny renders only), off (1) or a number."""
    if upscale == UPSCALE_OFF:
        return 1
    if upscale == UPSCALE_AUTO:
        short = min(height, width)
        return -(-VIEW_SHORT_SIDE // short) if short < TINY_SHORT_SIDE else 1
    return int(upscale)


def upscale_nearest(frames: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel as a factor x factor block ([F, H, W, 3] -> [F, H*factor, W*factor, 3])."""
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def labelled_side_by_side(panels: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """uint8 videos [F, H, W, 3] side by side, each under a strip naming it (the --compare video)."""
    from PIL import Image, ImageDraw

    out = []
    for frames, label in zip(panels, labels, strict=True):
        strip = Image.new("RGB", (frames.shape[2], LABEL_STRIP), "black")
        ImageDraw.Draw(strip).text((3, 2), label, fill="white")
        band = np.broadcast_to(np.asarray(strip), (frames.shape[0], *np.asarray(strip).shape))
        out.append(np.concatenate([band, frames], axis=1))
    return np.concatenate(out, axis=2)


def check_destination(path: str | os.PathLike[str]) -> Path:
    """Refuse a destination that cannot be written, before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ExportError(f"--out {path}: unknown suffix {path.suffix!r}; expected .mp4 or .gif")
    if not path.parent.is_dir():
        raise ExportError(f"--out {path}: folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise ExportError(f"--out {path}: is a directory; give a file name ending in .mp4 or .gif")
    if not os.access(path.parent, os.W_OK):
        raise ExportError(f"--out {path}: folder {path.parent} is not writable; choose another folder")
    return path


def export_video(frames, path: str | os.PathLike[str], fps: int = 8) -> Path:
    """Write frames to `path` (.mp4 or .gif by suffix) atomically; return the path."""
    path = check_destination(path)
    if not 0 < fps <= 240:
        raise ExportError(f"fps {fps}; expected 1..240")
    data = to_uint8(frames)
    writer = _write_mp4 if path.suffix.lower() == ".mp4" else _write_gif
    with atomic_path(path) as tmp:
        writer(data, tmp, fps)
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    import imageio_ffmpeg

    frames = _even(frames)
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec=MP4_CODEC,
        pix_fmt_out=MP4_PIX_FMT,
        macro_block_size=1,  # sizes are already even; never rescale silently
        output_params=["-movflags", "+faststart"],  # moov before mdat: plays while downloading
        ffmpeg_log_level="error",
    )
    try:
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    validate_mp4(path, len(frames))


def validate_mp4(path: str | os.PathLike[str], frames: int | None = None) -> dict:
    """Check an MP4 is H.264/yuv420p, faststart, and has the expected frame count; return its metadata."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        raise ExportError(f"{path}: the encoder wrote nothing")
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        count = sum(1 for _ in reader)
    except (RuntimeError, StopIteration, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]  # not ffmpeg's whole log
        raise ExportError(f"{path}: unreadable video ({first})") from None
    finally:
        reader.close()
    if meta.get("codec") != "h264" or not str(meta.get("pix_fmt", "")).startswith(MP4_PIX_FMT):
        raise ExportError(f"{path}: codec {meta.get('codec')}/{meta.get('pix_fmt')}; expected h264/yuv420p")
    if frames is not None and count != frames:
        raise ExportError(f"{path}: {count} frames written; expected {frames}")
    atoms = _top_level_atoms(path)
    if "moov" not in atoms or "mdat" not in atoms or atoms.index("moov") > atoms.index("mdat"):
        raise ExportError(f"{path}: atoms {atoms}; expected moov before mdat (faststart)")
    return {**meta, "frames": count, "atoms": atoms}


def _top_level_atoms(path: Path) -> list[str]:
    """Top-level MP4 box types in file order. A box smaller than its own header ends the walk (it
    would otherwise seek backwards forever); the caller then finds moov or mdat missing."""
    atoms = []
    with open(path, "rb") as f:
        while len(header := f.read(8)) == 8:
            size, kind = struct.unpack(">I4s", header)
            header_size = 8
            if size == 1:  # 64-bit size follows
                large = f.read(8)
                if len(large) < 8:
                    break
                size, header_size = struct.unpack(">Q", large)[0], 16
            elif size == 0:  # extends to the end
                atoms.append(kind.decode("latin-1"))
                break
            if size < header_size:
                break
            f.seek(size - header_size, os.SEEK_CUR)
            atoms.append(kind.decode("latin-1"))
    return atoms


def gif_frame_ms(fps: int) -> int:
    """Per-frame delay in ms, whole centiseconds (the GIF unit), at most GIF_MAX_FPS."""
    return max(round(100 / min(fps, GIF_MAX_FPS)), 100 // GIF_MAX_FPS) * 10


def _write_gif(frames: np.ndarray, path: Path, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=gif_frame_ms(fps),
        loop=0,  # loop forever
        disposal=1,
        optimize=False,
    )
    validate_gif(path, len(frames), gif_frame_ms(fps))


def validate_gif(
    path: str | os.PathLike[str], frames: int | None = None, frame_ms: int | None = None
) -> dict:
    """Check a GIF loops forever and holds `frames` frames; return its metadata.

    With `frame_ms` (the per-frame delay it was written with) the check is on what plays: Pillow merges
    identical consecutive frames into one longer frame (a still video becomes one frame), so the total
    duration must be frames x frame_ms and the stored count may be lower.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.format != "GIF":
                raise ExportError(f"{path}: a {im.format} image; expected a GIF")
            count = getattr(im, "n_frames", 1)
            info = {"frames": count, "loop": im.info.get("loop"), "duration_ms": im.info.get("duration")}
            total = 0
            for i in range(count):
                im.seek(i)
                total += int(im.info.get("duration") or 0)
            info["total_ms"] = total
    except (UnidentifiedImageError, OSError, EOFError, ValueError, IndexError, struct.error) as exc:
        # Pillow's GIF parser raises IndexError/struct.error on damaged frames (seen by the fuzzer).
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ExportError(f"{path}: unreadable GIF ({first})") from None
    except Image.DecompressionBombError:
        raise ExportError(f"{path}: declares an absurd image size; not a GIF this project wrote") from None
    if frame_ms is not None and frames is not None:
        if count > frames or total != frames * frame_ms:
            raise ExportError(
                f"{path}: {count} frames playing {total} ms; expected {frames} frames of {frame_ms} ms"
            )
    elif frames is not None and count != frames:
        raise ExportError(f"{path}: {count} frames written; expected {frames}")
    if info["loop"] != 0:
        raise ExportError(f"{path}: loop={info['loop']}; expected 0 (forever)")
    return info
