"""A negative embedding as a model sees it, outside diffusers: ComfyUI CONDITIONING and LTXV files.

`attach` feeds a diffusers pipeline; ComfyUI samplers take CONDITIONING instead, a list of
`[tensor, options]` pairs whose options dict may carry an `"attention_mask"`. Both come from the same
family check and token matching (`encoders.check_family`, `encoders.match_tokens`), so the tensor a
ComfyUI sampler gets is the one `attach` hands the pipeline.

Shape legend: T tokens (the model's), D width.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .embedding import NegativeEmbedding
from .encoders import check_family, match_tokens
from .errors import UsageError
from .specs import AdapterSpec

# Keys of Lightricks' ComfyUI-LTXVideo `LTXVLoadConditioning` node (conditioning_loader.py): it reads
# every `conditioning_data_{i}` and, where present, `attention_mask_{i}`, from models/embeddings/.
LTXV_TENSOR_KEY = "conditioning_data_{}"
LTXV_MASK_KEY = "attention_mask_{}"


def model_negative(neg: NegativeEmbedding, spec: AdapterSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[1, T, D] and its [1, T] mask (None for unmasked families) exactly as `attach` uses them."""
    check_family(neg.family, spec.family, spec.name, neg.source)
    return match_tokens(neg.tensor, neg.mask, spec.tokens, neg.source)


def comfy_conditioning(neg: NegativeEmbedding, spec: AdapterSpec) -> list[list]:
    """ComfyUI CONDITIONING for a sampler's negative input: `[[tensor [1,T,D], {"attention_mask": [1,T]}]]`.

    The mask is int64 0/1, as tokenizers give it: ComfyUI's LTXV model does arithmetic on it, which a
    bool tensor refuses. Unmasked families (CLIP) get an empty options dict.
    """
    tensor, mask = model_negative(neg, spec)
    options = {} if mask is None else {"attention_mask": mask.to(torch.int64).contiguous()}
    return [[tensor.float().contiguous(), options]]


def save_ltxv_conditioning(neg: NegativeEmbedding, spec: AdapterSpec, path: str | os.PathLike[str]) -> Path:
    """Write the file `LTXVLoadConditioning` reads (atomically): conditioning_data_0, attention_mask_0."""
    from safetensors.torch import save_file

    from .atomic import atomic_path

    if not spec.mask:
        raise UsageError(
            f"--export-ltxv-conditioning: {spec.name} takes no attention mask; the LTXV conditioning file is "
            "for LTX-Video models (e.g. --model ltx-video)"
        )
    path = Path(path)
    if path.suffix != ".safetensors":
        raise UsageError(f"--export-ltxv-conditioning {path}: expected a file name ending in .safetensors")
    if not path.parent.is_dir():
        raise UsageError(f"--export-ltxv-conditioning {path}: folder {path.parent} does not exist; create it")
    [[tensor, options]] = comfy_conditioning(neg, spec)
    tensors = {LTXV_TENSOR_KEY.format(0): tensor, LTXV_MASK_KEY.format(0): options["attention_mask"]}
    metadata = {"num_conditionings": "1", "source": neg.source, "sha256": neg.sha256, "model": spec.name}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
