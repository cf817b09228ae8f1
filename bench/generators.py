"""Full-size random-weight shapes of the generator families and of MaGiC, and their rows in bench/engine.py.

As bench/families.py does for the embedders, each shape is the published checkpoint's (towers,
widths, depths, heads, input side) applied to the family's tiny checkpoint
(`vlm_engine.tiny_generators`, `vlm_engine.tiny_magic`): its config is widened, its image
processor set to the published input size, its tiny tokenizer and its initializer kept (so the
LM head is (hidden x 72-715) rather than (hidden x 30-50k): each new token costs less than the
published model's, on both sides alike). The model is built in memory, fp32, never written.
Two shapes are not the published ones: BLIP-2 pairs its published ViT-g/14 and Q-Former
(Salesforce/blip2-opt-2.7b) with OPT-125m's decoder instead of OPT-2.7b's, and Idefics v1 keeps
HuggingFaceM4/idefics-9b's widths (ViT-H/14, the perceiver resampler, LLaMA-7B layers, a gated
cross-attention block every 4th layer) at 4 of its 32 language-model layers: the full models
(3.8 B and 9 B parameters) do not run a row in minutes on two CPU cores.

A row runs the same posts through both sides with the same greedy settings (no sampling, one
beam, `max_new_tokens` new tokens):
- engine: `Engine.caption` once for every caption the family serves (plain, and continuing
  "a photo of" where it captions from a prefix) over all the posts, and `Engine.ask` once with a
  question per post where it answers questions: one batched call each;
- reference: per post, at batch 1, the image decoded with PIL and transformers' own
  ``model.generate`` called as the family's model card shows, once per caption and question.
The sides alternate `repeats` times; each is timed at its best, in wall and in this process's
CPU seconds (the latter moves less when others share the machine). The row says whether the two
sides' greedy tokens are identical: their texts post by post, and the token ids each side's
texts were decoded from (`decoded_tokens`).

MaGiC has no transformers implementation to compare with: its reference is its language model's
own greedy ``generate`` per post (what MaGiC reduces to with its image and degeneration weights
at 0), so the row's ratio is the price of the image's steering (k candidates through the LM and
the embedder at each step), not an engine speed-up. The row checks that reduction too: the
engine's MaGiC with both weights at 0 gives the reference's tokens.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import ratio
from bench.families import config_widened

CONDITIONAL_PREFIX = "a photo of"
# --quick's posts: small enough that the engine, whose draft side is twice the tiny embedder's 32 px,
# decodes them whole, as the reference does, so both sides see the same pixels.
QUICK_IMAGE_SIZE = (64, 48)

_VIT_B16 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
_BERT_BASE = {**_VIT_B16, "max_position_embeddings": 512}
_GPT2_BASE = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": 3072, "n_positions": 1024}
_BLIP_384 = ({"vision_config": {**_VIT_B16, "image_size": 384, "patch_size": 16},
              "text_config": {**_BERT_BASE, "encoder_hidden_size": 768}},
             {"size": {"height": 384, "width": 384}})


@dataclass(frozen=True)
class GeneratorShape:
    """A row's published checkpoint, what its config and processors become, and what the row asks."""

    checkpoint: str  # the hub id whose shape is copied (with a note where it is not the whole shape)
    config: dict[str, Any]  # config attribute -> value, or sub-config name -> {attribute: value}
    image_processor: dict[str, Any]
    captions: tuple[str | None, ...] = (None,)  # prefixes asked of `Engine.caption`, None for a plain caption
    answers: bool = False  # whether `Engine.ask` asks each post a question
    processor: dict[str, Any] = field(default_factory=dict)  # joint-processor attributes


