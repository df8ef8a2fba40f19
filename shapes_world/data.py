"""Procedural data of the shapes world: one coloured shape on a plain background, still or moving.

Deterministic from a seed (numpy Generator + Pillow drawing). A fraction of samples is degraded the way
real training data is (blur, noise, faded contrast, a colour cast, the wrong shape or none, jitter in
videos); the caption names a visible degradation half of the time ("a blurry red circle ..."), so the
generators learn the bad modes together with the words a handcrafted negative prompt uses.

Videos (only) may also carry an artefact that web video has and web images do not (flicker, frozen or
stuttering frames, a corner watermark, ghosting), never named in a caption: the data gap between the
image and video halves of a real training set (issue 29). Still images draw nothing for it from the rng.

Shape legend: F frames, H = W = IMAGE_SIZE, uint8 RGB frames [F, H, W, 3].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .world import COLOURS, DIRECTIONS, FRAMES, IMAGE_SIZE, SHAPES

# Shapes are drawn at 4x and downsampled: antialiased edges, as a camera would give.
SUPERSAMPLE = 4
# Half-extent of a shape in pixels: 5..7.5 of 32 keeps it clearly visible and fully inside while moving.
MIN_RADIUS, MAX_RADIUS = 5.0, 7.5
# Pixels moved per frame: 7 frame steps x 1.0..1.5 px = 7..10.5 px of travel, visible to the judge.
MIN_SPEED, MAX_SPEED = 1.0, 1.5
# Probability that a sample is degraded, and that a visible degradation is named in the caption.
DEGRADE_PROB = 0.35
NAME_PROB = 0.5
# Degradations: visible ones may be named by a word; wrong/missing shapes never are (the caption
# says what was asked for, as a mislabelled real sample does).
NAMED = {"blur": "blurry", "noise": "noisy", "faded": "faded", "tint": "tinted", "jitter": "jittery"}
IMAGE_DEGRADATIONS = ("blur", "noise", "faded", "tint", "wrong_shape", "missing")
VIDEO_DEGRADATIONS = (*IMAGE_DEGRADATIONS, "jitter")
# Strengths: Gaussian blur radius (px), noise std, fade factor towards grey, cast weight, jitter (px).
BLUR_RADIUS = (1.0, 1.8)
NOISE_STD = (0.12, 0.25)
FADE = (0.45, 0.65)
TINT = (0.35, 0.5)
JITTER_PX = 3.0
# Video-only artefacts (issue 29), never named in captions, drawn for this share of training videos
# independently of the degradations above (the issue: 15-25% of clips).
VIDEO_ARTEFACT_PROB = 0.2
VIDEO_ARTEFACTS = ("flicker", "freeze", "watermark", "ghosting")
# flicker: per-frame, per-channel offset of random sign and this size. At most 0.09 x sqrt(3) = 0.16 from
# a palette colour, under the judge's CLEAN_DISTANCE 0.2: clean-otherwise clips stay crisp and keep colours.
FLICKER = (0.05, 0.09)
# freeze: from frame FREEZE_FROM.. on the clip repeats the frame before (>= 4 steps x 1 px of travel
# first, over the judge's MIN_TRAVEL 3), or a stutter: one frame shown twice, the last one dropped.
FREEZE_FROM = (5, 8)  # [lo, hi) frame index for 8-frame clips; scaled down for shorter clips
# watermark: a static stamp blended towards white or black (whichever is farther from the background) so
# that it lies this RGB distance from the background: under the judge's FOREGROUND_DISTANCE 0.35 (not in
# the shape mask) and CLEAN_DISTANCE 0.2 (still crisp). WATERMARK_INSET px from the edges, clear of the
# border rows/columns the judge reads the background from.
WATERMARK_DISTANCE = (0.12, 0.18)
WATERMARK_INSET = 2
_WATERMARK_GLYPHS = (  # 3x5 "logos": 1 = stamped
    ("111", "101", "111", "100", "100"),  # a "P"
    ("101", "101", "111", "101", "101"),  # an "H"
    ("111", "100", "111", "001", "111"),  # an "S"
)
# ghosting: frame_t = (1 - a) frame_t + a frame_{t-1} on the rendered frames.
GHOST_ALPHA = (0.35, 0.5)

_DIRECTION_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


@dataclass(frozen=True)
class Attributes:
    """What a caption asks for (what the judge checks)."""

    shape: str
    colour: str
    background: str
    direction: str | None = None  # None: a still image or a caption without motion
    words: tuple[str, ...] = ()  # degradation words named in the caption


@dataclass
class Sample:
    caption: str
    frames: np.ndarray  # uint8 [F, H, W, 3]
    attributes: Attributes
    degradations: tuple[str, ...] = field(default_factory=tuple)  # what was really done to it
    artefacts: tuple[str, ...] = field(default_factory=tuple)  # video artefacts (never captioned)


def caption_for(a: Attributes) -> str:
    """The grammar: "a [words] <colour> <shape> [moving <direction>] on a <colour> background"."""
    parts = ["a", *a.words, a.colour, a.shape]
    if a.direction:
        parts += ["moving", a.direction]
    parts += ["on", "a", a.background, "background"]
    return " ".join(parts)


def parse_caption(caption: str) -> Attributes | None:
    """Read a grammar caption back (what the judge checks); None when the text asks for no shape."""
    words = caption.lower().replace(",", " ").split()
    shape = next((w for w in words if w in SHAPES), None)
    if shape is None:
        return None
    i = words.index(shape)
    colour = next((w for w in reversed(words[:i]) if w in COLOURS), None)
    background = None
    if "background" in words:
        j = words.index("background")
        background = next((w for w in reversed(words[i + 1 : j]) if w in COLOURS), None)
    direction = None
    if "moving" in words:
        k = words.index("moving")
        direction = next((w for w in words[k + 1 : k + 2] if w in DIRECTIONS), None)
    named = tuple(w for w in words[:i] if w in NAMED.values())
    if colour is None or background is None:
        return None
    return Attributes(shape, colour, background, direction, named)


def still_attributes(prompt: str) -> Attributes:
    """The attributes of a grammar prompt that names no motion (the scripts that vary only its direction)."""
    a = parse_caption(prompt)
    if a is None or a.direction:
        raise ValueError(
            f"--prompt {prompt!r}: expected a grammar prompt without a direction, "
            "e.g. 'a red circle on a blue background'"
        )
    return a


def draw_frame(
    shape: str, colour: str, background: str, cx: float, cy: float, r: float, size: int
) -> np.ndarray:
    """One antialiased frame, float32 [H, W, 3] in [0, 1]."""
    s = SUPERSAMPLE
    bg = tuple(int(round(255 * v)) for v in COLOURS[background])
    fg = tuple(int(round(255 * v)) for v in COLOURS[colour])
    image = Image.new("RGB", (size * s, size * s), bg)
    draw = ImageDraw.Draw(image)
    x, y, rr = cx * s, cy * s, r * s
    if shape == "circle":
        draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=fg)
    elif shape == "square":
        q = rr * 0.9  # a square of equal area reads as the same size as the circle
        draw.rectangle([x - q, y - q, x + q, y + q], fill=fg)
    else:  # triangle pointing up, its centroid at (x, y)
        h = rr * 1.2
        draw.polygon([(x, y - h), (x - h, y + h * 0.75), (x + h, y + h * 0.75)], fill=fg)
    image = image.resize((size, size), Image.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0


def _degrade(frame: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "blur":
        image = Image.fromarray((frame * 255).round().astype(np.uint8))
        image = image.filter(ImageFilter.GaussianBlur(strength))
        return np.asarray(image, dtype=np.float32) / 255.0
    if kind == "noise":
        return frame + rng.normal(0.0, strength, frame.shape).astype(np.float32)
    if kind == "faded":
        return 0.5 + (frame - 0.5) * (1.0 - strength)
    return frame


def _apply_artefacts(
    frames: np.ndarray, kinds: tuple[str, ...], rng: np.random.Generator, background: str
) -> np.ndarray:
    """Video artefacts on rendered float frames [F, H, W, 3] in [0, 1] (after the degradations)."""
    out = frames.copy()
    count, size = out.shape[0], out.shape[1]
    if "ghosting" in kinds:
        a = float(rng.uniform(*GHOST_ALPHA))
        out[1:] = (1 - a) * frames[1:] + a * frames[:-1]
    if "freeze" in kinds and count > 2:
        if rng.random() < 0.5:  # frozen from frame k on
            lo, hi = FREEZE_FROM
            k = int(rng.integers(max(2, lo * count // 8), max(3, hi * count // 8)))
            out[k:] = out[k - 1]
        else:  # a stutter: frame j - 1 shown twice, the last frame dropped
            j = int(rng.integers(1, count))
            out = np.concatenate([out[:j], out[j - 1 : j], out[j : count - 1]])
    if "flicker" in kinds:
        size_ = float(rng.uniform(*FLICKER))
        signs = rng.choice([-1.0, 1.0], size=(count, 1, 1, 3)).astype(np.float32)
        out = out + signs * size_
    if "watermark" in kinds:
        glyph = np.asarray([[c == "1" for c in row] for row in _WATERMARK_GLYPHS[int(rng.integers(3))]])
        h, w = glyph.shape
        corner = int(rng.integers(4))
        y = WATERMARK_INSET if corner < 2 else size - WATERMARK_INSET - h
        x = WATERMARK_INSET if corner % 2 == 0 else size - WATERMARK_INSET - w
        bg = np.asarray(COLOURS[background], dtype=np.float32)
        ink = max(
            (np.zeros(3, np.float32), np.ones(3, np.float32)), key=lambda c: float(np.linalg.norm(c - bg))
        )
        a = float(rng.uniform(*WATERMARK_DISTANCE)) / float(np.linalg.norm(ink - bg))
        box = out[:, y : y + h, x : x + w]
        box[:, glyph] = (1 - a) * box[:, glyph] + a * ink
    return np.clip(out, 0.0, 1.0)


def random_attributes(rng: np.random.Generator, video: bool) -> Attributes:
    colour, background = rng.choice(list(COLOURS), size=2, replace=False)
    shape = str(rng.choice(SHAPES))
    # Videos always move and say where; still images name a motion half of the time (a frame of a video).
    direction = str(rng.choice(DIRECTIONS)) if video or rng.random() < 0.5 else None
    return Attributes(shape, str(colour), str(background), direction)


def render(
    a: Attributes,
    rng: np.random.Generator,
    *,
    frames: int = FRAMES,
    size: int = IMAGE_SIZE,
    degradations: tuple[str, ...] = (),
    artefacts: tuple[str, ...] = (),
) -> np.ndarray:
    """Frames of `a` (uint8 [F, H, W, 3]); F = 1 draws one still frame, motion or not. `artefacts` (of
    VIDEO_ARTEFACTS) are applied after the degradations; with none, nothing more is drawn from `rng`."""
    r = float(rng.uniform(MIN_RADIUS, MAX_RADIUS))
    speed = float(rng.uniform(MIN_SPEED, MAX_SPEED)) if a.direction and frames > 1 else 0.0
    dx, dy = _DIRECTION_VECTORS[a.direction] if a.direction else (0.0, 0.0)
    travel = speed * (frames - 1)
    margin = r * 1.25 + 0.5  # the triangle reaches 1.2 r above its centroid
    # Start so that the whole path stays inside the frame.
    lo_x = margin + (travel if dx < 0 else 0.0)
    hi_x = size - margin - (travel if dx > 0 else 0.0)
    lo_y = margin + (travel if dy < 0 else 0.0)
    hi_y = size - margin - (travel if dy > 0 else 0.0)
    x0, y0 = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
    shape = a.shape
    if "wrong_shape" in degradations:
        shape = str(rng.choice([s for s in SHAPES if s != a.shape]))
    strengths = {
        "blur": float(rng.uniform(*BLUR_RADIUS)),
        "noise": float(rng.uniform(*NOISE_STD)),
        "faded": float(rng.uniform(*FADE)),
        "tint": float(rng.uniform(*TINT)),
    }
    cast = np.asarray(COLOURS[str(rng.choice(list(COLOURS)))], dtype=np.float32)
    out = []
    for f in range(frames):
        jx, jy = rng.normal(0.0, JITTER_PX, 2) if "jitter" in degradations else (0.0, 0.0)
        cx, cy = x0 + dx * speed * f + jx, y0 + dy * speed * f + jy
        if "missing" in degradations:
            frame = np.broadcast_to(np.asarray(COLOURS[a.background], np.float32), (size, size, 3)).copy()
        else:
            frame = draw_frame(shape, a.colour, a.background, cx, cy, r, size)
        for kind in ("blur", "faded", "noise"):
            if kind in degradations:
                frame = _degrade(frame, kind, strengths[kind], rng)
        if "tint" in degradations:
            frame = frame * (1 - strengths["tint"]) + cast * strengths["tint"]
        out.append(np.clip(frame, 0.0, 1.0))
    clip = np.stack(out)
    if artefacts:
        clip = _apply_artefacts(clip, artefacts, rng, a.background)
    return (clip * 255.0).round().astype(np.uint8)


def make_sample(
    rng: np.random.Generator,
    *,
    video: bool,
    degrade_prob: float = DEGRADE_PROB,
    size: int = IMAGE_SIZE,
    directions: tuple[str, ...] = DIRECTIONS,
    artefact_prob: float = VIDEO_ARTEFACT_PROB,
) -> Sample:
    """One captioned sample; `video` gives FRAMES frames, else one. `directions`: the motions allowed (a
    drawn one outside them is redrawn among them: the build's motion curriculum restricts them).
    A video carries one of VIDEO_ARTEFACTS with probability `artefact_prob`, never named in its caption;
    a still image draws nothing for it (its rng stream is that of data v1)."""
    a = random_attributes(rng, video)
    if a.direction is not None and a.direction not in directions:
        a = Attributes(a.shape, a.colour, a.background, str(rng.choice(directions)))
    degradations: tuple[str, ...] = ()
    if rng.random() < degrade_prob:
        kinds = VIDEO_DEGRADATIONS if video else IMAGE_DEGRADATIONS
        degradations = (str(rng.choice(kinds)),)
    words = tuple(NAMED[d] for d in degradations if d in NAMED and rng.random() < NAME_PROB)
    a = Attributes(a.shape, a.colour, a.background, a.direction, words)
    artefacts: tuple[str, ...] = ()
    # artefact_prob 0 draws nothing either: clean clips are data v1's stream (the word-gain diagnostic's).
    if video and artefact_prob and rng.random() < artefact_prob:
        artefacts = (str(rng.choice(VIDEO_ARTEFACTS)),)
    frames = render(
        a, rng, frames=FRAMES if video else 1, size=size, degradations=degradations, artefacts=artefacts
    )
    return Sample(caption_for(a), frames, a, degradations, artefacts)


def make_batch(
    seed: int,
    count: int,
    *,
    video: bool,
    degrade_prob: float = DEGRADE_PROB,
    artefact_prob: float = VIDEO_ARTEFACT_PROB,
) -> tuple[np.ndarray, list[str]]:
    """`count` samples from `seed`: uint8 [N, F, H, W, 3] and their captions."""
    rng = np.random.default_rng(seed)
    samples = [
        make_sample(rng, video=video, degrade_prob=degrade_prob, artefact_prob=artefact_prob)
        for _ in range(count)
    ]
    return np.stack([s.frames for s in samples]), [s.caption for s in samples]


def all_prompts(video: bool = True) -> list[str]:
    """Every clean caption of the grammar (no degradation words): 6 x 5 x 3 x (4 or 5) prompts."""
    out = []
    for colour in COLOURS:
        for background in COLOURS:
            if background == colour:
                continue
            for shape in SHAPES:
                for direction in DIRECTIONS if video else (None, *DIRECTIONS):
                    out.append(caption_for(Attributes(shape, colour, background, direction)))
    return out


def split_prompts(seed: int = 0, held_out: int = 60) -> tuple[list[str], list[str]]:
    """Clean video prompts split into (train, held-out) for ReNeg training: embeddings never see the
    held-out ones (the generators are trained on the whole grammar, as SD on all of LAION)."""
    prompts = all_prompts(video=True)
    order = np.random.default_rng(seed).permutation(len(prompts))
    held = sorted(prompts[i] for i in order[:held_out])
    train = sorted(prompts[i] for i in order[held_out:])
    return train, held
