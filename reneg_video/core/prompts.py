"""Prompt files and the handcrafted negative prompt every command and the trainer share."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError

# The handcrafted negative prompt of the ReNeg paper's baseline (its reference inference code).
PAPER_NEGATIVE_PROMPT = (
    "distorted, ugly, blurry, low resolution, low quality, bad, deformed, disgusting, Overexposed, "
    "Simple background, Plain background, Grainy, Underexposed, too dark, too bright, too low contrast, "
    "too high contrast, Broken, Macabre, artifacts, oversaturated"
)
PAPER_NEGATIVE_ALIAS = "@paper"


def baseline_negative(value: str | None, model_negative: str | None) -> str:
    """The handcrafted baseline arm's text: `value` as given, the paper's prompt for PAPER_NEGATIVE_ALIAS,
    and for None the model's own (its spec's `[defaults] negative_prompt`; a small world's vocabulary
    cannot spell the paper's 165-token prompt in its 16 tokens), else the paper's."""
    if value == PAPER_NEGATIVE_ALIAS:
        return PAPER_NEGATIVE_PROMPT
    return value or model_negative or PAPER_NEGATIVE_PROMPT


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt per line of a UTF-8 text file; blank lines and `#` comments skipped (may be empty)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--prompts-file {path}: no such file; pass a text file with one prompt per line")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: drop a BOM (Windows editors)
    except UnicodeDecodeError:
        raise UsageError(f"--prompts-file {path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(
            f"--prompts-file {path}: unreadable ({exc.strerror}); check its permissions"
        ) from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
