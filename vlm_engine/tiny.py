"""Writes tiny random-weight checkpoints, built offline, for tests and offline demos."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_engine.checkpoints import checkpoint_complete, checkpoint_save

if TYPE_CHECKING:
    from transformers import CLIPConfig, CLIPProcessor

TINY_SEED = 0
TINY_IMAGE_SIZE = 32
# The words our default policies and tests use; anything else falls back to single
# byte-level characters, which the tiny tokenizer still encodes losslessly.
TINY_WORDS = (
    "a an the of and or with to in on at is are for by from this that photo picture image "
    "drawing text post person people man woman child children cat dog animal food car "
    "weapon gun knife violence violent blood gore nude nudity sexual explicit hate "
    "symbol spam advert ad scam drug drugs self harm safe harmless normal everyday "
    "landscape nature selfie meme screenshot graphic content buy now free money"
).split()
# Files whose presence marks a complete checkpoint, so a rerun skips the work.


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary learnt from TINY_WORDS, so each of those words is one token.

    Hand-written left-to-right merges conflict ("a t</w>" from "at" blocks "c a" in "cat"),
    and the `tokenizers` trainer breaks ties differently in every process; this small
    BPE learner breaks ties by the pair itself, so the vocabulary is the same every time.
    Every byte-level character, with and without `</w>`, is in the vocabulary, so any
    other text still encodes without unknown tokens.
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = _bpe_learn(TINY_WORDS)
    tokens = [*alphabet, *(char + "</w>" for char in alphabet), *(left + right for left, right in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def _bpe_learn(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first, until every word is a single symbol."""
    corpus = [[*word[:-1], word[-1] + "</w>"] for word in dict.fromkeys(words)]
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for symbols in corpus for pair in zip(symbols, symbols[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        corpus = [_pair_merge(symbols, best) for symbols in corpus]


def _pair_merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    merged: list[str] = []
    for symbol in symbols:
        if merged and (merged[-1], symbol) == pair:
            merged[-1] += symbol
        else:
            merged.append(symbol)
    return merged


def _tiny_processor() -> CLIPProcessor:
    from transformers import CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer

    vocab, merges = tiny_vocab_and_merges()
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # the BPE takes merge pairs; transformers annotates strings
        model_max_length=77,
    )
    size = TINY_IMAGE_SIZE
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    return CLIPProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=image_processor, tokenizer=tokenizer
    )


def _tiny_clip_config(vocab_size: int, bos_id: int, eos_id: int) -> CLIPConfig:
    from transformers import CLIPConfig

    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    text_config = {
        **common,
        "vocab_size": vocab_size,
        "max_position_embeddings": 77,
        "projection_dim": 32,
        # CLIP pools at the first eos token, so the ids must match the tokenizer's.
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
    }
    vision_config = {**common, "image_size": TINY_IMAGE_SIZE, "patch_size": 8, "projection_dim": 32}
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=32)


def tiny_clip_write(directory: str | Path) -> Path:
    """Write the tiny CLIP checkpoint to `directory/clip`, unless it is already there."""
    import torch
    from transformers import CLIPModel

    clip_dir = Path(directory) / "clip"
    if checkpoint_complete(clip_dir):
        return clip_dir
    processor = _tiny_processor()
    tokenizer = processor.tokenizer
    config = _tiny_clip_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(TINY_SEED)
    checkpoint_save(CLIPModel(config), processor, clip_dir)
    return clip_dir


def tiny_checkpoints_write(directory: str | Path) -> Path:
    """Write every role's tiny checkpoint (clip/, owlv2/, generator/, verifier/) under `directory`.

    Args:
        directory: where the tiny checkpoints live (created if missing).

    Returns:
        `directory`; each role's checkpoint loads with `from_pretrained` from its subdirectory.
    """
    from vlm_engine.tiny_generator import tiny_generator_write
    from vlm_engine.tiny_grounder import tiny_grounder_write
    from vlm_engine.tiny_verifier import tiny_verifier_write

    tiny_clip_write(directory)
    tiny_grounder_write(directory)
    tiny_generator_write(directory)
    tiny_verifier_write(directory)
    return Path(directory)


def main(argv: list[str]) -> int:
    """`python -m vlm_engine.tiny DIR`: write the tiny checkpoints and print where."""
    if len(argv) != 1:
        print("usage: python -m vlm_engine.tiny DIR", file=sys.stderr)
        return 2
    print(tiny_checkpoints_write(argv[0]))
    return 0



def tiny_checkpoint_written(directory: str | Path, name: str, build: Callable[[], tuple[Any, Any]]) -> Path:
    """`directory/name`: the (model, processor) of `build`, random weights seeded with TINY_SEED, saved
    unless a complete checkpoint is already there."""
    import torch

    target = Path(directory) / name
    if checkpoint_complete(target):
        return target
    torch.manual_seed(TINY_SEED)
    model, processor = build()
    checkpoint_save(model, processor, target)
    return target

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
