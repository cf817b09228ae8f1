"""Writes the tiny random-weight vision-language generator (Idefics3, SmolVLM's architecture), built offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vlm_engine.checkpoints import checkpoint_complete, checkpoint_save
from vlm_engine.tiny import TINY_SEED, tiny_vocab_and_merges

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import Idefics3Config, Idefics3Processor

# The vision tower sees 32x32 pixels in 8x8 patches: 16 patches, pixel-shuffled by the
# scale factor 2 into 16 / 2**2 = 4 <image> tokens per image.
GENERATOR_IMAGE_SIZE = 32
_PATCH_SIZE = 8
_SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (GENERATOR_IMAGE_SIZE // _PATCH_SIZE) ** 2 // _SCALE_FACTOR**2
# Larger than the usual 0.02, so the random model's greedy output depends on its input.
_INITIALIZER_RANGE = 0.2
_BOS, _EOS, _PAD, _UNK = "<|im_start|>", "<end_of_utterance>", "<|im_end|>", "<|endoftext|>"
# The tokens Idefics3Processor looks up; the row/column tags name the tiles of a split image.
_IMAGE_TOKENS = (
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
)
# SmolVLM-Instruct's template, cut down to what the engine sends: text and image parts.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def tiny_generator_write(directory: str | Path) -> Path:
    """Write the tiny generator checkpoint to `directory/generator`, unless it is already there.

    Args:
        directory: where the tiny checkpoints live (created if missing).

    Returns:
        The checkpoint directory, loadable with `AutoModelForImageTextToText` / `AutoProcessor`.
    """
    import torch
    from transformers import Idefics3ForConditionalGeneration

    generator_dir = Path(directory) / "generator"
    if checkpoint_complete(generator_dir):
        return generator_dir
    processor = _tiny_generator_processor()
    torch.manual_seed(TINY_SEED)
    model = Idefics3ForConditionalGeneration(_tiny_generator_config(processor))
    checkpoint_save(model, processor, generator_dir)
    return generator_dir


def _tiny_generator_processor() -> Idefics3Processor:
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated in transformers
        tokenizer_object=_tiny_generator_tokenizer(),
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_PAD,
        unk_token=_UNK,
        model_max_length=512,
    )
    edge = {"longest_edge": GENERATOR_IMAGE_SIZE}
    # Without splitting, every image becomes one square of the vision tower's size.
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=False, size=edge, max_image_size=edge)
    return Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE
    )


def _tiny_generator_tokenizer() -> Tokenizer:
    return tiny_byte_level_tokenizer((_BOS, _EOS, _PAD, _UNK, *_IMAGE_TOKENS), unk_token=_UNK)


def tiny_byte_level_tokenizer(specials: tuple[str, ...], *, unk_token: str) -> Tokenizer:
    """Byte-level BPE on the tiny CLIP vocabulary: lossless for any text, special tokens kept whole.

    The CLIP merges end words with `</w>`; here a space stays its own `Ġ` token, so
    deleting `</w>` before the byte-level decoding gives back exactly the text encoded.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = tiny_vocab_and_merges()
    for token in specials:
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", unk_token=unk_token))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.Sequence([decoders.Replace("</w>", ""), decoders.ByteLevel()])
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in specials])
    return tokenizer


def _tiny_generator_config(processor: Idefics3Processor) -> Idefics3Config:
    from transformers import Idefics3Config

    tokenizer = processor.tokenizer
    token_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    text_config = {
        **common,
        **token_ids,
        "model_type": "llama",
        "num_key_value_heads": 4,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 512,
        "initializer_range": _INITIALIZER_RANGE,
    }
    vision_config = {
        **common,
        "image_size": GENERATOR_IMAGE_SIZE,
        "patch_size": _PATCH_SIZE,
        "initializer_range": _INITIALIZER_RANGE,
    }
    return Idefics3Config(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=_SCALE_FACTOR,
        image_token_id=processor.image_token_id,
        # Idefics3Config takes pad_token_id through **kwargs, which its generated signature omits.
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[call-arg]
    )
