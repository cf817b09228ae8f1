"""Tests for the generator families beside SmolVLM (BLIP, BLIP-2, GIT, ViT+GPT-2, Idefics v1): the engine's greedy tokens are transformers' own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.vlm_engine.sample_images import image_bytes
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.generators import (BLIP2_QUESTION, Blip2Generator, BlipAnswerer, BlipCaptioner, GitGenerator,
                                   IdeficsGenerator, QuestionsUnanswered, TaskGenerator, VisionEncoderDecoderGenerator,
                                   idefics_prompt)
from vlm_engine.registry import UnknownFamily, family_names, role_create
from vlm_engine.tiny_verifier import tiny_verifier_write
from vlm_engine.tiny_generators import (tiny_blip2_write, tiny_blip_vqa_write, tiny_blip_write, tiny_git_write,
                                        tiny_idefics_write, tiny_vit_gpt2_write)
from vlm_engine.types import EngineInputError, Policy, PostInput

pytestmark = pytest.mark.slow

TOKENS = 6
WRITERS: dict[str, Callable[[str | Path], Path]] = {
    "blip": tiny_blip_write, "blip-vqa": tiny_blip_vqa_write, "git": tiny_git_write, "vit-gpt2": tiny_vit_gpt2_write,
    "blip-2": tiny_blip2_write, "idefics": tiny_idefics_write}
# Prefixes and questions of different token lengths, so a batch mixes lengths.
PREFIXES: list[str | None] = [None, "a photo of", None, "a"]
QUESTIONS = ["is there a cat?", "what", "is this a gun or a knife?", "who"]


@pytest.fixture(scope="module")
def tiny_generators_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-generators")
    for write in WRITERS.values():
        write(directory)
    return directory


@pytest.fixture(scope="module")
def loaded(tiny_generators_dir: Path) -> dict[str, Any]:
    return {name: role_create("generator", str(tiny_generators_dir / name), local_files_only=True)
            for name in WRITERS}


def _images() -> list[Image.Image]:
    sizes = [(40, 30), (20, 50), (32, 32), (64, 48)]
    return [Image.open(BytesIO(image_bytes(size, seed=seed))).convert("RGB") for seed, size in enumerate(sizes)]


def test_the_families_are_registered_generators() -> None:
    assert {"idefics3", "smolvlm", "blip", "git", "vision-encoder-decoder", "blip-2", "idefics"} <= set(family_names("generator"))


def test_each_checkpoint_loads_as_its_adapter(loaded: dict[str, Any]) -> None:
    kinds = {name: type(role) for name, role in loaded.items()}
    assert kinds == {"blip": BlipCaptioner, "blip-vqa": BlipAnswerer, "git": GitGenerator,
                     "vit-gpt2": VisionEncoderDecoderGenerator, "blip-2": Blip2Generator, "idefics": IdeficsGenerator}
    assert {name: (role.answers_questions, role.instructed) for name, role in loaded.items()} == {
        "blip": (False, False), "blip-vqa": (True, False), "git": (True, False), "vit-gpt2": (False, False),
        "blip-2": (True, False), "idefics": (True, True)}
    assert not any(role.real for role in loaded.values())


@pytest.mark.parametrize(("family", "head"), [("blip", "BlipForImageTextRetrieval"),
                                              ("blip-2", "Blip2ForImageTextRetrieval")])
def test_a_matching_checkpoint_of_the_same_model_type_is_no_generator(tmp_path: Path, family: str, head: str) -> None:
    itm = tiny_verifier_write(tmp_path, family)
    with pytest.raises(UnknownFamily, match=f"is a {head} checkpoint; the {family} generator takes"):
        role_create("generator", str(itm), local_files_only=True)


def _decoded(tokenizer: Any, sequence: Any) -> str:
    return str(tokenizer.decode(sequence, skip_special_tokens=True)).strip()


def _reference_caption(name: str, role: TaskGenerator, image: Image.Image, prefix: str | None) -> str:
    """What transformers' own greedy generate says, one image at a time, as its documentation calls it."""
    model, processor = role.model, role.processor
    if name in ("blip", "blip-2"):
        inputs = processor(images=image, text=prefix, return_tensors="pt")
        return _decoded(processor.tokenizer, model.generate(**inputs, do_sample=False, max_new_tokens=TOKENS)[0])
    pixels = processor.image_processor(images=image, return_tensors="pt").pixel_values
    if prefix is None:
        return _decoded(processor.tokenizer, model.generate(pixel_values=pixels, do_sample=False,
                                                            max_new_tokens=TOKENS)[0])
    start = model.config.decoder_start_token_id if name == "vit-gpt2" else processor.tokenizer.cls_token_id
    ids = [[start, *processor.tokenizer(prefix, add_special_tokens=False).input_ids]]
    import torch

    key = "decoder_input_ids" if name == "vit-gpt2" else "input_ids"
    output = model.generate(pixel_values=pixels, **{key: torch.tensor(ids)}, do_sample=False, max_new_tokens=TOKENS)
    return _decoded(processor.tokenizer, output[0])


