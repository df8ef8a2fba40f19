"""Embedding files: the released ReNeg files, the project format, and every refusal."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from reneg_video import (
    EmbeddingFileError,
    NegativeEmbedding,
    TextualInversionError,
    UnsafeFileError,
    load_embedding,
)
from reneg_video.core.encoders import infer_t5_mask, match_tokens
from reneg_video.core.errors import EncoderMismatchError, ReNegError

from ..conftest import shared_file

# From ../shared/README.md: the published files' sha256.
RELEASED = {
    "sd1.4_reneg_emb.bin": (
        (1, 77, 768),
        "clip-vit-l-14",
        "5c00f225bb7f5f437aba6bf27bbae3cf596dcf39d147bdce69915134913a125c",
    ),
    "sd1.5_reneg_emb.bin": (
        (1, 77, 768),
        "clip-vit-l-14",
        "3124786328b54bd48e5a8c552d12685978baddbd52f9bb18cbc78451891dba6d",
    ),
    "sd2.1_reneg_emb.bin": (
        (1, 77, 1024),
        "openclip-vit-h-14",
        "ed766ee46458683bebe53b4a66abb8b1d5541d38dbcf5fb4d4980264c9d25f11",
    ),
    "pixart-alpha_reneg_emb.bin": (
        (1, 120, 4096),
        "t5-v1_1-xxl",
        "c70177f76e893ddb94e46e87544b72989425e3d7a5ed04d94702a7290434325d",
    ),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_files_load_with_family_and_mask(name):
    shape, family, sha = RELEASED[name]
    emb = load_embedding(shared_file(name))
    assert tuple(emb.tensor.shape) == shape
    assert emb.family.name == family
    assert emb.sha256 == sha
    assert emb.tensor.dtype == torch.float32
    if family == "t5-v1_1-xxl":
        # Learned under the empty prompt's mask: token 0 alone is kept.
        assert emb.mask is not None and emb.mask.shape == (1, 120)
        assert emb.mask[0, 0] and int(emb.mask.sum()) == 1
    else:
        assert emb.mask is None and emb.kept_tokens == 77


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_save_roundtrip(tmp_path, pixart_file, suffix):
    emb = load_embedding(pixart_file)
    out = emb.save(tmp_path / f"e{suffix}")
    again = load_embedding(out)
    assert torch.equal(again.tensor, emb.tensor)
    assert torch.equal(again.mask, emb.mask)
    assert again.family == emb.family
    if suffix == ".safetensors":
        assert again.metadata["format"] == "reneg-video/negative-embedding"
        assert again.metadata["kept_tokens"] == "1"
        assert again.source == "pixart-alpha_reneg_emb.bin"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left behind


def test_project_format_keeps_an_explicit_mask(tmp_path):
    tensor = torch.randn(1, 128, 4096)  # all rows differ: inference would keep every token
    mask = torch.zeros(1, 128, dtype=torch.bool)
    mask[0, :5] = True
    emb = NegativeEmbedding(tensor=tensor, mask=mask, family=load_family("t5-v1_1-xxl"), source="unit")
    again = load_embedding(emb.save(tmp_path / "m.safetensors"))
    assert int(again.mask.sum()) == 5 and again.kept_tokens == 5


def load_family(name):
    from reneg_video.core.encoders import FAMILIES

    return FAMILIES[name]


def test_plain_safetensors_single_tensor(tmp_path, sd21_file):
    t = load_embedding(sd21_file).tensor
    save_file({"whatever": t.half()}, tmp_path / "x.safetensors")
    emb = load_embedding(tmp_path / "x.safetensors")
    assert emb.family.name == "openclip-vit-h-14"
    assert torch.allclose(emb.tensor, t, atol=1e-2) and emb.tensor.dtype == torch.float32


def test_infer_t5_mask_counts_kept_rows():
    t = torch.randn(1, 120, 8)
    t[0, 3:] = t[0, 3]  # rows 3.. identical padding
    assert infer_t5_mask(t)[0].tolist() == [True] * 3 + [False] * 117
    assert int(infer_t5_mask(torch.randn(1, 120, 8)).sum()) == 120  # no padding run: keep all
    assert infer_t5_mask(torch.zeros(1, 120, 8))[0, :2].tolist() == [True, False]  # all equal: token 0


def test_match_tokens_pads_and_refuses_lossy_truncation():
    t = torch.randn(1, 120, 4)
    mask = torch.zeros(1, 120, dtype=torch.bool)
    mask[0, 0] = True
    padded, pmask = match_tokens(t, mask, 128, "unit")
    assert padded.shape == (1, 128, 4) and torch.equal(padded[:, :120], t)
    assert int(pmask.sum()) == 1 and not pmask[0, 120:].any()
    back, bmask = match_tokens(padded, pmask, 120, "unit")
    assert torch.equal(back, t) and torch.equal(bmask, mask)
    full = torch.ones(1, 128, dtype=torch.bool)
    with pytest.raises(EncoderMismatchError, match="drop kept"):
        match_tokens(padded, full, 120, "unit")
    with pytest.raises(EncoderMismatchError):
        match_tokens(torch.randn(1, 77, 4), None, 120, "unit")


class _Payload:
    """A hostile pickle: loading it with plain pickle would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(tmp_path, sd21_file):
    good = load_embedding(sd21_file).tensor
    raw = sd21_file.read_bytes()
    cases = {}

    def put(name, data):
        path = tmp_path / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            torch.save(data, path)
        cases[name] = path

    put("empty.bin", b"")
    put("truncated.bin", raw[: len(raw) // 2])
    put("junk.bin", b"\x00\x01not a pickle" * 50)
    put("lfs.bin", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 315947\n")
    nan = good.clone()
    nan[0, 3, 5] = float("nan")
    put("nan.bin", nan)
    inf = good.clone()
    inf[0, 0, 0] = float("inf")
    put("inf.bin", inf)
    put("rank2.bin", good[0])
    put("width512.bin", torch.randn(1, 77, 512))
    put("tokens50.bin", torch.randn(1, 50, 1024))
    put("int.bin", torch.zeros(1, 77, 1024, dtype=torch.int64))
    put("list.bin", [1, 2, 3])
    put("dict.bin", {"a": good, "b": good})
    (tmp_path / "trunc.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    cases["trunc.safetensors"] = tmp_path / "trunc.safetensors"
    (tmp_path / "absurd.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    cases["absurd.safetensors"] = tmp_path / "absurd.safetensors"
    return cases


EXPECTED_WORDS = {
    "empty.bin": "empty",
    "truncated.bin": "corrupt",
    "junk.bin": "not an embedding file: binary data of no known kind",
    "lfs.bin": "git-LFS",
    "nan.bin": "NaN",
    "inf.bin": "NaN/Inf",
    "rank2.bin": "tensor[None]",
    "width512.bin": "matches no known",
    "tokens50.bin": "matches no known",
    "int.bin": "dtype torch.int64",
    "list.bin": "holds a list",
    "dict.bin": "a dict",
    "trunc.safetensors": "safetensors",
    "absurd.safetensors": "safetensors",
}


def test_every_bad_file_is_refused_with_a_named_reason(tmp_path, sd21_file):
    cases = _bad_files(tmp_path, sd21_file)
    assert set(cases) == set(EXPECTED_WORDS)
    for name, path in cases.items():
        with pytest.raises(EmbeddingFileError) as info:
            load_embedding(path)
        message = str(info.value)
        assert str(path) in message and EXPECTED_WORDS[name] in message, message
        assert "\n" not in message


def _zip_without_data_pkl() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("sd2.1_reneg_emb/README.txt", "see the release page")
    return buffer.getvalue()


def _torch_save_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.zeros(1, 77, 1024), buffer)
    return buffer.getvalue()


HTML = "an HTML page (a download that saved the web page, not the file)"
NOT_EMBEDDINGS = {
    "notes.bin": (b"ReNeg embeddings\nsee the paper\n", "text ('ReNeg embeddings')"),
    "page.bin": (b"\xef\xbb\xbf<!doctype html>\n<html>Sign in</html>", HTML),
    "fragment.pt": (b"  <head><title>x</title></head><html></html>", HTML),
    "config.bin": (b'{"model": "sd2.1"}', "JSON text"),
    "download.bin": (
        _zip_without_data_pkl(),
        "a zip archive without data.pkl (holds sd2.1_reneg_emb/README.txt)",
    ),
    "preview.bin": (b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
    "empty.pt": (b"", "empty (0 bytes)"),
    "notes.safetensors": (b"ReNeg embeddings\n", "text ('ReNeg embeddings')"),
    "torch.safetensors": (_torch_save_bytes(), "a torch.save archive named .safetensors"),
}


@pytest.mark.parametrize("name", sorted(NOT_EMBEDDINGS))
def test_a_file_that_is_no_embedding_container_says_what_it_looks_like(tmp_path, name):
    data, kind = NOT_EMBEDDINGS[name]
    path = tmp_path / name
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as seen:  # torch's weights_only advice must not leak
        warnings.simplefilter("always")
        with pytest.raises(EmbeddingFileError) as info:
            load_embedding(path)
    assert str(info.value) == (
        f"{path}: not an embedding file: {kind}; pass a .bin saved with torch.save or a .safetensors file"
    )
    assert [str(w.message) for w in seen] == []


def test_a_safetensors_file_named_bin_is_named_as_such(tmp_path):
    path = tmp_path / "emb.bin"
    save_file({"emb": torch.zeros(1, 77, 1024)}, str(path))
    with pytest.raises(EmbeddingFileError, match="not an embedding file: a safetensors file named .bin"):
        load_embedding(path)


def test_hostile_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeFileError, match="system"):
        load_embedding(path)
    assert not marker.exists()
    # Also inside torch's zip container.
    zipped = tmp_path / "evil_zip.pt"
    torch.save({"x": _Payload(marker)}, zipped)
    with pytest.raises(UnsafeFileError):
        load_embedding(zipped)
    assert not marker.exists()


def test_textual_inversion_files_are_recognised(tmp_path):
    a1111 = tmp_path / "a1111.pt"
    torch.save({"string_to_param": {"*": torch.randn(4, 768)}, "name": "bad-hands"}, a1111)
    kohya = tmp_path / "kohya.safetensors"
    save_file({"emb_params": torch.randn(4, 768)}, kohya)
    diffusers_ti = tmp_path / "learned_embeds.bin"
    torch.save({"<cat-toy>": torch.randn(768)}, diffusers_ti)
    for path, word in ((a1111, "A1111"), (kohya, "kohya"), (diffusers_ti, "diffusers")):
        with pytest.raises(TextualInversionError, match=word):
            load_embedding(path)


def test_path_problems(tmp_path):
    for path, word in (
        (tmp_path / "missing.bin", "no such file"),
        (tmp_path, "is a directory"),
        (tmp_path / "e.txt", "unknown suffix"),
    ):
        if path.suffix == ".txt":
            path.write_text("x")
        with pytest.raises(ReNegError, match=word):
            load_embedding(path)
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(65 * 2**20)  # sparse: costs no disk
    with pytest.raises(EmbeddingFileError, match="far larger"):
        load_embedding(huge)


def test_sha256_is_of_the_file(sd21_file):
    assert load_embedding(sd21_file).sha256 == hashlib.sha256(sd21_file.read_bytes()).hexdigest()


def test_unmasked_fills_keep_the_kept_tokens_and_fill_the_rest_as_named():
    from reneg_video.core.encoders import FILL_EMPTY, FILL_FILE, FILL_ZEROS

    t = torch.randn(1, 120, 4)
    t[0, 2:] = t[0, 2]  # rows 2.. identical padding: 2 kept tokens
    mask = infer_t5_mask(t)
    empty = torch.randn(1, 226, 4)
    out, none = match_tokens(t, mask, 226, "unit", fill=FILL_EMPTY, empty=empty)
    assert none is None and out.shape == (1, 226, 4)
    assert torch.equal(out[0, :2], t[0, :2]) and torch.equal(out[0, 2:], empty[0, 2:])
    out, _ = match_tokens(t, mask, 226, "unit", fill=FILL_ZEROS)
    assert torch.equal(out[0, :2], t[0, :2]) and not out[0, 2:].any()
    out, _ = match_tokens(t, mask, 226, "unit", fill=FILL_FILE)
    assert torch.equal(out[0, :120], t[0]) and torch.equal(out[0, 120:], t[0, -1:].expand(106, 4))
    with pytest.raises(EncoderMismatchError, match="empty-prompt"):
        match_tokens(t, mask, 226, "unit", fill=FILL_EMPTY)  # no encoding of "" given


def test_t5_files_of_any_token_count_load_and_foreign_spaces_are_never_guessed(tmp_path):
    from reneg_video.core.encoders import family_for_shape

    assert family_for_shape(226, 4096).name == "t5-v1_1-xxl"  # a CogVideoX-trained file
    assert family_for_shape(120, 1024) is None  # CLIP spaces have 77 absolute positions
    assert family_for_shape(77, 2048) is None  # SDXL's dual space: no ReNeg file exists
    torch.save(torch.randn(1, 256, 4096), tmp_path / "ltx256.bin")
    assert load_embedding(tmp_path / "ltx256.bin").tokens == 256
