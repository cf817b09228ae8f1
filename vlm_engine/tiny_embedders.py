"""Tiny random-weight checkpoints of the embedder families other than CLIP, built offline.

Each writer puts one family's checkpoint under ``directory/<family>`` (unless it is complete
there already) and returns that path; it loads with ``from_pretrained`` like a hub checkpoint.
Tokenizers are built from a literal vocabulary (no sentencepiece model, no download):
WordPiece for the BERT text towers (ALIGN, ChineseCLIP, FLAVA), a Unigram list for AltCLIP's
XLM-R, the tiny CLIP BPE for SigLIP, and a Gemma-style BPE for SigLIP2 (``AutoTokenizer``
always builds a ``Siglip2Tokenizer`` for siglip2 checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_engine.tiny import TINY_IMAGE_SIZE, TINY_WORDS, tiny_checkpoint_written

TINY_PATCH = 8
TINY_PROJECTION = 32
# Small widths keep each model a few hundred kB; two layers so attention mixes tokens.
_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
# ALIGN's logits are cosine / temperature; at the default 1.0 tiny probabilities are all but uniform.
ALIGN_TEMPERATURE = 0.05
# log(10) and -2: a cosine of 0.2 is a logit of 0, so tiny SigLIP probabilities spread around 0.5.
SIGMOID_LOGIT_SCALE = 2.302585092994046
SIGMOID_LOGIT_BIAS = -2.0
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _wordpiece_vocab() -> dict[str, int]:
    """[PAD]=0 … [MASK]=4, the tiny words, then single characters and their ## continuations."""
    tokens = [*_BERT_SPECIALS, *TINY_WORDS, *_LETTERS, *(f"##{char}" for char in _LETTERS), ".", ",", "'", "!", "?"]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def _bert_tokenizer() -> Any:
    from transformers import BertTokenizer

    return BertTokenizer(vocab=_wordpiece_vocab(), model_max_length=64)


def _bert_text_config(vocab_size: int) -> dict[str, Any]:
    return {**_TOWER, "vocab_size": vocab_size, "max_position_embeddings": 64, "pad_token_id": 0}


def _clip_image_processor() -> Any:
    from transformers import CLIPImageProcessorPil

    side = TINY_IMAGE_SIZE
    return CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})


def _vision_tower() -> dict[str, Any]:
    return {**_TOWER, "image_size": TINY_IMAGE_SIZE, "patch_size": TINY_PATCH}


def tiny_siglip_write(directory: str | Path) -> Path:
    """SigLIP: ViT towers with an attention-pooling head; text pooled at the last of 64 fixed positions."""

    def build() -> tuple[Any, Any]:
        from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

        from vlm_engine.tiny import _tiny_processor

        tokenizer = _tiny_processor().tokenizer
        tokenizer.model_max_length = 64
        side = TINY_IMAGE_SIZE
        processor = SiglipProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=SiglipImageProcessorPil(size={"height": side, "width": side}), tokenizer=tokenizer)
        text = {**_TOWER, "vocab_size": len(tokenizer), "max_position_embeddings": 64,
                "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id}
        config = SiglipConfig(text_config=text, vision_config=_vision_tower())
        return _sigmoid_calibrated(SiglipModel(config)), processor

    return tiny_checkpoint_written(directory, "siglip", build)


def _sigmoid_calibrated(model: Any) -> Any:
    """A scale and bias like a trained SigLIP's (both start at 0), so scale and bias are both exercised."""
    import torch

    with torch.no_grad():
        model.logit_scale.fill_(SIGMOID_LOGIT_SCALE)
        model.logit_bias.fill_(SIGMOID_LOGIT_BIAS)
    return model


def _siglip2_tokenizer() -> Any:
    """A Gemma-style BPE over the tiny words: each is one token, other text falls back to characters."""
    from transformers import Siglip2Tokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    chars = sorted({char for word in TINY_WORDS for char in word} | set(_LETTERS) | {"▁"})
    merges: list[tuple[str, str]] = []
    words: list[str] = []
    for word in TINY_WORDS:
        piece = "▁" + word[0]
        if ("▁", word[0]) not in merges:
            merges.append(("▁", word[0]))
        for char in word[1:]:
            if (piece, char) not in merges:
                merges.append((piece, char))
            piece += char
            words.append(piece)
    tokens = [*specials, *chars, *(left + right for left, right in merges), *words]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return Siglip2Tokenizer(vocab=vocab, merges=merges,  # type: ignore[arg-type]  # the BPE takes merge pairs
                            model_max_length=64)


def tiny_siglip2_write(directory: str | Path) -> Path:
    """SigLIP2 (NaFlex): up to 16 patches of 8 px, so a 32 px square at most; text as SigLIP's."""

    def build() -> tuple[Any, Any]:
        from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model, Siglip2Processor

        tokenizer = _siglip2_tokenizer()
        image_processor = Siglip2ImageProcessorPil(patch_size=TINY_PATCH, max_num_patches=16)
        processor = Siglip2Processor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=image_processor, tokenizer=tokenizer)
        text = {**_TOWER, "vocab_size": len(tokenizer), "max_position_embeddings": 64,
                "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id}
        vision = {**_TOWER, "patch_size": TINY_PATCH, "num_patches": 16}
        return _sigmoid_calibrated(Siglip2Model(Siglip2Config(text_config=text, vision_config=vision))), processor

    return tiny_checkpoint_written(directory, "siglip2", build)


def tiny_align_write(directory: str | Path) -> Path:
    """ALIGN: a two-stage EfficientNet and a BERT; its pooled image features are the embedding, unprojected."""

    def build() -> tuple[Any, Any]:
        from transformers import AlignConfig, AlignModel, AlignProcessor, EfficientNetImageProcessorPil

        tokenizer = _bert_tokenizer()
        side = TINY_IMAGE_SIZE
        image_processor = EfficientNetImageProcessorPil(size={"height": side, "width": side},
                                                        crop_size={"height": side, "width": side})
        processor = AlignProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=image_processor, tokenizer=tokenizer)
        vision = {"image_size": side, "width_coefficient": 1.0, "depth_coefficient": 1.0, "hidden_dim": 32,
                  "kernel_sizes": [3, 3], "in_channels": [32, 16], "out_channels": [16, TINY_PROJECTION], "strides": [1, 2],
                  "num_block_repeats": [1, 1], "expand_ratios": [1, 2], "depthwise_padding": []}
        # The image embedding is the pooled last stage, unprojected: its width is the projection's.
        config = AlignConfig(text_config=_bert_text_config(len(tokenizer)), vision_config=vision,
                             projection_dim=TINY_PROJECTION, temperature_init_value=ALIGN_TEMPERATURE)
        return AlignModel(config), processor

    return tiny_checkpoint_written(directory, "align", build)


