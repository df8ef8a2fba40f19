"""Step 1 of a call: load a negative embedding file into a validated `NegativeEmbedding`.

Accepted:
- the released ReNeg files: `torch.save` of a bare float tensor [1, T, D] (`.bin`, `.pt`, `.pth`),
  read with `torch.load(weights_only=True)` only: a pickle that asks for anything else is refused
  and never runs;
- a `.safetensors` file holding one [1, T, D] tensor;
- this project's format: `.safetensors` with tensors `embedding` [1, T, D] and, for masked families,
  `mask` [1, T], plus metadata (format, family, width, tokens, source, sha256).

Textual-inversion files (token embeddings, not text-encoder outputs) are recognised and refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import plugins
from .atomic import atomic_path
from .encoders import FAMILIES, EncoderFamily, describe_shapes, family_for_shape, infer_t5_mask
from .errors import EmbeddingFileError, TextualInversionError, UnsafeFileError

FORMAT_NAME = "reneg-video/negative-embedding"
FORMAT_VERSION = "1"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
# The largest real embedding is [1, 128, 4096] float32 = 2 MiB; anything far larger is not one.
MAX_FILE_BYTES = 64 * 2**20
GIT_LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
NOT_AN_EMBEDDING_FIX = "pass a .bin saved with torch.save or a .safetensors file"
# First bytes of the files a download gets instead of the embedding (a web page aside, found as text).
FILE_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7z archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF", "an HDF5 file"),
)


@dataclass(frozen=True)
class NegativeEmbedding:
    """A text-encoder output used on the negative branch of classifier-free guidance.

    `tensor` is float32 [1, T, D] on the CPU; `mask` is bool [1, T] for masked families (T5), else None.
    """

    tensor: torch.Tensor
    mask: torch.Tensor | None
    family: EncoderFamily
    source: str = ""
    sha256: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.tensor.shape[1]

    @property
    def width(self) -> int:
        return self.tensor.shape[2]

    @property
    def kept_tokens(self) -> int:
        """Tokens the model attends to (all of them for unmasked families)."""
        return self.tokens if self.mask is None else int(self.mask.sum())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: `.safetensors` in the project format, `.bin`/`.pt` as the released format."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES):
            raise EmbeddingFileError(
                f"{path}: unknown suffix {suffix!r}; expected .safetensors (with metadata) or .bin; "
                "rename the destination"
            )
        with atomic_path(path) as tmp:
            if suffix == SAFETENSORS_SUFFIX:
                tensors = {"embedding": self.tensor.contiguous()}
                if self.mask is not None:
                    tensors["mask"] = self.mask.to(torch.uint8).contiguous()
                save_file(tensors, str(tmp), metadata=self._metadata())
            else:
                # The released ReNeg format: a bare tensor, no metadata. Its mask is recoverable by
                # infer_t5_mask only when the padded rows are identical copies.
                torch.save(self.tensor.contiguous(), tmp)
        return path

    def _metadata(self) -> dict[str, str]:
        meta = dict(self.metadata)
        meta.update(
            format=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            family=self.family.name,
            width=str(self.width),
            tokens=str(self.tokens),
            kept_tokens=str(self.kept_tokens),
            source=self.source,
            sha256=tensor_sha256(self.tensor),
        )
        return meta


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Content hash of a float32 tensor's bytes (stable across file formats)."""
    return hashlib.sha256(tensor.to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


def load_embedding(path: str | os.PathLike[str]) -> NegativeEmbedding:
    """Load and validate a negative embedding file; raise a `ReNegError` subclass if it is refused."""
    path = Path(path)
    plugins.load()  # families registered by plugins (the shapes world's) are known before matching
    raw = _read_checked_bytes(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        tensor, mask, metadata = _load_safetensors(path)
    else:
        tensor, mask, metadata = _load_pickle(path, raw), None, {}
    family = _validate_tensor(path, tensor)
    tensor = tensor.detach().to(torch.float32).contiguous()
    if family.masked and mask is None:
        mask = infer_t5_mask(tensor)
    if not family.masked and mask is not None:
        raise EmbeddingFileError(
            f"{path}: has a mask but {family.description} uses none; remove the mask tensor"
        )
    if mask is not None and (mask.shape != (1, tensor.shape[1]) or not bool(mask.any())):
        raise EmbeddingFileError(
            f"{path}: mask of shape {list(mask.shape)} with {int(mask.sum())} kept tokens; expected "
            f"[1, {tensor.shape[1]}] keeping at least one token; re-save the embedding"
        )
    return NegativeEmbedding(
        tensor=tensor,
        mask=mask,
        family=family,
        source=metadata.get("source") or path.name,
        sha256=hashlib.sha256(raw).hexdigest(),
        metadata=metadata,
    )


def _read_checked_bytes(path: Path) -> bytes:
    if not path.exists():
        raise EmbeddingFileError(
            f"{path}: no such file; pass the path of an embedding file (.bin or .safetensors)"
        )
    if path.is_dir():
        raise EmbeddingFileError(f"{path}: is a directory; pass the embedding file inside it")
    suffix = path.suffix.lower()
    if suffix not in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES):
        raise EmbeddingFileError(
            f"{path}: unknown suffix {suffix!r}; expected .bin/.pt/.pth (torch.save) or .safetensors"
        )
    size = path.stat().st_size
    if size == 0:
        raise EmbeddingFileError(f"{path}: not an embedding file: empty (0 bytes); {NOT_AN_EMBEDDING_FIX}")
    if size > MAX_FILE_BYTES:
        raise EmbeddingFileError(
            f"{path}: {size} bytes is far larger than an embedding (at most ~2 MiB); "
            "pass the embedding file, not a model checkpoint"
        )
    raw = path.read_bytes()
    if raw.startswith(GIT_LFS_MAGIC):
        raise EmbeddingFileError(
            f"{path}: is a git-LFS pointer ({size} bytes), not the file; run `git lfs pull` or download the real file"
        )
    return raw


# Globals a torch.save'd tensor legitimately names (anything else in a refused pickle is reported as
# unsafe). `builtins` is not a safe module as a whole (eval, exec, getattr): only these containers are.
_SAFE_MODULES = ("torch", "collections", "_codecs", "numpy")
_SAFE_BUILTINS = ("set", "frozenset", "bytearray", "slice", "complex", "bytes", "dict", "list", "tuple")


def _is_safe_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if module in ("builtins", "__builtin__"):  # protocol <= 2 pickles name builtins `__builtin__`
        return attr in _SAFE_BUILTINS
    return any(module == m or module.startswith(m + ".") for m in _SAFE_MODULES)


def _pickle_globals(raw: bytes) -> list[str]:
    """The globals a pickle would import, found by parsing its opcodes (nothing is executed)."""
    if raw[:2] == b"PK":  # torch's zip container: the pickle is the data.pkl member
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                raw = z.read(member) if member else b""
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
            return []
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(raw):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 (a corrupt tail, whatever pickletools makes of it: keep what was parsed)
        pass
    return found


def _looks_like(raw: bytes, suffix: str) -> str | None:
    """What a file that failed to load looks like when it is no embedding container at all (text, a web
    page, a zip without data.pkl, an image, ...); None when it is one, damaged (then the reader's message
    stands). Only the bytes are examined; nothing is unpickled."""
    if raw.startswith(b"PK"):  # torch.save's zip container holds <name>/data.pkl
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
            return None  # a truncated torch archive
        if not any(n.endswith("data.pkl") for n in names):
            return f"a zip archive without data.pkl (holds {', '.join(names[:3]) or 'nothing'})"
        return "a torch.save archive named .safetensors" if suffix == SAFETENSORS_SUFFIX else None
    if raw.startswith(b"\x80"):  # pickle protocol 2+: torch.save's legacy format
        return "a pickle named .safetensors" if suffix == SAFETENSORS_SUFFIX else None
    if raw[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        return None if suffix == SAFETENSORS_SUFFIX else f"a safetensors file named {suffix}"
    for magic, kind in FILE_MAGIC:
        if raw.startswith(magic):
            return kind
    return _looks_like_text(raw[:4096])


def _looks_like_text(head: bytes) -> str:
    """`head` described as text (an HTML page, JSON, a first line) or, if it is not UTF-8, binary data."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if b"\x00" in head or exc.start < len(head) - 3:  # not a character cut at the end of the sample
            return f"binary data of no known kind (starts {head[:8].hex(' ')})"
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        return f"binary data of no known kind (starts {head[:8].hex(' ')})"
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")) or "<html" in start[:1024]:
        return "an HTML page (a download that saved the web page, not the file)"
    if start.startswith(("{", "[")):
        return "JSON text"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"text ({first[:40]!r})"


def _load_pickle(path: Path, raw: bytes) -> torch.Tensor:
    try:
        # weights_only=True and never anything less safe: a refused file stays refused. What torch warns
        # while refusing a file (its weights_only advice) would only cut the one-line error in two.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = [g for g in _pickle_globals(raw) if not _is_safe_global(g)]
        if unsafe:
            name = unsafe[0]
            raise UnsafeFileError(
                f"{path}: the pickle asks to load {name}, which weights-only loading refuses (nothing was run); "
                "do not use this file, or get it as .safetensors from a trusted source"
            ) from None
        _refuse_non_embedding(path, raw)
        raise EmbeddingFileError(
            f"{path}: not a readable torch file ({_first_line(exc)}); download it again"
        ) from None
    except Exception as exc:  # any other failure of torch.load on a damaged file (AttributeError seen)
        _refuse_non_embedding(path, raw)
        raise EmbeddingFileError(
            f"{path}: truncated or corrupt torch file ({_first_line(exc)}); download it again"
        ) from None
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        _refuse_textual_inversion(path, obj)
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        if len(obj) == 1 and len(tensors) == 1:
            return tensors[0]
        raise EmbeddingFileError(
            f"{path}: a dict with keys {sorted(map(str, obj))[:6]}; expected a bare tensor as in the released "
            "ReNeg files; save the embedding tensor itself"
        )
    raise EmbeddingFileError(
        f"{path}: holds a {type(obj).__name__}; expected a tensor of shape {describe_shapes()}"
    )


def _refuse_non_embedding(path: Path, raw: bytes) -> None:
    """Refuse a file that failed to load and is no embedding container at all, saying what it looks like."""
    kind = _looks_like(raw, path.suffix.lower())
    if kind is not None:
        raise EmbeddingFileError(f"{path}: not an embedding file: {kind}; {NOT_AN_EMBEDDING_FIX}")


def _refuse_textual_inversion(path: Path, obj: dict) -> None:
    """Textual inversion stores input token vectors [n, D]; ReNeg stores encoder outputs [1, T, D]."""
    if "string_to_param" in obj:
        kind = "an A1111 textual-inversion embedding (string_to_param)"
    elif "emb_params" in obj:
        kind = "a kohya textual-inversion embedding (emb_params)"
    elif {"clip_l", "clip_g"} & set(obj):
        kind = "an SDXL textual-inversion embedding (clip_l/clip_g)"
    elif len(obj) == 1 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) and v.dim() in (1, 2) for k, v in obj.items()
    ):
        kind = f"a diffusers textual-inversion embedding (token {next(iter(obj))!r})"
    else:
        return
    raise TextualInversionError(
        f"{path}: is {kind}: token vectors for the tokenizer, not a text-encoder output; "
        "load it with pipe.load_textual_inversion() and use its token in --negative-prompt instead"
    )


def _load_safetensors(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        _refuse_non_embedding(path, path.read_bytes())
        raise EmbeddingFileError(
            f"{path}: truncated or corrupt safetensors file ({_first_line(exc)}); download it again"
        ) from None
    if metadata.get("format") == FORMAT_NAME:
        if "embedding" not in tensors:
            raise EmbeddingFileError(f"{path}: project-format file without an 'embedding' tensor; re-save it")
        mask = tensors.get("mask")
        if mask is not None:
            if mask.dtype.is_floating_point or mask.dim() != 2:
                raise EmbeddingFileError(
                    f"{path}: mask of dtype {mask.dtype} and rank {mask.dim()}; expected uint8/bool [1, T]; re-save it"
                )
            mask = mask.to(torch.bool)
        declared = metadata.get("family")
        if declared is not None and declared not in FAMILIES:
            raise EmbeddingFileError(
                f"{path}: unknown family {declared!r}; expected one of {sorted(FAMILIES)}"
            )
        return tensors["embedding"], mask, metadata
    _refuse_textual_inversion(path, tensors)
    if len(tensors) != 1:
        raise EmbeddingFileError(
            f"{path}: holds {len(tensors)} tensors {sorted(tensors)[:6]}; expected one [1, T, D] embedding"
        )
    return next(iter(tensors.values())), None, metadata


def _validate_tensor(path: Path, tensor: torch.Tensor) -> EncoderFamily:
    if not isinstance(tensor, torch.Tensor):
        raise EmbeddingFileError(f"{path}: holds a {type(tensor).__name__}; expected a tensor")
    shape = list(tensor.shape)
    if not tensor.dtype.is_floating_point:
        raise EmbeddingFileError(
            f"{path}: dtype {tensor.dtype}; expected a float tensor; re-save it as float32"
        )
    if tensor.dim() != 3 or shape[0] != 1:
        hint = " (add the batch axis: tensor[None])" if tensor.dim() == 2 else ""
        raise EmbeddingFileError(f"{path}: shape {shape}; expected [1, tokens, width]{hint}")
    family = family_for_shape(shape[1], shape[2])
    if family is None:
        raise EmbeddingFileError(
            f"{path}: shape {shape} matches no known text encoder; expected {describe_shapes()}"
        )
    # Checked in float32: isfinite is not implemented for every float dtype (float8_e4m3fn).
    finite = torch.isfinite(tensor.to(torch.float32))
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise EmbeddingFileError(
            f"{path}: {bad} NaN/Inf values; expected finite numbers; the file is damaged"
        )
    return family


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
