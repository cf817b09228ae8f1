"""Writes tiny random-weight image–text matching (verifier) checkpoints, built offline, one per family."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_engine.tiny import TINY_WORDS, tiny_checkpoint_written

if TYPE_CHECKING:
    from transformers import BertTokenizer

TINY_VERIFIER_IMAGE_SIZE = 32
# The family the tiny profile's verifier uses; the others are built for the equivalence tests.
TINY_VERIFIER_FAMILY = "blip"
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_COMMON = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
# Larger than the usual 0.02, so the random matching heads' output depends on the pair.
_INITIALIZER_RANGE = 0.2


def tiny_wordpiece_vocab() -> dict[str, int]:
    """A BERT WordPiece vocabulary: the special tokens, TINY_WORDS, and every ASCII character alone and as ##suffix.

    Any lower-case ASCII text encodes without unknown tokens, so tests may use any prompt.
    """
    characters = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*_SPECIAL, *TINY_WORDS, *characters, *(f"##{char}" for char in characters)]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def _bert_tokenizer(max_length: int) -> BertTokenizer:
    from transformers import BertTokenizer

    return BertTokenizer(vocab=tiny_wordpiece_vocab(), model_max_length=max_length)


def _blip() -> tuple[Any, Any]:
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessorPil, BlipProcessor

    tokenizer = _bert_tokenizer(64)
    size = TINY_VERIFIER_IMAGE_SIZE
    text_config = {**_COMMON, "vocab_size": len(tokenizer), "max_position_embeddings": 64,
                   "encoder_hidden_size": 32, "pad_token_id": tokenizer.pad_token_id,
                   "bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id,
                   "sep_token_id": tokenizer.sep_token_id,
                   "initializer_range": _INITIALIZER_RANGE}
    vision_config = {**_COMMON, "image_size": size, "patch_size": 8, "initializer_range": _INITIALIZER_RANGE}
    config = BlipConfig(text_config=text_config, vision_config=vision_config, projection_dim=32,
                        image_text_hidden_size=32, initializer_range=_INITIALIZER_RANGE)
    processor = BlipProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=BlipImageProcessorPil(size={"height": size, "width": size}), tokenizer=tokenizer)
    return BlipForImageTextRetrieval(config), processor


def _bridgetower() -> tuple[Any, Any]:
    from transformers import (BridgeTowerConfig, BridgeTowerForImageAndTextRetrieval, BridgeTowerImageProcessorPil,
                              BridgeTowerProcessor, RobertaTokenizer)

    from tokenizers import pre_tokenizers

    # RoBERTa's byte-level BPE without merges: every text encodes losslessly, a byte per token.
    tokens = ("<s>", "<pad>", "</s>", "<unk>", "<mask>", *sorted(pre_tokenizers.ByteLevel.alphabet()))
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=64)
    size = TINY_VERIFIER_IMAGE_SIZE
    # BridgeTower's vision width must be a multiple of 64 (its heads are 64 wide).
    common = {**_COMMON, "hidden_size": 64, "intermediate_size": 128}
    config = BridgeTowerConfig(
        text_config={**common, "vocab_size": len(tokenizer), "max_position_embeddings": 66,
                     "pad_token_id": tokenizer.pad_token_id, "initializer_factor": 1.0},
        vision_config={"hidden_size": 64, "num_hidden_layers": 2, "patch_size": 8, "image_size": size,
                       "initializer_factor": 1.0},
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, initializer_factor=1.0)
    # Its PIL processor resizes the shortest edge, then crops to `crop_size`'s shortest edge.
    image_processor = BridgeTowerImageProcessorPil(size={"shortest_edge": size}, crop_size={"shortest_edge": size},
                                                   size_divisor=8)
    processor = BridgeTowerProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=image_processor, tokenizer=tokenizer)
    return BridgeTowerForImageAndTextRetrieval(config), processor


def _vilt() -> tuple[Any, Any]:
    from transformers import ViltConfig, ViltForImageAndTextRetrieval, ViltImageProcessorPil, ViltProcessor

    tokenizer = _bert_tokenizer(40)
    size = TINY_VERIFIER_IMAGE_SIZE
    config = ViltConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        vocab_size=len(tokenizer), max_position_embeddings=40, image_size=size,
                        patch_size=8, initializer_range=_INITIALIZER_RANGE, pad_token_id=tokenizer.pad_token_id)
    image_processor = ViltImageProcessorPil(size={"shortest_edge": size})
    processor = ViltProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=image_processor, tokenizer=tokenizer)
    return ViltForImageAndTextRetrieval(config), processor


def _flava() -> tuple[Any, Any]:
    from transformers import FlavaConfig, FlavaForPreTraining, FlavaImageProcessorPil, FlavaProcessor

    tokenizer = _bert_tokenizer(64)
    size = TINY_VERIFIER_IMAGE_SIZE
    common = {**_COMMON, "initializer_range": _INITIALIZER_RANGE}
    config = FlavaConfig(
        text_config={**common, "vocab_size": len(tokenizer), "max_position_embeddings": 64,
                     "pad_token_id": tokenizer.pad_token_id},
        image_config={**common, "image_size": size, "patch_size": 8},
        multimodal_config=common, image_codebook_config={"hidden_size": 32, "num_groups": 1, "vocab_size": 64},
        hidden_size=32, projection_dim=32, init_codebook=False, initializer_range=_INITIALIZER_RANGE)
    image_processor = FlavaImageProcessorPil(size={"height": size, "width": size},
                                             crop_size={"height": size, "width": size})
    processor = FlavaProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=image_processor, tokenizer=tokenizer)
    return FlavaForPreTraining(config), processor


def _blip2() -> tuple[Any, Any]:
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, Blip2Processor, BlipImageProcessorPil

    tokenizer = _bert_tokenizer(64)
    size = TINY_VERIFIER_IMAGE_SIZE
    common = {**_COMMON, "initializer_range": _INITIALIZER_RANGE}
    config = Blip2Config(
        vision_config={**common, "image_size": size, "patch_size": 8},
        # The ITM head reads the Q-Former's queries attending to the text, so the Q-Former takes text input.
        qformer_config={**common, "vocab_size": len(tokenizer), "max_position_embeddings": 64,
                        "encoder_hidden_size": 32, "use_qformer_text_input": True,
                        "pad_token_id": tokenizer.pad_token_id},
        num_query_tokens=4, image_text_hidden_size=32, initializer_range=_INITIALIZER_RANGE)
    image_processor = BlipImageProcessorPil(size={"height": size, "width": size})
    processor = Blip2Processor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=image_processor, tokenizer=tokenizer)
    return Blip2ForImageTextRetrieval(config), processor


# Family name -> builder of (random model, processor); the directory under tiny_dir is
# "verifier" for the tiny profile's family and "verifier-<family>" for the others.
TINY_VERIFIER_BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "blip": _blip, "bridgetower": _bridgetower, "vilt": _vilt, "flava": _flava, "blip-2": _blip2}


def tiny_verifier_write(directory: str | Path, family: str = TINY_VERIFIER_FAMILY) -> Path:
    """Write a tiny verifier checkpoint of `family` under `directory`, unless it is already there.

    Args:
        directory: where the tiny checkpoints live (created if missing).
        family: a key of TINY_VERIFIER_BUILDERS.

    Returns:
        The checkpoint directory (`verifier/` for the default family, `verifier-<family>/`
        otherwise), loadable with `from_pretrained` and `VerifierRole.load`.

    Raises:
        KeyError: an unknown family.
    """
    name = "verifier" if family == TINY_VERIFIER_FAMILY else f"verifier-{family}"
    return tiny_checkpoint_written(directory, name, TINY_VERIFIER_BUILDERS[family])
