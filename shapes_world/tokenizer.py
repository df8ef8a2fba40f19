"""The word-level CLIPTokenizer of the shapes world, built offline from the grammar's vocabulary.

CLIP's BPE starts from characters (the last one of a word marked `</w>`) and applies merges by rank. The
vocabulary here holds every single character (so any text still tokenises), CLIP's two special tokens,
and each grammar word; the merges build each word left to right, so a grammar word always becomes one
token. transformers needs `model_max_length` when a CLIPTokenizer is built from files (FACTS.md).
"""

from __future__ import annotations

import string

from .world import TEXT_TOKENS, VOCABULARY

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Characters any prompt may contain, each a token of its own (inside a word, and at a word's end).
CHARACTERS = string.ascii_lowercase + string.digits + ",.'-!?"


def vocabulary_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    tokens: list[str] = [BOS, EOS]
    tokens += list(CHARACTERS) + [c + "</w>" for c in CHARACTERS]
    merges: list[tuple[str, str]] = []
    for word in VOCABULARY:
        pieces = [*word[:-1], word[-1] + "</w>"]
        if len(pieces) == 1:
            continue  # a one-character word is already a token
        left = pieces[0]
        for piece in pieces[1:]:
            merged = left + piece
            if (left, piece) not in merges:
                merges.append((left, piece))
            if merged not in tokens:
                tokens.append(merged)
            left = merged
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer():
    """A CLIPTokenizer with TEXT_TOKENS positions over the grammar vocabulary."""
    from transformers import CLIPTokenizer

    vocab, merges = vocabulary_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=TEXT_TOKENS,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
    )