@pytest.mark.parametrize("name", ["blip", "git", "vit-gpt2", "blip-2"])
def test_captions_equal_transformers_generate(loaded: dict[str, Any], name: str) -> None:
    role, images = loaded[name], _images()
    expected = [_reference_caption(name, role, image, prefix) for image, prefix in zip(images, PREFIXES)]
    captions = role.caption(images, PREFIXES, max_new_tokens=TOKENS)
    assert captions == expected
    assert len(set(captions)) == len(captions) and all(captions)  # random weights, yet a real comparison
    assert captions[1].startswith("a photo of")  # a conditional caption keeps its prefix
    one_by_one = [role.caption([image], [prefix], max_new_tokens=TOKENS)[0] for image, prefix in zip(images, PREFIXES)]
    assert captions == one_by_one


def _reference_answer(name: str, role: TaskGenerator, image: Image.Image, question: str) -> str:
    import torch

    model, processor = role.model, role.processor
    if name == "blip-vqa":
        inputs = processor(images=image, text=question, return_tensors="pt")
        return _decoded(processor.tokenizer, model.generate(**inputs, do_sample=False, max_new_tokens=TOKENS)[0])
    if name == "blip-2":
        inputs = processor(images=image, text=BLIP2_QUESTION.format(question=question), return_tensors="pt")
        output = model.generate(**inputs, do_sample=False, max_new_tokens=TOKENS)
        return _decoded(processor.tokenizer, output[0, inputs.input_ids.shape[1]:])
    pixels = processor(images=image, return_tensors="pt").pixel_values
    ids = torch.tensor([[processor.tokenizer.cls_token_id, *processor(text=question, add_special_tokens=False).input_ids]])
    output = model.generate(pixel_values=pixels, input_ids=ids, do_sample=False, max_new_tokens=TOKENS)
    return _decoded(processor.tokenizer, output[0, ids.shape[1]:])


@pytest.mark.parametrize("name", ["blip-vqa", "git", "blip-2"])
def test_answers_equal_transformers_generate(loaded: dict[str, Any], name: str) -> None:
    role, images = loaded[name], _images()
    expected = [_reference_answer(name, role, image, question) for image, question in zip(images, QUESTIONS)]
    answers = role.answer(images, QUESTIONS, max_new_tokens=TOKENS)
    assert answers == expected
    assert len(set(answers)) >= 3 and all(answers)  # the outputs depend on image and question
    assert answers == [role.answer([image], [question], max_new_tokens=TOKENS)[0]
                       for image, question in zip(images, QUESTIONS)]
    assert role.generate(images, QUESTIONS, max_new_tokens=TOKENS) == answers  # no instructions: prompts are questions


def test_blip_vqa_captions_by_asking_what_is_pictured(loaded: dict[str, Any]) -> None:
    role, images = loaded["blip-vqa"], _images()[:2]
    asked = role.answer(images, ["what is in the picture?"] * 2, max_new_tokens=TOKENS)
    assert role.caption(images, [None, "a photo of"], max_new_tokens=TOKENS) == asked


