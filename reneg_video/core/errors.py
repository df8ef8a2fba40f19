"""The one exception family for refused input.

Every refusal of user input raises a subclass of `ReNegError` with a one-line message that names the
value, what was found, what was expected and what to do. The CLIs turn these into exit code 2; any
other exception is a bug (exit 1).
"""

from __future__ import annotations


class ReNegError(Exception):
    """Base class: the input was refused; the message says why and what to do."""


class EmbeddingFileError(ReNegError):
    """An embedding file could not be read as a ReNeg negative embedding."""


class UnsafeFileError(EmbeddingFileError):
    """A pickle asked to run code or build objects outside the weights-only allow-list; nothing ran."""


class TextualInversionError(EmbeddingFileError):
    """The file is a textual-inversion token embedding, not a text-encoder output embedding."""


class EncoderMismatchError(ReNegError):
    """The embedding was learned in another text-encoder space than the target model's."""


class SpecError(ReNegError):
    """An adapter spec file is missing, malformed or names something unknown."""


class ModelNotFoundError(ReNegError):
    """Model weights are not in the local folder or Hugging Face cache (nothing is downloaded)."""


class UsageError(ReNegError):
    """A bad argument value (frames, sizes, steps, guidance, paths, prompts)."""


class ExportError(ReNegError):
    """A video could not be written or did not validate; the destination was left untouched."""


class CheckpointError(ReNegError):
    """Model weights or a model config do not match the architecture they are loaded into."""


class RewardError(ReNegError):
    """A reward model could not be loaded or refused its input (missing weights, bad frames, bad spec)."""
