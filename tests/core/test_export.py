"""Export: validated MP4/GIF, atomic writes, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from reneg_video import ExportError, export_video
from reneg_video.core import export as export_module
from reneg_video.core.export import gif_frame_ms, validate_gif, validate_mp4


def frames(n=4, h=31, w=45):
    return np.random.default_rng(0).random((n, h, w, 3), dtype=np.float32)


def test_mp4_pads_odd_sizes_to_even_and_is_faststart(tmp_path):
    meta = validate_mp4(export_video(frames(), tmp_path / "a.mp4", fps=8), 4)
    assert meta["size"] == (46, 32) and meta["fps"] == 8.0
    assert meta["atoms"].index("moov") < meta["atoms"].index("mdat")


def test_gif_loops_and_caps_the_frame_rate(tmp_path):
    info = validate_gif(export_video(frames(), tmp_path / "a.gif", fps=120), 4)
    assert info["loop"] == 0 and info["duration_ms"] == 20  # 50 fps: the fastest browsers honour
    assert gif_frame_ms(8) == 120 and gif_frame_ms(10) == 100


def test_non_finite_frames_are_refused_and_nothing_is_written(tmp_path):
    bad = frames()
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(ExportError, match="NaN"):
        export_video(bad, tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_out_of_range_values_are_clipped(tmp_path):
    f = frames() * 3 - 1
    export_video(f, tmp_path / "a.gif")
    assert validate_gif(tmp_path / "a.gif", 4)["frames"] == 4


def test_a_failed_validation_leaves_the_old_destination(tmp_path, monkeypatch):
    dest = tmp_path / "a.mp4"
    dest.write_bytes(b"old")

    def fail(*_a, **_k):
        raise ExportError("simulated")

    monkeypatch.setattr(export_module, "validate_mp4", fail)
    with pytest.raises(ExportError):
        export_video(frames(), dest)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


@pytest.mark.parametrize("shape", [(0, 8, 8, 3), (4, 8, 8), (4, 8, 8, 4)])
def test_bad_frame_shapes(tmp_path, shape):
    with pytest.raises(ExportError, match="expected"):
        export_video(np.zeros(shape, np.float32), tmp_path / "a.mp4")


def test_still_frames_export_as_gif(tmp_path):
    """Regression: Pillow merges identical consecutive GIF frames, so a still video (e.g. all black)
    failed its own frame-count check. What plays must be right: 6 frames x 120 ms."""
    still = np.zeros((6, 16, 16, 3), dtype=np.uint8)
    info = validate_gif(export_video(still, tmp_path / "s.gif", fps=8), 6, gif_frame_ms(8))
    assert info["total_ms"] == 6 * 120 and info["frames"] < 6
    with pytest.raises(ExportError, match="expected 6"):
        validate_gif(tmp_path / "s.gif", 6)  # the stored count alone is not 6
    assert validate_mp4(export_video(still, tmp_path / "s.mp4", fps=8), 6)["frames"] == 6


def test_huge_gif_header_is_refused_not_crashed(tmp_path):
    """Regression: a GIF declaring 65535x65535 raised Pillow's DecompressionBombError (not an OSError)."""
    data = bytearray(export_video(frames(2, 16, 16), tmp_path / "a.gif", fps=8).read_bytes())
    data[6:10] = b"\xff\xff\xff\xff"
    (tmp_path / "big.gif").write_bytes(bytes(data))
    with pytest.raises(ExportError):
        validate_gif(tmp_path / "big.gif")


def test_upscale_auto_enlarges_tiny_renders_only_nearest_neighbour():
    from reneg_video.core.export import labelled_side_by_side, upscale_factor, upscale_nearest

    assert upscale_factor(32, 32, "auto") == 8 and upscale_factor(64, 48, "auto") == 6
    assert upscale_factor(320, 576, "auto") == 1 and upscale_factor(32, 32, "off") == 1
    assert upscale_factor(32, 32, 3) == 3
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    big = upscale_nearest(frames, 4)
    assert big.shape == (2, 12, 16, 3)
    assert np.array_equal(big[:, ::4, ::4], frames) and set(np.unique(big)) <= set(np.unique(frames))
    side = labelled_side_by_side([big, big], ["null text", "ReNeg"])
    assert side.shape == (2, 12 + 16, 32, 3)  # a 16-px label strip above each panel
    assert np.array_equal(side[:, 16:, :16], big) and side[:, :16].any()  # the label's text is drawn