@pytest.mark.parametrize(("name", "family"), [("blip", "blip"), ("vit-gpt2", "vit-gpt2")])
def test_a_pure_captioner_answers_no_questions(loaded: dict[str, Any], name: str, family: str) -> None:
    with pytest.raises(QuestionsUnanswered, match=f"^{family} answers no questions$"):
        loaded[name].answer(_images()[:1], ["is there a cat?"])
    with pytest.raises(QuestionsUnanswered):
        loaded[name].generate(_images()[:1], ["Describe this image in one sentence."])


def test_idefics_generates_as_transformers_does(loaded: dict[str, Any]) -> None:
    role, images = loaded["idefics"], _images()[:3]
    prompts = ["Describe this image in one sentence.", "Is there a cat?", "Is this a gun or a knife in a photo?"]
    expected = []
    for image, prompt in zip(images, prompts):
        inputs = role.processor(text=[idefics_prompt(image, prompt)], add_end_of_utterance_token=False,
                                return_tensors="pt")
        output = role.model.generate(**inputs, do_sample=False, max_new_tokens=TOKENS)
        expected.append(_decoded(role.processor.tokenizer, output[0, inputs.input_ids.shape[1]:]))
    answers = role.generate(images, prompts, max_new_tokens=TOKENS)  # one left-padded batch
    assert answers == expected
    assert len(set(answers)) == 3 and all(answers)
    assert role.answer(images, prompts, max_new_tokens=TOKENS) == answers


def _engine(tiny_dir: Path, generator: Path) -> Engine:
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", verifier="",
                                      generator=str(generator), look_closer=0.0)
    return Engine.from_config(config)


def test_the_engine_captions_with_a_captioner_and_says_it_cannot_answer(
    tiny_dir: Path, tiny_generators_dir: Path, loaded: dict[str, Any], policy: Policy
) -> None:
    engine = _engine(tiny_dir, tiny_generators_dir / "vit-gpt2")
    posts = [PostInput(key=f"p{seed}", image=image_bytes((32, 32), seed=seed)) for seed in range(2)]
    images = [Image.open(BytesIO(post.image or b"")).convert("RGB") for post in posts]
    expected = loaded["vit-gpt2"].caption(images, [None, "a photo of"], max_new_tokens=engine.config.max_new_tokens)
    assert engine.caption([(posts[0], None), (posts[1], "a photo of")]) == expected
    assert engine.questions_unanswered() == "vit-gpt2 answers no questions"
    assert engine.roles_real() == {"embedder": False, "generator": False}  # a captioner is no "vlm" reader
    with pytest.raises(EngineInputError) as raised:
        engine.ask([(posts[0], "is there a cat?")])
    assert (raised.value.code, raised.value.key, raised.value.message) == (
        "role_unavailable", "p0", "vit-gpt2 answers no questions")
    analysis = engine.analyze(posts[:1], policy)[0]
    assert (analysis.caption, analysis.answers, analysis.rationale) == (expected[0], (), None)


def test_the_engine_asks_a_vqa_family_the_policy_questions(
    tiny_dir: Path, tiny_generators_dir: Path, loaded: dict[str, Any], policy: Policy
) -> None:
    engine = _engine(tiny_dir, tiny_generators_dir / "git")
    post = PostInput(key="p", image=image_bytes((32, 32), seed=5))
    image = Image.open(BytesIO(post.image or b"")).convert("RGB")
    questions = ["is there a gun?", "is there blood?"]
    asked = Policy(version=policy.version, benign_prompts=policy.benign_prompts,
                   categories=(replace(policy.categories[0], questions=tuple(questions)), *policy.categories[1:]))
    role, tokens = loaded["git"], engine.config.max_new_tokens
    assert engine.questions_unanswered() is None
    assert [a.answer for a in engine.ask([(post, q) for q in questions])] == role.answer([image] * 2, questions,
                                                                                        max_new_tokens=tokens)
    analysis = engine.analyze([post], asked)[0]
    assert analysis.caption == role.caption([image], [None], max_new_tokens=tokens)[0]
    assert [(a.question, a.answer) for a in analysis.answers] == list(zip(
        questions, role.answer([image] * 2, questions, max_new_tokens=tokens)))
    assert analysis.rationale is None  # no instructions followed: no rationale argued
