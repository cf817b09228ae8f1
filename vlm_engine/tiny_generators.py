"""Tiny random-weight checkpoints of the task generators (BLIP, BLIP-2, GIT, ViT+GPT-2), built offline.

Each writer puts one family's checkpoint under ``directory/<name>`` (unless it is complete there
already) and returns that path. BLIP and GIT use the tiny BERT WordPiece tokenizer, ViT+GPT-2 and
BLIP-2's OPT a byte-level BPE; weights are drawn wider than usual so that greedy output depends on the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_engine.tiny import TINY_IMAGE_SIZE, tiny_checkpoint_written
from vlm_engine.tiny_embedders import _TOWER, TINY_PATCH, _bert_tokenizer, _clip_image_processor

# As the tiny Idefics3's: at 0.02 a random decoder repeats one token whatever the image.
_INITIALIZER_RANGE = 0.2
_GPT2_TOKEN = "<|endoftext|>"  # GPT-2's one special token: start, end and padding


def _tower(**extra: Any) -> dict[str, Any]:
    return {**_TOWER, "initializer_range": _INITIALIZER_RANGE, **extra}


def _vision() -> dict[str, Any]:
    return _tower(image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH)


def _bert_decoder(tokenizer: Any) -> dict[str, Any]:
    """A BERT-style text decoder's ids: starts at [CLS], ends at [SEP], pads with [PAD]."""
    return _tower(vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)


def _blip_parts() -> tuple[Any, Any]:
    from transformers import BlipConfig, BlipImageProcessorPil, BlipProcessor

    tokenizer = _bert_tokenizer()
    side = TINY_IMAGE_SIZE
    processor = BlipProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
        image_processor=BlipImageProcessorPil(size={"height": side, "width": side}), tokenizer=tokenizer)
    text = {**_bert_decoder(tokenizer), "sep_token_id": tokenizer.sep_token_id}
    config = BlipConfig(text_config=text, vision_config=_vision(), projection_dim=32, image_text_hidden_size=32)
    return config, processor


def tiny_blip_write(directory: str | Path) -> Path:
    """BLIP captioning (``BlipForConditionalGeneration``) under ``directory/blip``."""

    def build() -> tuple[Any, Any]:
        from transformers import BlipForConditionalGeneration

        config, processor = _blip_parts()
        return BlipForConditionalGeneration(config), processor

    return tiny_checkpoint_written(directory, "blip", build)


def tiny_blip_vqa_write(directory: str | Path) -> Path:
    """BLIP VQA (``BlipForQuestionAnswering``) under ``directory/blip-vqa``: the same model_type, told
    apart by the config's ``architectures``."""

    def build() -> tuple[Any, Any]:
        from transformers import BlipForQuestionAnswering

        config, processor = _blip_parts()
        return BlipForQuestionAnswering(config), processor

    return tiny_checkpoint_written(directory, "blip-vqa", build)


def tiny_git_write(directory: str | Path) -> Path:
    """GIT (``GitForCausalLM``) under ``directory/git``: a ViT's tokens, then text, in one decoder."""

    def build() -> tuple[Any, Any]:
        from transformers import GitConfig, GitForCausalLM, GitProcessor

        tokenizer = _bert_tokenizer()
        processor = GitProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=_clip_image_processor(), tokenizer=tokenizer)
        return GitForCausalLM(GitConfig(vision_config=_vision(), **_bert_decoder(tokenizer))), processor

    return tiny_checkpoint_written(directory, "git", build)


def _byte_level(specials: tuple[str, ...], **roles: str) -> Any:
    """A fast tokenizer on the tiny byte-level BPE, `specials` kept whole, `roles` naming them (bos_token=…)."""
    from transformers import PreTrainedTokenizerFast

    from vlm_engine.tiny_generator import tiny_byte_level_tokenizer

    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated in transformers
        tokenizer_object=tiny_byte_level_tokenizer(specials, unk_token=roles["unk_token"]), model_max_length=128,
        **roles)


