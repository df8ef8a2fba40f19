"""Tiny offline text parts for the VideoCrafter2 tests: a CLIP tokenizer over single letters and a one-layer
text encoder at OpenCLIP ViT-H/14 width, shared by test_videocrafter2 and test_videocrafter2_pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters, built offline (pads with "!" = id 0, as open_clip does)."""
    tokens = ["!", "!</w>"] + [c + s for c in "abcdefghijklmnopqrstuvwxyz" for s in ("", "</w>")]
    vocab = {t: i for i, t in enumerate(tokens + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!", model_max_length=77
    )


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    torch.manual_seed(0)
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=1024,  # OpenCLIP ViT-H/14 width: the UNet's cross-attention width
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=77,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=0,
        )
    ).eval()
