"""Stage 1, `clip`: a tiny CLIPModel trained contrastively on captioned frames and twins, with linear
read-outs of every caption attribute; its text tower becomes the frozen text encoder of both generators.

Shape legend: B images, H x W pixels, T tokens, D text width.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as shapes_data
from .. import world as W
from ..tokenizer import build_tokenizer
from .common import BuildConfig, count_params, encode_text, step_rng, token_ids, train_loop, write_stage


def clip_model():
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_tokenizer()
    text = dict(W.CLIP_TEXT, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = CLIPConfig(text_config=text, vision_config=dict(W.CLIP_VISION), projection_dim=W.TEXT_WIDTH)
    return CLIPModel(config), tokenizer


def clip_inputs(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> CLIP-normalised [B, 3, H, W] (the reward's own preprocessing)."""
    from reneg_video.rewards.frames import preprocess_tensor

    x = torch.from_numpy(frames).float().div(255.0).permute(0, 3, 1, 2)
    return preprocess_tensor(x, W.IMAGE_SIZE)


def contrastive_loss(model, tokenizer, frames: np.ndarray, captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE with soft targets: equal captions in a batch are all positives."""
    ids = token_ids(tokenizer, captions)
    out = model(input_ids=ids, pixel_values=clip_inputs(frames))
    same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
    targets = same / same.sum(1, keepdim=True)
    logits = out.logits_per_image
    return 0.5 * (
        torch.sum(-targets * logits.log_softmax(1), 1).mean()
        + torch.sum(-targets * logits.T.log_softmax(1), 1).mean()
    )


def trail_image(frames: np.ndarray) -> np.ndarray:
    """One still that shows a clip's motion (uint8 [F, H, W, 3] -> [H, W, 3]): the frames averaged with
    weights rising linearly in time, a long exposure whose faint end is where the shape started. A single
    frame cannot show a direction, so with stills alone the contrastive loss cannot tell "moving left"
    from "moving right" and pushes the text tower to ignore them (the first two builds: direction words
    moved the encoder's hidden states by 0.6 of 11.3, colour words by 16)."""
    weights = np.arange(1, len(frames) + 1, dtype=np.float32)
    weights /= weights.sum()
    return np.tensordot(weights, frames.astype(np.float32), axes=1).round().astype(np.uint8)


def _other(rng: np.random.Generator, choices, current: str | None) -> str:
    return str(rng.choice([c for c in choices if c != current]))


def _changed(a: shapes_data.Attributes, rng: np.random.Generator) -> shapes_data.Attributes:
    """`a` with its shape or (when it moves) its direction changed: the hard negative of a CLIP pair."""
    if a.direction and rng.random() < 0.5:
        return replace(a, direction=_other(rng, W.DIRECTIONS, a.direction))
    return replace(a, shape=_other(rng, W.SHAPES, a.shape))


def clip_pairs(rng: np.random.Generator, pairs: int) -> tuple[np.ndarray, list[str]]:
    """2 x `pairs` captioned CLIP images (uint8 [N, H, W, 3]): each sample beside a twin that differs only
    in shape or direction. Random batches are told apart by colour alone (30 colour pairs), which left
    shape words nearly unused in the first builds (hidden-state change 0.3); twins make shape and
    direction the only cue. Half are clips shown as trail images with their direction, half stills
    without one."""
    images, captions = [], []
    for _ in range(pairs):
        video = bool(rng.random() < 0.5)
        first = shapes_data.make_sample(rng, video=video)
        a = first.attributes
        if not video:
            a = replace(a, direction=None)
        twin = _changed(a, rng)
        frames = shapes_data.render(
            twin, rng, frames=W.FRAMES if video else 1, degradations=first.degradations
        )
        for clip, attributes in ((first.frames, a), (frames, twin)):
            images.append(trail_image(clip) if video else clip[0])
            captions.append(shapes_data.caption_for(attributes))
    return np.stack(images), captions


def text_probe(model, tokenizer, seed: int, count: int = 200) -> dict[str, float]:
    """Zero-shot accuracy of a CLIP on fresh twins: how often the true caption outscores its twin's, for
    twins that differ in shape and in direction (0.5 = the words are ignored)."""
    rng = np.random.default_rng([seed, 55])
    hits: dict[str, list[bool]] = {"shape": [], "direction": []}
    with torch.no_grad():
        for _ in range(count):
            images, captions = clip_pairs(rng, 1)
            a, b = (shapes_data.parse_caption(c) for c in captions)
            kind = "shape" if a.shape != b.shape else "direction"
            ids = token_ids(tokenizer, captions)
            logits = model(input_ids=ids, pixel_values=clip_inputs(images)).logits_per_image
            hits[kind].append(bool(logits[0, 0] > logits[0, 1]) and bool(logits[1, 1] > logits[1, 0]))
    return {k: float(np.mean(v)) for k, v in hits.items() if v}


class CaptionHeads(torch.nn.Module):
    """Linear read-outs of what a caption asks for, from the text tower's pooled (EOS) state.

    Why: contrastive training alone learned colour and little else (twin accuracy 0.15 shape, 0.06
    direction after 1500 steps; chance 0.25), and a text encoder whose states barely move with the shape
    or direction word gives the generators nothing to condition on. Asking the pooled state to name every
    attribute keeps those words apart; the heads are dropped after the stage."""

    def __init__(self) -> None:
        super().__init__()
        self.shape = torch.nn.Linear(W.TEXT_WIDTH, len(W.SHAPES))
        self.colour = torch.nn.Linear(W.TEXT_WIDTH, len(W.COLOURS))
        self.background = torch.nn.Linear(W.TEXT_WIDTH, len(W.COLOURS))
        self.direction = torch.nn.Linear(W.TEXT_WIDTH, len(W.DIRECTIONS) + 1)  # + no motion
        self.words = torch.nn.Linear(W.TEXT_WIDTH, len(W.DEGRADATION_WORDS))

    def loss(self, pooled: torch.Tensor, captions: list[str]) -> torch.Tensor:
        parsed = [shapes_data.parse_caption(c) for c in captions]
        colours, directions = list(W.COLOURS), [None, *W.DIRECTIONS]

        def target(index) -> torch.Tensor:
            return torch.tensor([index(a) for a in parsed])

        words = torch.tensor([[float(w in a.words) for w in W.DEGRADATION_WORDS] for a in parsed])
        return (
            F.cross_entropy(self.shape(pooled), target(lambda a: W.SHAPES.index(a.shape)))
            + F.cross_entropy(self.colour(pooled), target(lambda a: colours.index(a.colour)))
            + F.cross_entropy(self.background(pooled), target(lambda a: colours.index(a.background)))
            + F.cross_entropy(self.direction(pooled), target(lambda a: directions.index(a.direction)))
            + F.binary_cross_entropy_with_logits(self.words(pooled), words)
        )


def text_sensitivity(text_model, tokenizer, seed: int, count: int = 100) -> dict[str, float]:
    """How far the encoder's last hidden state moves (mean L2 over the 16 positions, relative to its mean
    norm) when one word of a caption changes: what the generators can condition on, per attribute."""
    rng = np.random.default_rng([seed, 56])
    moved: dict[str, list[float]] = {"shape": [], "direction": [], "colour": []}
    colours = list(W.COLOURS)
    with torch.no_grad():
        for _ in range(count):
            a = shapes_data.random_attributes(rng, video=True)
            twins = {
                "shape": replace(a, shape=_other(rng, W.SHAPES, a.shape)),
                "direction": replace(a, direction=_other(rng, W.DIRECTIONS, a.direction)),
                "colour": replace(a, colour=_other(rng, [c for c in colours if c != a.background], a.colour)),
            }
            for kind, b in twins.items():
                h = encode_text(text_model, tokenizer, [shapes_data.caption_for(x) for x in (a, b)])
                moved[kind].append(float((h[0] - h[1]).norm(dim=-1).mean() / h.norm(dim=-1).mean()))
    return {k: float(np.mean(v)) for k, v in moved.items()}


def train_clip(out: Path, cfg: BuildConfig) -> None:
    torch.manual_seed(cfg.seed)
    model, tokenizer = clip_model()
    heads = CaptionHeads()
    s = cfg.clip

    def step_fn(step: int) -> torch.Tensor:
        images, captions = clip_pairs(step_rng(cfg.seed, "clip", step), s.batch // 2)
        ids = token_ids(tokenizer, captions)
        pooled = model.text_model(input_ids=ids).pooler_output
        return contrastive_loss(model, tokenizer, images, captions) + heads.loss(pooled, captions)

    modules = {"model": model, "heads": heads}
    params = [*model.parameters(), *heads.parameters()]
    losses = train_loop("clip", out, cfg, s, modules, params, step_fn)
    model.eval()
    probe = text_probe(model, tokenizer, cfg.seed)
    sensitivity = text_sensitivity(model.text_model, tokenizer, cfg.seed)

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp / "clip")
        tokenizer.save_pretrained(tmp / "clip")

    info = {
        "losses": losses,
        "params": count_params(model),
        "steps": s.steps,
        "twin_accuracy": probe,
        "text_sensitivity": sensitivity,
    }
    write_stage(out, "clip", save, info)