def tiny_blip2_write(directory: str | Path) -> Path:
    """BLIP-2 with a tiny OPT (``Blip2ForConditionalGeneration``) under ``directory/blip-2``: 4 query tokens."""

    def build() -> tuple[Any, Any]:
        from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

        tokenizer = _byte_level(("<pad>", "</s>", "<unk>", "<image>"), bos_token="</s>", eos_token="</s>",
                                pad_token="<pad>", unk_token="<unk>")
        side, queries = TINY_IMAGE_SIZE, 4
        processor = Blip2Processor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=BlipImageProcessorPil(size={"height": side, "width": side}), tokenizer=tokenizer,
            num_query_tokens=queries)
        ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
        opt = {"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "vocab_size": len(tokenizer), "max_position_embeddings": 128, "word_embed_proj_dim": 32,
               "init_std": _INITIALIZER_RANGE, **ids}
        config = Blip2Config(vision_config=_vision(), qformer_config=_tower(encoder_hidden_size=32,
                                                                         vocab_size=len(tokenizer)),
                             text_config=opt, num_query_tokens=queries,
                             image_token_index=tokenizer.get_vocab()["<image>"])
        return Blip2ForConditionalGeneration(config), processor

    return tiny_checkpoint_written(directory, "blip-2", build)


class ImageProcessorAndTokenizer:
    """What a ``VisionEncoderDecoderModel`` checkpoint holds instead of a joint processor."""

    def __init__(self, image_processor: Any, tokenizer: Any) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    def save_pretrained(self, directory: str | Path) -> None:
        self.image_processor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        # Nothing joint to configure; the file marks the checkpoint complete like the others.
        (Path(directory) / "processor_config.json").write_text("{}\n")


def tiny_vit_gpt2_write(directory: str | Path) -> Path:
    """ViT + GPT-2 (``VisionEncoderDecoderModel``, VirTex-like) under ``directory/vit-gpt2``."""

    def build() -> tuple[Any, Any]:
        from transformers import GPT2Config, ViTConfig, ViTImageProcessorPil, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

        tokenizer = _byte_level((_GPT2_TOKEN,), bos_token=_GPT2_TOKEN, eos_token=_GPT2_TOKEN, pad_token=_GPT2_TOKEN,
                                unk_token=_GPT2_TOKEN)
        side = TINY_IMAGE_SIZE
        image_processor = ViTImageProcessorPil(size={"height": side, "width": side})
        token = tokenizer.get_vocab()[_GPT2_TOKEN]
        encoder = ViTConfig(**_vision())
        decoder = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64, vocab_size=len(tokenizer),
                             bos_token_id=token, eos_token_id=token, initializer_range=_INITIALIZER_RANGE)
        config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = token
        return VisionEncoderDecoderModel(config=config), ImageProcessorAndTokenizer(image_processor, tokenizer)

    return tiny_checkpoint_written(directory, "vit-gpt2", build)


def tiny_idefics_write(directory: str | Path) -> Path:
    """Idefics v1 (``IdeficsForVisionText2Text``) under ``directory/idefics``: a cross-attention block
    after every LM layer, no perceiver resampler.

    Its gates start at ``alpha_initializer``: "zeros" would shut the image out and "normal" raises
    with float gates, so they start open ("ones").
    """

    def build() -> tuple[Any, Any]:
        from transformers import IdeficsConfig, IdeficsForVisionText2Text, IdeficsImageProcessorPil, IdeficsProcessor

        tokenizer = _byte_level(("<s>", "</s>", "<unk>", "<fake_token_around_image>", "<image>", "<end_of_utterance>"),
                                bos_token="<s>", eos_token="</s>", pad_token="<unk>", unk_token="<unk>")
        side = TINY_IMAGE_SIZE
        processor = IdeficsProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=IdeficsImageProcessorPil(image_size=side), tokenizer=tokenizer, image_size=side)
        vision = {"embed_dim": 32, "image_size": side, "patch_size": TINY_PATCH, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "intermediate_size": 64}
        config = IdeficsConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, cross_layer_interval=1, vision_config=vision,
                               perceiver_config={"use_resampler": False}, alpha_initializer="ones",
                               initializer_range=_INITIALIZER_RANGE, max_position_embeddings=256,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
        return IdeficsForVisionText2Text(config), processor

    return tiny_checkpoint_written(directory, "idefics", build)
