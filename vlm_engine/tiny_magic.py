"""Writes the tiny random-weight causal LM (GPT-2, word-level literal vocabulary) that MaGiC captions decode with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vlm_engine.checkpoints import checkpoint_complete, checkpoint_save
from vlm_engine.tiny import TINY_SEED, TINY_WORDS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

CAUSAL_LM_DIR = "causal-lm"
_END = "<|endoftext|>"
# Larger than the usual 0.02, so the random model's next token depends on what came before.
_INITIALIZER_RANGE = 0.2


def tiny_causal_lm_write(directory: str | Path) -> Path:
    """Write the tiny GPT-2 and its tokenizer to `directory/causal-lm`, unless they are already there.

    Returns:
        The checkpoint directory, loadable with `AutoModelForCausalLM` / `AutoTokenizer`.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    target = Path(directory) / CAUSAL_LM_DIR
    if checkpoint_complete(target):
        return target
    tokenizer = _tiny_word_tokenizer()
    end = 0  # _END is the vocabulary's first word
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=end, eos_token_id=end, pad_token_id=end,
                        initializer_range=_INITIALIZER_RANGE)
    torch.manual_seed(TINY_SEED)
    checkpoint_save(GPT2LMHeadModel(config), tokenizer, target)
    return target


def _tiny_word_tokenizer() -> PreTrainedTokenizerFast:
    """One token per word of TINY_WORDS, split on whitespace, decoded with single spaces between words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [_END, *dict.fromkeys(TINY_WORDS)]
    tokenizer = Tokenizer(models.WordLevel(vocab={word: index for index, word in enumerate(words)}, unk_token=_END))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with a space
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated in transformers
        tokenizer_object=tokenizer, bos_token=_END, eos_token=_END, pad_token=_END, unk_token=_END,
        model_max_length=64,
    )
