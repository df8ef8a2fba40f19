"""Property-based fuzzing of every file reader, and hostile pickles that must never run.

Property, for every reader: a file either loads into a valid object or raises the documented
`ReNegError` family: never another exception, never a hang. Each reader gets `FUZZ_EXAMPLES` mutated
files per strategy (derandomized: CI sees the same files every run).

Readers live in tables (`EMBEDDING_SEEDS`, `VIDEO_READERS`): adding a reader is one line there.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import signal
import struct
import subprocess
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from reneg_video import NegativeEmbedding, load_embedding
from reneg_video.commands.common import prompts_from_args as _prompts
from reneg_video.core.encoders import family_for_shape
from reneg_video.core.errors import EmbeddingFileError, ReNegError, UnsafeFileError
from reneg_video.core.export import export_video, validate_gif, validate_mp4
from reneg_video.core.specs import AdapterSpec, load_spec_file
from reneg_video.models.generate import settings_for

REPO = Path(__file__).resolve().parents[2]
FUZZ_EXAMPLES = int(os.environ.get("RENEG_FUZZ_EXAMPLES", "200"))
# No real reader needs more than a few seconds for one small file: longer is a hang.
HANG_SECONDS = 20

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,  # the same files on every CI run
    database=None,  # nothing written into the checkout
    deadline=None,  # timing on 2 shared cores is noisy; `no_hang` below catches hangs instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


class Hang(AssertionError):
    pass


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Fail (instead of waiting forever) when a reader loops: SIGALRM interrupts Python code."""

    def on_alarm(*_):
        raise Hang(f"reader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def load_or_refuse(reader, path, check) -> str:
    """Run `reader(path)`; a result must pass `check`, an exception must be a ReNegError."""
    with no_hang():
        try:
            result = reader(path)
        except ReNegError as exc:
            message = str(exc)
            assert message and "\n" not in message.strip(), f"not a one-line error: {message!r}"
            return "refused"
    check(result)
    return "loaded"


# --- byte mutations shared by every reader ------------------------------------------------------------


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file damaged the ways files get damaged: cut, bit flips, overwritten/inserted junk."""
    data = bytearray(draw(st.sampled_from(seeds)))
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "random", "tail"]))
    if kind == "random":
        prefix = draw(st.sampled_from([b"", bytes(data[:2]), bytes(data[:16])]))
        return Blob(prefix + draw(st.binary(max_size=2048)))
    if kind == "truncate":
        return Blob(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if kind == "flip":
        # Bit flips cluster where structure lives (headers, the end of zips), and some land anywhere.
        for _ in range(draw(st.integers(1, 8))):
            region = draw(st.sampled_from(["head", "tail", "any"]))
            lo, hi = {"head": (0, min(512, len(data))), "tail": (max(0, len(data) - 512), len(data))}.get(
                region, (0, len(data))
            )
            i = draw(st.integers(lo, max(lo, hi - 1)))
            if i < len(data):
                data[i] ^= 1 << draw(st.integers(0, 7))
        return Blob(data)
    if kind == "overwrite":
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        junk = draw(st.binary(min_size=1, max_size=64))
        data[i : i + len(junk)] = junk
        return Blob(data)
    if kind == "insert":
        i = draw(st.integers(0, len(data)))
        return Blob(bytes(data[:i]) + draw(st.binary(min_size=1, max_size=64)) + bytes(data[i:]))
    return Blob(bytes(data) + draw(st.binary(min_size=1, max_size=256)))  # junk appended


class Blob(bytes):
    """File content with a short repr: hypothesis prints failing examples, and files are large."""

    def __repr__(self) -> str:
        import hashlib

        return f"Blob({len(self)} bytes, head={bytes(self[:24])!r}, sha256={hashlib.sha256(self).hexdigest()[:12]})"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- embedding files --------------------------------------------------------------------------------------


def check_embedding(emb: NegativeEmbedding) -> None:
    """What every loaded embedding must be, whatever the file looked like."""
    assert isinstance(emb, NegativeEmbedding)
    t = emb.tensor
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() == 3 and t.shape[0] == 1
    assert family_for_shape(t.shape[1], t.shape[2]) == emb.family
    assert bool(torch.isfinite(t).all())
    if emb.family.masked:
        assert emb.mask is not None and emb.mask.dtype == torch.bool
        assert tuple(emb.mask.shape) == (1, t.shape[1]) and bool(emb.mask.any())
    else:
        assert emb.mask is None


def _tensor_bytes(save) -> bytes:
    buf = io.BytesIO()
    save(buf)
    return buf.getvalue()


def _embedding_seeds() -> dict[str, list[bytes]]:
    """Valid files of every accepted format (small widths keep each example fast)."""
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(1, 77, 768, generator=g)
    t5 = torch.randn(1, 120, 4096, generator=g)
    t5[0, 1:] = t5[0, 1]  # the released PixArt-alpha layout: token 0 kept, padded rows identical
    zipped = _tensor_bytes(lambda b: torch.save(clip, b))
    legacy = _tensor_bytes(lambda b: torch.save(clip, b, _use_new_zipfile_serialization=False))
    from safetensors.torch import save as st_save

    single = st_save({"emb": clip})
    project_clip = NegativeEmbedding(clip, None, family_for_shape(77, 768), source="fuzz")
    mask = torch.zeros(1, 120, dtype=torch.bool)
    mask[0, 0] = True
    project_t5 = NegativeEmbedding(t5, mask, family_for_shape(120, 4096), source="fuzz")
    return {
        ".bin": [zipped, legacy, _tensor_bytes(lambda b: torch.save(t5, b))],
        ".safetensors": [
            single,
            st_save({"embedding": clip}, metadata=project_clip._metadata()),
            st_save({"embedding": t5, "mask": mask.to(torch.uint8)}, metadata=project_t5._metadata()),
        ],
    }


EMBEDDING_SEEDS = _embedding_seeds()


@pytest.mark.parametrize("suffix", sorted(EMBEDDING_SEEDS))
def test_fuzz_embedding_bytes(tmp_path, suffix):
    """Truncations, bit flips and junk in released `.bin` pickles (zip and legacy) and safetensors."""
    outcomes = []

    @FUZZ
    @given(data=mutated(EMBEDDING_SEEDS[suffix]))
    def run(data):
        outcomes.append(load_or_refuse(load_embedding, write(tmp_path / f"e{suffix}", data), check_embedding))

    run()
    assert "refused" in outcomes  # the mutations did damage files


def _rezip(raw: bytes, change) -> bytes:
    """torch's zip container with its members rewritten by `change(name, data) -> data | None`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info.filename))
            if data is not None:
                dst.writestr(info.filename, data)
    return out.getvalue()


@st.composite
def corrupt_zip_members(draw) -> bytes:
    """A well-formed zip whose members (data.pkl, the tensor data, version, byteorder) are damaged."""
    raw = EMBEDDING_SEEDS[".bin"][0]
    names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    target = draw(st.sampled_from(names))
    action = draw(st.sampled_from(["mutate", "drop", "empty", "swap-pkl"]))

    def change(name, data):
        if name != target:
            return data
        if action == "drop":
            return None
        if action == "empty":
            return b""
        if action == "swap-pkl" and name.endswith("data.pkl"):
            return pickle.dumps(
                draw(st.sampled_from([[1, 2], {"a": 1}, "text", None, 3.5, (1,)])), protocol=2
            )
        return draw(mutated([data]))

    return Blob(_rezip(raw, change))


def test_fuzz_embedding_zip_members(tmp_path):
    @FUZZ
    @given(data=corrupt_zip_members())
    def run(data):
        load_or_refuse(load_embedding, write(tmp_path / "z.bin", data), check_embedding)

    run()


ST_DTYPES = [
    "F32",
    "F16",
    "BF16",
    "F64",
    "I8",
    "U8",
    "I32",
    "I64",
    "BOOL",
    "F8_E4M3",
    "F8_E5M2",
    "C64",
    "Q4",
    "",
]
ST_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I32": 4, "I64": 8, "BOOL": 1}
ST_SIZES.update({"F8_E4M3": 1, "F8_E5M2": 1, "C64": 8})
SHAPES = [[1, 77, 768], [1, 77, 1024], [1, 120, 4096], [1, 128, 4096], [77, 768], [1, 76, 768], [2, 77, 768]]
SHAPES += [[1, 77, 1024, 1], [], [0], [1, 0, 768], [1, 120], [-1, 77, 768], [2**40, 2**40]]


@st.composite
def absurd_safetensors(draw) -> bytes:
    """safetensors files with hostile headers: huge lengths, bad JSON, offsets out of range, wrong
    dtypes, shapes that do not match the data, odd metadata; data full of NaN/Inf or junk."""
    header: dict = {}
    project = draw(st.booleans())
    if project:
        header["__metadata__"] = {
            "format": "reneg-video/negative-embedding",
            "family": draw(st.sampled_from(["t5-v1_1-xxl", "clip-vit-l-14", "openclip-vit-h-14", "x", ""])),
        }
    elif draw(st.booleans()):
        header["__metadata__"] = draw(
            st.sampled_from([{"a": "b"}, {"a": 1}, [], "x", None, {"source": "s" * 1000}])
        )
    names = draw(st.sampled_from([["embedding"], ["embedding", "mask"], ["emb"], ["a", "b"], ["mask"]]))
    offset = 0
    for name in names:
        dtype = draw(st.sampled_from(ST_DTYPES))
        shape = draw(
            st.sampled_from(SHAPES if name != "mask" else [[1, 120], [1, 128], [120], [1, 0], [1, 77]])
        )
        n = math.prod(shape) * ST_SIZES.get(dtype, 1) if all(s >= 0 for s in shape) else 0
        span = draw(st.sampled_from(["exact", "short", "long", "huge", "reversed", "negative"]))
        end = {"exact": offset + n, "short": offset + n // 2, "long": offset + n + 4, "huge": 2**63}.get(span)
        start = offset
        if span == "reversed":
            start, end = offset + n, offset
        elif span == "negative":
            start, end = -1, n
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
        if draw(st.integers(0, 9)) == 0:
            header[name][draw(st.sampled_from(["extra", "dtype", "shape"]))] = draw(
                st.sampled_from([None, "F32", [1], 7, {"x": 1}])
            )
        offset = offset + n if span == "exact" else offset
    text = json.dumps(header).encode()
    text = draw(
        st.sampled_from(
            [
                text,
                text[: max(0, len(text) - 3)],
                text + b" " * 5,
                text.replace(b"{", b"[", 1),
                b"\xff" + text,
            ]
        )
    )
    declared = draw(st.sampled_from([len(text), len(text) + 1, max(0, len(text) - 1), 2**63, 2**31, 0, 7]))
    data_len = min(draw(st.sampled_from([offset, offset // 2, offset + 8, 0])), 4 * 2**20)
    pattern = draw(
        st.sampled_from(
            [b"\0\0\0\0", b"\0\0\xc0\x7f", b"\0\0\x80\x7f", b"\xff\xff\xff\xff", b"\x3c\x00\x3f\x80"]
        )
    )
    data = (pattern * (data_len // 4 + 1))[:data_len]
    return Blob(struct.pack("<Q", declared) + text + data)


def test_fuzz_safetensors_headers(tmp_path):
    outcomes = []

    @FUZZ
    @given(data=absurd_safetensors())
    def run(data):
        outcomes.append(
            load_or_refuse(load_embedding, write(tmp_path / "h.safetensors", data), check_embedding)
        )

    run()
    assert "refused" in outcomes


TENSOR_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn]
TENSOR_DTYPES += [torch.float8_e5m2, torch.int8, torch.int64, torch.bool, torch.complex64, torch.uint8]


@st.composite
def odd_tensor_files(draw) -> tuple[str, bytes]:
    """Well-formed files holding the wrong thing: shapes, dtypes, NaN/Inf, containers, masks."""
    shape = draw(st.sampled_from([s for s in SHAPES if all(0 <= d < 5000 for d in s)]))
    dtype = draw(st.sampled_from(TENSOR_DTYPES))
    fill = draw(st.sampled_from([0.0, 0.5, -3.0, 1e30, float("nan"), float("inf"), -float("inf")]))
    tensor = torch.full(shape, fill if dtype.is_floating_point else 1).to(dtype)
    if draw(st.booleans()) and tensor.numel() and dtype.is_floating_point:
        tensor.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), 2.0])
        )
    container = draw(st.sampled_from(["bare", "legacy", "dict1", "dict2", "list", "ti", "single", "project"]))
    from safetensors.torch import save as st_save

    if container in ("single", "project"):
        if dtype in (torch.complex64,):
            dtype, tensor = torch.float32, tensor.real.float()
        tensors = {"embedding" if container == "project" else "emb": tensor.contiguous()}
        meta = None
        if container == "project":
            meta = {"format": "reneg-video/negative-embedding", "family": "t5-v1_1-xxl"}
            if draw(st.booleans()):
                mask_shape = draw(st.sampled_from([[1, 120], [1, 128], [120], [1, 77], [1, 120, 1]]))
                mask_dtype = draw(st.sampled_from([torch.uint8, torch.bool, torch.float32, torch.int64]))
                mask_fill = draw(st.sampled_from([0, 1, 2]))
                tensors["mask"] = torch.full(mask_shape, mask_fill).to(mask_dtype)
        return ".safetensors", Blob(st_save(tensors, metadata=meta))
    obj = {
        "bare": tensor,
        "legacy": tensor,
        "dict1": {"emb": tensor},
        "dict2": {"emb": tensor, "mask": torch.ones(1, 3)},
        "list": [tensor],
        "ti": {"string_to_param": {"*": tensor}},
    }[container]
    legacy = container == "legacy"
    return ".bin", Blob(
        _tensor_bytes(lambda b: torch.save(obj, b, _use_new_zipfile_serialization=not legacy))
    )


def test_fuzz_wrong_shapes_dtypes_and_non_finite(tmp_path):
    outcomes = []

    @FUZZ
    @given(item=odd_tensor_files())
    def run(item):
        suffix, data = item
        outcomes.append(load_or_refuse(load_embedding, write(tmp_path / f"t{suffix}", data), check_embedding))

    run()
    assert {"refused", "loaded"} <= set(outcomes)


def test_float8_embedding_is_converted_or_refused_not_crashed(tmp_path):
    """Regression (found by the fuzzer): torch.isfinite is not implemented for float8_e4m3fn, so a
    float8 file crashed load_embedding with NotImplementedError instead of loading or being refused."""
    tensor = torch.full((1, 77, 768), 0.5).to(torch.float8_e4m3fn)
    save_file({"e": tensor}, tmp_path / "f8.safetensors")
    torch.save(tensor, tmp_path / "f8.bin")
    for name in ("f8.safetensors", "f8.bin"):
        emb = load_embedding(tmp_path / name)
        assert emb.tensor.dtype == torch.float32 and float(emb.tensor[0, 0, 0]) == 0.5
    nan = torch.full((1, 77, 768), float("nan")).to(torch.float8_e4m3fn)
    save_file({"e": nan}, tmp_path / "nan8.safetensors")
    with pytest.raises(EmbeddingFileError, match="NaN/Inf"):
        load_embedding(tmp_path / "nan8.safetensors")


# --- hostile pickles ----------------------------------------------------------------------------------------


def _payloads(marker: Path) -> dict[str, bytes]:
    """Each would create `marker` if unpickled by plain pickle (checked in the test: they can fail)."""
    m = str(marker)
    cmd = f"touch {m}"

    class Reduce:
        def __init__(self, fn, args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return self.fn, self.args

    system = Reduce(os.system, (cmd,))
    popen = Reduce(subprocess.Popen, (["touch", m],))
    ev = Reduce(eval, (f"open({m!r}, 'w').close()",))
    ex = Reduce(exec, (f"open({m!r}, 'w').close()",))
    return {
        # protocol 0 text: GLOBAL + REDUCE
        "p0 GLOBAL os.system REDUCE": f"cos\nsystem\n(S'{cmd}'\ntR.".encode(),
        "p0 INST os.system": f"(S'{cmd}'\nios\nsystem\n.".encode(),
        "p1 OBJ os.system": f"(cos\nsystem\nS'{cmd}'\no.".encode(),
        "p2 posix.system": pickle.dumps(system, protocol=2),
        "p4 STACK_GLOBAL os.system": pickle.dumps(system, protocol=4),
        "p5 subprocess.Popen": pickle.dumps(popen, protocol=5),
        "p2 builtins.eval": pickle.dumps(ev, protocol=2),
        "p4 builtins.exec": pickle.dumps(ex, protocol=4),
        "nested in a dict": pickle.dumps({"emb": torch.zeros(1, 77, 768), "x": [system]}, protocol=2),
        # __setstate__ trick: BUILD puts {'__setstate__': os.system} into an object's state, and a second
        # BUILD then calls obj.__setstate__(cmd) (CPython's load_build looks it up on the instance).
        "__setstate__ via BUILD": (
            b"\x80\x02ccollections\nOrderedDict\n)R}(X\x0c\x00\x00\x00__setstate__cos\nsystem\nu"
            b"b" + b"X" + struct.pack("<I", len(cmd)) + cmd.encode() + b"b."
        ),
        "torch zip data.pkl": _tensor_bytes(lambda b: torch.save({"emb": torch.zeros(1), "x": system}, b)),
        "torch zip data.pkl p4": _tensor_bytes(lambda b: torch.save([system], b, pickle_protocol=4)),
        "torch legacy container": _tensor_bytes(
            lambda b: torch.save([system], b, _use_new_zipfile_serialization=False)
        ),
    }


def test_hostile_pickles_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    payloads = _payloads(marker)
    assert len(payloads) >= 12
    for name, data in payloads.items():
        path = write(tmp_path / "evil.bin", data)
        with pytest.raises((UnsafeFileError, EmbeddingFileError)) as info:
            load_embedding(path)
        assert not marker.exists(), f"{name}: the payload ran"
        if name.startswith(("p0", "p1", "p2 posix", "p4 STACK", "p5", "__setstate__", "nested")):
            assert isinstance(info.value, UnsafeFileError), (name, str(info.value))
    # The payloads are real: a plain unpickler (or torch without weights_only) runs each of them.
    for name, data in payloads.items():
        result = (
            torch.load(io.BytesIO(data), weights_only=False)
            if name.startswith("torch")
            else pickle.loads(data)
        )
        if isinstance(result, subprocess.Popen):
            result.wait()
        assert marker.exists(), f"{name}: the payload is not a working exploit; the test above proves nothing"
        marker.unlink()


def test_hostile_builtins_are_named_in_the_refusal(tmp_path):
    """`builtins.eval` is not weights-only safe: the refusal names it (UnsafeFileError), not 'corrupt'."""
    marker = tmp_path / "PWNED"
    for name in ("p2 builtins.eval", "p4 builtins.exec"):
        with pytest.raises(UnsafeFileError, match=r"builtins?_*\.(eval|exec)"):
            load_embedding(write(tmp_path / "e.bin", _payloads(marker)[name]))
    assert not marker.exists()


# --- adapter specs ------------------------------------------------------------------------------------------

SPEC_SEEDS = [p.read_bytes() for p in sorted((REPO / "reneg_video" / "specs").glob("*.toml"))]


def check_spec(spec: AdapterSpec) -> None:
    """A loaded spec is usable: typed fields, defaults that obey its own rules."""
    assert isinstance(spec, AdapterSpec)
    for name in ("name", "pipeline", "encoder", "kind", "negative_batch"):
        assert isinstance(getattr(spec, name), str), name
    assert isinstance(spec.tokens, int) and isinstance(spec.mask, bool) and isinstance(spec.call_kwargs, dict)
    assert all(isinstance(a, str) for a in spec.aliases)
    settings_for(spec)  # the defaults pass the spec's own rules
    for frames in range(1, 20):
        spec.frames_ok(frames)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(data: dict) -> str:
    plain = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"[{json.dumps(k)}]\n" + "\n".join(f"{json.dumps(a)} = {_toml_value(b)}" for a, b in v.items())
        for k, v in data.items()
        if isinstance(v, dict) and k != "call_kwargs"
    ]
    if isinstance(data.get("call_kwargs"), dict):
        plain.append(f"call_kwargs = {_toml_value(data['call_kwargs'])}")
    return "\n".join(plain + tables) + "\n"


ODD_VALUES = st.sampled_from(
    [0, -1, 1, 3, 2**63 - 1, 1.5, math.nan, math.inf, -0.0, "", "x", "video", "openclip-vit-h-14",
     True, False, [], [1, "a"], {"a": 1}, {}]
)  # fmt: skip


@st.composite
def odd_specs(draw) -> bytes:
    """Real specs with a value replaced by one of the wrong type or range, a key dropped or added."""
    import tomllib

    data = tomllib.loads(draw(st.sampled_from(SPEC_SEEDS)).decode())
    for _ in range(draw(st.integers(1, 3))):
        tables = [data, data.get("defaults"), data.get("rules"), data.get("guidance_schedule")]
        table = draw(st.sampled_from(tables))
        if not isinstance(table, dict) or not table:
            continue
        key = draw(st.sampled_from(sorted(table)))
        action = draw(st.sampled_from(["keep", "replace", "replace", "drop", "add"]))
        if action == "replace":
            table[key] = draw(ODD_VALUES)
        elif action == "drop":
            del table[key]
        else:
            table[draw(st.sampled_from(["color", "frames", "aliases"]))] = draw(ODD_VALUES)
    return Blob(_toml(data).encode())


def test_fuzz_spec_bytes(tmp_path):
    outcomes = []

    @FUZZ
    @given(data=mutated(SPEC_SEEDS))
    def run(data):
        outcomes.append(load_or_refuse(load_spec_file, write(tmp_path / "s.toml", data), check_spec))

    run()
    assert "refused" in outcomes


def test_fuzz_spec_values(tmp_path):
    outcomes = []

    @FUZZ
    @given(data=odd_specs())
    def run(data):
        outcomes.append(load_or_refuse(load_spec_file, write(tmp_path / "s.toml", data), check_spec))

    run()
    assert {"refused", "loaded"} <= set(outcomes)


@pytest.mark.parametrize(
    "model, edit",
    [
        ("tiny-zeroscope", ("[defaults]", "defaults = 3\n[x]")),
        ("zeroscope", ("[rules]", "rules = [1]\n[y]")),
        ("zeroscope", ('encoder = "openclip-vit-h-14"', "encoder = [1]")),
        ("zeroscope", ("size_multiple = 8", "size_multiple = 0")),
        ("zeroscope", ("size_multiple = 8", "size_multiple = 8\nframe_step = 0")),
        ("tiny-zeroscope", ("frames = 8", 'frames = "8"')),
        ("zeroscope", ("guidance = 9.0", "guidance = nan")),
        ("tiny-zeroscope", ("height = 64", "height = 60")),
        ("tiny-zeroscope", ('name = "tiny-zeroscope"', "name = 7\naliases = 3")),
        ("tiny-zeroscope", ('extends = "zeroscope"', "extends = [1]")),
        ("tiny-zeroscope", ('unset = ["repo_id"]', "unset = 3")),
    ],
)
def test_spec_with_wrong_types_is_a_spec_error(tmp_path, model, edit):
    """Regression (found by the fuzzer): wrong-typed values crashed with TypeError/ZeroDivisionError."""
    text = (REPO / "reneg_video" / "specs" / f"{model}.toml").read_text()
    assert edit[0] in text
    path = tmp_path / "s.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ReNegError):
        load_spec_file(path)


def test_spec_deeply_nested_is_refused(tmp_path):
    path = write(tmp_path / "deep.toml", b"a = " + b"[" * 100_000 + b"]" * 100_000)
    load_or_refuse(load_spec_file, path, check_spec)


# --- prompt files (reneg-video --prompts-file) -------------------------------------------------------------

PROMPT_SEEDS = [
    b"a corgi surfing a wave\n# a comment\n\na red panda eating bamboo\n",
    "\ufeffune tasse de caf\u00e9\r\n\u00e9t\u00e9 \u2014 \u65e5\u672c\r\n".encode(),
    b"   \n#only comments\n   # indented comment\n",
    b"one line without newline",
]


def read_prompts(path: Path) -> list[str]:
    return _prompts(Namespace(prompt=[], prompts_file=str(path)))


def check_prompts(prompts: list[str]) -> None:
    assert isinstance(prompts, list) and prompts
    for text in prompts:
        assert isinstance(text, str) and text == text.strip() and text, repr(text)
        assert not text.startswith("#") and "\ufeff" not in text[:1], repr(text)


def test_fuzz_prompts_file(tmp_path):
    outcomes = []

    @FUZZ
    @given(
        data=st.one_of(
            mutated(PROMPT_SEEDS), st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))
        )
    )
    def run(data):
        outcomes.append(load_or_refuse(read_prompts, write(tmp_path / "p.txt", data), check_prompts))

    run()
    assert {"refused", "loaded"} <= set(outcomes)


def test_prompts_file_with_bom_keeps_its_first_line_clean(tmp_path):
    """Regression: a UTF-8 BOM (Windows editors) ended up inside the first prompt, or kept a '#'
    comment on the first line as a prompt."""
    path = write(tmp_path / "p.txt", "\ufeff# header\r\na cat\r\n".encode())
    assert read_prompts(path) == ["a cat"]


# --- video files (scoring input; export validation) --------------------------------------------------------


def check_video(meta) -> None:
    assert isinstance(meta, dict) and isinstance(meta["frames"], int) and meta["frames"] >= 1


def check_frames(frames) -> None:
    assert isinstance(frames, np.ndarray) and frames.ndim == 4 and frames.shape[0] >= 1
    assert frames.shape[-1] == 3 and frames.dtype == np.uint8


# name -> (reader, what a loaded result must be). A new reader is one line here.
VIDEO_READERS = {
    "validate_mp4": (validate_mp4, check_video),
    "validate_gif": (validate_gif, check_video),
}
with contextlib.suppress(ImportError):  # reneg-score's reader (arrives with the rewards branch)
    from reneg_video.commands.score import read_video

    VIDEO_READERS["reneg-score read_video"] = (lambda path: read_video(Path(path)), check_frames)


def _video_seeds(folder: Path) -> list[bytes]:
    frames = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    return [export_video(frames, folder / f"seed{s}", fps=8).read_bytes() for s in (".mp4", ".gif")]


@pytest.fixture(scope="module")
def video_seeds(tmp_path_factory) -> list[bytes]:
    return _video_seeds(tmp_path_factory.mktemp("video-seeds"))


@pytest.mark.parametrize("reader", sorted(VIDEO_READERS))
@pytest.mark.slow
def test_fuzz_video_readers(tmp_path, video_seeds, reader):
    outcomes = []
    function, check = VIDEO_READERS[reader]
    suffixes = [".gif"] if "gif" in reader else [".mp4"] if "mp4" in reader else [".mp4", ".gif"]

    @settings(FUZZ, max_examples=max(FUZZ_EXAMPLES // 2, 10))  # each example runs ffmpeg: half as many
    @given(data=mutated(video_seeds), suffix=st.sampled_from(suffixes))
    def run(data, suffix):
        outcomes.append(load_or_refuse(function, write(tmp_path / f"v{suffix}", data), check))

    run()
    assert {"refused", "loaded"} <= set(outcomes)


def test_mp4_with_a_zero_size_64bit_atom_does_not_hang(tmp_path, video_seeds):
    """Regression: an atom with 64-bit size 0 (or any size < its header) made the atom walker seek
    backwards forever."""
    mp4 = video_seeds[0]
    for bad in (struct.pack(">I4sQ", 1, b"free", 0), struct.pack(">I4s", 4, b"free")):
        load_or_refuse(validate_mp4, write(tmp_path / "v.mp4", mp4 + bad), check_video)
