"""Writes the tiny random-weight OWLv2 grounder checkpoint, built offline, for tests and offline demos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

# The tokenizer vocabulary and the publish-by-rename steps are the CLIP checkpoint's own,
# so both tiny checkpoints tokenize alike and are written the same safe way.
from vlm_engine.checkpoints import checkpoint_complete, checkpoint_save
from vlm_engine.tiny import TINY_SEED, tiny_vocab_and_merges

if TYPE_CHECKING:
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor

TINY_GROUNDER_IMAGE_SIZE = 64
TINY_GROUNDER_PATCH_SIZE = 16
# OWLv2's text tower has 16 positions; its processor pads every query to that length.
TINY_GROUNDER_TEXT_LENGTH = 16


def _tiny_grounder_processor() -> Owlv2Processor:
    from transformers import CLIPTokenizer, Owlv2ImageProcessorPil, Owlv2Processor

    vocab, merges = tiny_vocab_and_merges()
    # Pad with "!" (id 0) as google/owlv2-* do: OWLv2 marks a query whose first id is 0 as padding,
    # and pools the text at the highest id (the end-of-text token, last in the vocabulary).
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # the BPE takes merge pairs; transformers annotates strings
        model_max_length=TINY_GROUNDER_TEXT_LENGTH,
        pad_token="!",
    )
    size = TINY_GROUNDER_IMAGE_SIZE
    image_processor = Owlv2ImageProcessorPil(size={"height": size, "width": size})
    return Owlv2Processor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=image_processor, tokenizer=tokenizer
    )


def _tiny_grounder_config(vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> Owlv2Config:
    from transformers import Owlv2Config

    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    text_config = {
        **common,
        "vocab_size": vocab_size,
        "max_position_embeddings": TINY_GROUNDER_TEXT_LENGTH,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }
    vision_config = {
        **common,
        "image_size": TINY_GROUNDER_IMAGE_SIZE,
        "patch_size": TINY_GROUNDER_PATCH_SIZE,
    }
    return Owlv2Config(text_config=text_config, vision_config=vision_config, projection_dim=32)


def _heads_scale_down(model: Owlv2ForObjectDetection) -> None:
    """Give the detection heads 1/sqrt(width) weights instead of the default std 1.0.

    The config has no `initializer_range`, so the heads' `nn.Linear`s start at std 1.0: every
    sigmoid saturates (all scores 1.0, zero-height boxes) and tests could tell nothing apart.
    """
    import torch

    heads = (model.class_head, model.box_head, model.objectness_head)
    with torch.no_grad():
        for linear in (module for head in heads for module in head.modules()):
            if isinstance(linear, torch.nn.Linear):
                linear.weight.normal_(std=linear.in_features**-0.5)


def tiny_grounder_write(directory: str | Path) -> Path:
    """Write the tiny OWLv2 checkpoint to `directory/owlv2`, unless it is already there.

    Args:
        directory: where the tiny checkpoints live (created if missing).

    Returns:
        The path of the OWLv2 checkpoint directory, loadable with `from_pretrained` and by
        the "zero-shot-object-detection" pipeline.
    """
    import torch
    from transformers import Owlv2ForObjectDetection

    owlv2_dir = Path(directory) / "owlv2"
    if checkpoint_complete(owlv2_dir):
        return owlv2_dir
    processor = _tiny_grounder_processor()
    tokenizer = processor.tokenizer
    config = _tiny_grounder_config(
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    torch.manual_seed(TINY_SEED)
    model = Owlv2ForObjectDetection(config)
    _heads_scale_down(model)
    checkpoint_save(model, processor, owlv2_dir)
    return owlv2_dir