def _unigram_vocab() -> list[tuple[str, float]]:
    """XLM-R's specials at their usual ids, then the tiny words (▁-prefixed) and characters."""
    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [(f"▁{word}", -1.0) for word in dict.fromkeys(TINY_WORDS)]
    chars = [(char, -5.0) for char in _LETTERS] + [("▁", -3.0)]
    return [*specials, *words, *chars, ("<mask>", 0.0)]


def tiny_altclip_write(directory: str | Path) -> Path:
    """AltCLIP: CLIP's vision tower with an XLM-R text tower and its Unigram tokenizer."""

    def build() -> tuple[Any, Any]:
        from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, XLMRobertaTokenizer

        tokenizer = XLMRobertaTokenizer(vocab=_unigram_vocab(), model_max_length=64)
        processor = AltCLIPProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=_clip_image_processor(), tokenizer=tokenizer)
        text = {**_TOWER, "vocab_size": len(tokenizer), "max_position_embeddings": 66, "pad_token_id": 1,
                "bos_token_id": 0, "eos_token_id": 2, "project_dim": TINY_PROJECTION}
        config = AltCLIPConfig(text_config=text, vision_config=_vision_tower(), projection_dim=TINY_PROJECTION)
        return AltCLIPModel(config), processor

    return tiny_checkpoint_written(directory, "altclip", build)


def tiny_chinese_clip_write(directory: str | Path) -> Path:
    """ChineseCLIP: CLIP's vision tower with a BERT text tower ([CLS] pooled)."""

    def build() -> tuple[Any, Any]:
        from transformers import ChineseCLIPConfig, ChineseCLIPImageProcessorPil, ChineseCLIPModel, ChineseCLIPProcessor

        tokenizer = _bert_tokenizer()
        side = TINY_IMAGE_SIZE
        image_processor = ChineseCLIPImageProcessorPil(size={"shortest_edge": side},
                                                       crop_size={"height": side, "width": side})
        processor = ChineseCLIPProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=image_processor, tokenizer=tokenizer)
        config = ChineseCLIPConfig(text_config=_bert_text_config(len(tokenizer)), vision_config=_vision_tower(),
                                   projection_dim=TINY_PROJECTION)
        return ChineseCLIPModel(config), processor

    return tiny_checkpoint_written(directory, "chinese_clip", build)


def tiny_flava_write(directory: str | Path) -> Path:
    """FLAVA: image, text and multimodal ViT encoders, a BERT tokenizer, and a tiny image codebook."""

    def build() -> tuple[Any, Any]:
        from transformers import FlavaConfig, FlavaImageProcessorPil, FlavaModel, FlavaProcessor

        tokenizer = _bert_tokenizer()
        side = TINY_IMAGE_SIZE
        image_processor = FlavaImageProcessorPil(size={"height": side, "width": side},
                                                 crop_size={"height": side, "width": side})
        processor = FlavaProcessor(  # type: ignore[no-untyped-call]  # unannotated in transformers
            image_processor=image_processor, tokenizer=tokenizer)
        config = FlavaConfig(
            image_config=_vision_tower(), text_config=_bert_text_config(len(tokenizer)),
            multimodal_config={**_TOWER}, image_codebook_config={"hidden_size": 16, "num_groups": 1,
                                                                   "num_blocks_per_group": 1, "vocab_size": 64},
            hidden_size=32, projection_dim=TINY_PROJECTION,
        )
        return FlavaModel(config), processor

    return tiny_checkpoint_written(directory, "flava", build)