GENERATOR_SHAPES: dict[str, GeneratorShape] = {
    "blip": GeneratorShape("Salesforce/blip-image-captioning-base", *_BLIP_384, captions=(None, CONDITIONAL_PREFIX)),
    "blip-vqa": GeneratorShape("Salesforce/blip-vqa-base", *_BLIP_384, captions=(), answers=True),
    "git": GeneratorShape(
        "microsoft/git-base",
        {"vision_config": {**_VIT_B16, "image_size": 224, "patch_size": 16}, **_VIT_B16, "num_hidden_layers": 6,
         "max_position_embeddings": 1024},
        {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}, answers=True),
    "blip-2": GeneratorShape(
        "Salesforce/blip2-opt-2.7b with facebook/opt-125m as its LM",
        {"vision_config": {"hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39,
                           "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
         "qformer_config": {**_BERT_BASE, "encoder_hidden_size": 1408, "cross_attention_frequency": 2},
         "text_config": {"hidden_size": 768, "ffn_dim": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                         "word_embed_proj_dim": 768, "max_position_embeddings": 2048},
         "num_query_tokens": 32},
        {"size": {"height": 224, "width": 224}}, answers=True, processor={"num_query_tokens": 32}),
    "idefics": GeneratorShape(
        "HuggingFaceM4/idefics-9b at 4 of its 32 LM layers",
        {"vision_config": {"embed_dim": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                           "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
         "perceiver_config": {"use_resampler": True, "resampler_n_latents": 64, "resampler_depth": 6,
                              "resampler_n_heads": 16, "resampler_head_dim": 96},
         "use_resampler": True, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 4,
         "num_attention_heads": 32, "cross_layer_interval": 4},
        {"size": {"height": 224, "width": 224}, "image_size": 224}, answers=True),
    "vit-gpt2": GeneratorShape(
        "nlpconnect/vit-gpt2-image-captioning",
        {"encoder": {**_VIT_B16, "image_size": 224, "patch_size": 16}, "decoder": _GPT2_BASE},
        {"size": {"height": 224, "width": 224}}, captions=(None, CONDITIONAL_PREFIX)),
    # GPT-2 base steered by CLIP ViT-B/32 (bench.architectures.CLIP_B32), with the MaGiC paper's k, alpha, beta.
    "magic": GeneratorShape("gpt2 + openai/clip-vit-base-patch32", _GPT2_BASE, {}),
}


def _tiny_writers() -> dict[str, Callable[[str | Path], Path]]:
    from vlm_engine.tiny_generators import (tiny_blip2_write, tiny_blip_vqa_write, tiny_blip_write, tiny_git_write,
                                            tiny_idefics_write, tiny_vit_gpt2_write)
    from vlm_engine.tiny_magic import tiny_causal_lm_write

    return {"blip": tiny_blip_write, "blip-vqa": tiny_blip_vqa_write, "git": tiny_git_write,
            "blip-2": tiny_blip2_write, "idefics": tiny_idefics_write, "vit-gpt2": tiny_vit_gpt2_write,
            "magic": tiny_causal_lm_write}


def embedder_build(tiny_dir: Path, *, full_size: bool) -> Any:
    """The engine's embedder in every row, and MaGiC's: CLIP B/32 at random weights (the tiny CLIP with --quick)."""
    from vlm_engine.registry import families, role_create

    family = families("embedder")["clip"]
    if not full_size:
        assert family.tiny is not None
        return role_create("embedder", str(family.tiny(tiny_dir)), local_files_only=True)
    from bench.architectures import CLIP_B32, clip_build

    model, processor = clip_build(CLIP_B32)
    return family.adapter(model.eval(), processor, version="clip:bench", device="cpu", real=False)


def generator_build(name: str, tiny_dir: Path, embedder: Any, *, full_size: bool) -> Any:
    """The row's generator role: its tiny checkpoint's adapter, over the widened model if `full_size`."""
    from vlm_engine.magic import MagicDecoder, MagicRole, MagicSettings
    from vlm_engine.registry import role_create

    path = _tiny_writers()[name](tiny_dir)
    if name == "magic":
        model, tokenizer = _causal_lm(path, full_size=full_size)
        decoder = MagicDecoder(model, tokenizer, embedder, settings=MagicSettings(), device="cpu")
        return MagicRole(decoder, version="magic:bench", real=False)
    tiny = role_create("generator", str(path), local_files_only=True)
    if not full_size:
        return tiny
    shape = GENERATOR_SHAPES[name]
    model = _widened(path, shape.config)
    # The ViT+GPT-2 adapter reads its image processor from the checkpoint (the model's name_or_path).
    processor = tiny.processor.tokenizer if name == "vit-gpt2" else tiny.processor
    role = type(tiny)(model, processor, version=f"{name}:bench", device="cpu", real=False)
    for key, value in shape.processor.items():
        setattr(role.processor, key, value)
    for key, value in shape.image_processor.items():
        setattr(role.processor.image_processor, key, value)
    return role


def _widened(path: Path, overrides: dict[str, Any]) -> Any:
    """The tiny checkpoint's model class over its config with `overrides`, random weights, fp32, eval mode."""
    import torch
    import transformers

    config = config_widened(path, overrides)
    torch.manual_seed(0)
    return getattr(transformers, config.architectures[0])(config).eval()


def _causal_lm(path: Path, *, full_size: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if full_size:
        return _widened(path, GENERATOR_SHAPES["magic"].config), tokenizer
    return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval(), tokenizer


class _Reference:
    """Transformers' own greedy ``generate``, one image and one prompt per call, as each model card calls it."""

    def __init__(self, name: str, role: Any, max_new_tokens: int) -> None:
        self.name = name
        self.max_new_tokens = max_new_tokens
        if name == "magic":
            self.model, self.processor = role.decoder.model, role.decoder.tokenizer
        else:
            self.model, self.processor = role.model, role.processor

    def caption(self, image: Image.Image, prefix: str | None) -> str:
        from vlm_engine.generation import PROMPTS, conditional_caption_prompt

        if self.name == "magic":
            return self._lm_greedy()
        if self.name == "idefics":
            return self._idefics(image, PROMPTS["caption"] if prefix is None else conditional_caption_prompt(prefix))
        if self.name in ("blip", "blip-2"):
            return self._decoded(self._generate(**self.processor(images=image, text=prefix, return_tensors="pt")))
        pixels = self.processor.image_processor(images=image, return_tensors="pt").pixel_values
        if prefix is None:
            return self._decoded(self._generate(pixel_values=pixels))
        tokenizer = self.processor.tokenizer
        start = self.model.config.decoder_start_token_id if self.name == "vit-gpt2" else tokenizer.cls_token_id
        ids = self._ids([start, *tokenizer(prefix, add_special_tokens=False).input_ids])
        return self._decoded(self._generate(pixel_values=pixels, **{
            "decoder_input_ids" if self.name == "vit-gpt2" else "input_ids": ids}))

    def answer(self, image: Image.Image, question: str) -> str:
        from vlm_engine.generators import BLIP2_QUESTION

        if self.name == "idefics":
            return self._idefics(image, question)
        if self.name == "blip-vqa":
            return self._decoded(self._generate(**self.processor(images=image, text=question, return_tensors="pt")))
        if self.name == "blip-2":
            inputs = self.processor(images=image, text=BLIP2_QUESTION.format(question=question), return_tensors="pt")
            return self._decoded(self._generate(**inputs), inputs.input_ids.shape[1])
        # GIT's VQA card: [CLS] + the question, continued; the answer follows the question.
        tokenizer = self.processor.tokenizer
        ids = self._ids([tokenizer.cls_token_id, *tokenizer(question, add_special_tokens=False).input_ids])
        pixels = self.processor.image_processor(images=image, return_tensors="pt").pixel_values
        return self._decoded(self._generate(pixel_values=pixels, input_ids=ids), ids.shape[1])

    def _idefics(self, image: Image.Image, prompt: str) -> str:
        from vlm_engine.generators import idefics_prompt

        inputs = self.processor(text=[idefics_prompt(image, prompt)], add_end_of_utterance_token=False,
                                return_tensors="pt")
        return self._decoded(self._generate(**inputs), inputs.input_ids.shape[1])

    def _lm_greedy(self) -> str:
        tokenizer = self.processor
        ids = self._ids([tokenizer.bos_token_id])
        return self._decoded(self._generate(input_ids=ids, attention_mask=ids.new_ones(ids.shape)))

    def _generate(self, **inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens)

    def _ids(self, ids: list[int]) -> Any:
        import torch

        return torch.tensor([ids])

    def _decoded(self, output: Any, start: int = 0) -> str:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return str(tokenizer.decode(output[0, start:], skip_special_tokens=True)).strip()


@contextmanager
def decoded_tokens(tokenizer: Any) -> Iterator[list[tuple[int, ...]]]:
    """Every token sequence `tokenizer` decodes into text within the block, its special tokens left out.

    Both sides' texts come from the same tokenizer's ``decode`` (``batch_decode`` calls it too), so
    the ids it is given are the greedy tokens each side's text is made of.
    """
    special = set(tokenizer.all_special_ids) | {
        index for index, token in tokenizer.added_tokens_decoder.items() if token.special}
    log: list[tuple[int, ...]] = []
    decode = tokenizer.decode

    def recording(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs["token_ids"] if "token_ids" in kwargs else args[0]
        rows = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        for row in rows if rows and isinstance(rows[0], list) else [rows]:
            log.append(tuple(int(index) for index in row if int(index) not in special))
        return decode(*args, **kwargs)

    tokenizer.decode = recording
    try:
        yield log
    finally:
        del tokenizer.decode


def _post_outputs(reference: _Reference, post: Any, shape: GeneratorShape, question: str) -> list[str]:
    """The reference's outputs for one post: decode, each caption, the question."""
    image = Image.open(io.BytesIO(post.image)).convert("RGB")
    outputs = [reference.caption(image, prefix) for prefix in shape.captions]
    return outputs + ([reference.answer(image, question)] if shape.answers else [])


def _engine_outputs(engine: Any, posts: Sequence[Any], shape: GeneratorShape, question: str) -> list[list[str]]:
    """One `Engine.caption` over every (post, prefix), one `Engine.ask` over every post; regrouped per post."""
    captions = engine.caption([(post, prefix) for post in posts for prefix in shape.captions])
    answers = [answer.answer for answer in engine.ask([(post, question) for post in posts])] if shape.answers else []
    per_post = len(shape.captions)
    return [captions[row * per_post:(row + 1) * per_post] + (answers[row:row + 1] if shape.answers else [])
            for row in range(len(posts))]


def generator_row(name: str, generator: Any, embedder: Any, posts: Sequence[Any], question: str, *,
                  max_new_tokens: int, repeats: int) -> dict[str, Any]:
    """Engine (batched calls) against the reference (per post, per prompt), same model, posts and settings."""
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine

    shape = GENERATOR_SHAPES[name]
    config = EngineConfig(profile="small", clip="bench", grounder="", generator="bench", reader="",
                          max_new_tokens=max_new_tokens, batch_size=8)
    engine = Engine(config, embedder, generator=generator)
    tokenizer = _tokenizer(generator)
    # Warm-up on one post and one new token a side, excluded from the timings.
    _engine_outputs(Engine(replace(config, max_new_tokens=1), embedder, generator=generator), posts[:1], shape,
                    question)
    reference = _Reference(name, generator, max_new_tokens)
    _post_outputs(_Reference(name, generator, 1), posts[0], shape, question)
    # The sides alternate, each timed at its best of `repeats`: a shared machine's load moves both alike.
    # Each sample is (wall s, this process's CPU s): the CPU time moves less with other work on the machine.
    samples: list[tuple[float, float]] = []
    reference_samples: list[tuple[float, float]] = []
    for _ in range(repeats):
        with decoded_tokens(tokenizer) as engine_tokens, _timed(samples):
            engine_outputs = _engine_outputs(engine, posts, shape, question)
        with decoded_tokens(tokenizer) as reference_tokens, _timed(reference_samples):
            reference_outputs = [_post_outputs(reference, post, shape, question) for post in posts]
    engine_s, reference_s = min(wall for wall, _ in samples), min(wall for wall, _ in reference_samples)
    engine_cpu_s, reference_cpu_s = min(cpu for _, cpu in samples), min(cpu for _, cpu in reference_samples)
    row = {"checkpoint_shape": shape.checkpoint, "parameters": _parameters(generator),
           "prompts_per_post": [*("caption" if prefix is None else f"caption: {prefix}" for prefix in shape.captions),
                                *(["question"] if shape.answers else [])],
           "engine_posts_per_s": len(posts) / engine_s, "reference_posts_per_s": len(posts) / reference_s,
           "ratio": ratio(len(posts) / engine_s, len(posts) / reference_s),
           "engine_cpu_s_per_post": engine_cpu_s / len(posts), "reference_cpu_s_per_post": reference_cpu_s / len(posts),
           "cpu_ratio": ratio(reference_cpu_s, engine_cpu_s),
           "samples_wall_cpu_s": {"engine": samples, "reference": reference_samples},
           "outputs": {"engine": engine_outputs, "reference": reference_outputs}}
    if name != "magic":
        row["reference"] = "transformers' model.generate per post and prompt, batch 1"
        # The engine decodes in its own grouping order: texts compared post by post, token sequences as a multiset.
        row["same_greedy_tokens"] = (engine_outputs == reference_outputs
                                     and sorted(engine_tokens) == sorted(reference_tokens))
        return row
    row["reference"] = "the language model's own greedy generate per post (no image)"
    row["magic_settings"] = vars(generator.decoder.settings)
    with decoded_tokens(tokenizer) as unweighted_tokens:
        unweighted = _magic_unweighted(generator, embedder, posts, config)
    row["weights_zero_equals_reference"] = (unweighted == [outputs[0] for outputs in reference_outputs]
                                            and unweighted_tokens == reference_tokens)
    return row


@contextmanager
def _timed(into: list[tuple[float, float]]) -> Iterator[None]:
    """Append the block's (wall seconds, process CPU seconds) to `into`."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append((time.perf_counter() - wall, time.process_time() - cpu))


def _tokenizer(generator: Any) -> Any:
    if hasattr(generator, "decoder"):
        return generator.decoder.tokenizer
    return getattr(generator.processor, "tokenizer", generator.processor)


def _magic_unweighted(generator: Any, embedder: Any, posts: Sequence[Any], config: Any) -> list[str]:
    """The engine's MaGiC captions with alpha = beta = 0 (same k): the LM's greedy output, if MaGiC is right."""
    from vlm_engine.engine import Engine
    from vlm_engine.magic import MagicDecoder, MagicRole

    decoder = generator.decoder
    settings = replace(decoder.settings, alpha=0.0, beta=0.0)
    plain = MagicRole(MagicDecoder(decoder.model, decoder.tokenizer, embedder, settings=settings, device="cpu"),
                      version="magic:bench-unweighted", real=False)
    return [str(caption) for caption in Engine(config, embedder, generator=plain).caption(
        [(post, None) for post in posts])]


def _parameters(generator: Any) -> int:
    model = generator.decoder.model if hasattr(generator, "decoder") else generator.model
    return sum(parameter.numel() for parameter in model.parameters())


def generators_rows(wanted: Sequence[str], tiny_dir: Path, posts: Sequence[Any], question: str, *,
                    full_size: bool, max_new_tokens: int, repeats: int) -> dict[str, Any]:
    """name -> row (or {"failed": reason}); each model is freed before the next is built."""
    import gc

    rows: dict[str, Any] = {}
    embedder = embedder_build(tiny_dir, full_size=full_size)
    for name in wanted:
        try:
            start = time.perf_counter()
            generator = generator_build(name, tiny_dir, embedder, full_size=full_size)
            built_s = time.perf_counter() - start
            rows[name] = {**generator_row(name, generator, embedder, posts, question, max_new_tokens=max_new_tokens,
                                          repeats=repeats), "build_s": built_s}
            del generator
        except (RuntimeError, ValueError, OSError) as err:
            rows[name] = {"failed": f"{type(err).__name__}: {err}"}
        gc.collect()
    return rows
