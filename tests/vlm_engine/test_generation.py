"""Tests for the generator role and its tiny Idefics3 checkpoint: batched greedy generation, as transformers does it."""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.vlm_engine.sample_images import image_bytes
from tests.vlm_engine.test_imports import _imported_after
from vlm_engine.generation import PROMPTS, GeneratorRole, conditional_caption_prompt
from vlm_engine.tiny_generator import IMAGE_SEQ_LEN, tiny_generator_write

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_generator_write(tmp_path_factory.mktemp("tiny-generator"))


@pytest.fixture(scope="session")
def generator(tiny_generator_dir: Path) -> GeneratorRole:
    return GeneratorRole.load(str(tiny_generator_dir), device="cpu", dtype="float32", local_files_only=True)


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.open(BytesIO(image_bytes(size, seed=seed)))


def _pipeline_answer(pipe: Any, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
    chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
    generate_kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens}
    result = pipe(text=chat, generate_kwargs=generate_kwargs, return_full_text=False)
    return str(result[0]["generated_text"]).strip()


def test_generate_matches_the_transformers_pipeline(generator: GeneratorRole, tiny_generator_dir: Path) -> None:
    from transformers import pipeline

    images = [_image((40, 30), seed=1), _image((20, 50), seed=2)]
    # Prompts of different lengths, so the batch really is left-padded.
    prompts = [PROMPTS["caption"], "Is there a cat?"]
    pipe = pipeline("image-text-to-text", model=str(tiny_generator_dir))
    expected = [_pipeline_answer(pipe, image, prompt, 8) for image, prompt in zip(images, prompts)]
    answers = generator.generate(images, prompts, max_new_tokens=8)
    assert answers == expected
    assert len(set(answers)) == 2 and all(answers)  # random weights, yet a real comparison


def test_generate_batch_is_one_generate_call_and_one_vision_forward(
    generator: GeneratorRole, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _image((32, 32), seed=3)
    generate_calls: list[int] = []
    vision_batches: list[int] = []
    real_generate = generator.model.generate

    def generate_spy(**kwargs: Any) -> Any:
        generate_calls.append(int(kwargs["input_ids"].shape[0]))
        return real_generate(**kwargs)

    monkeypatch.setattr(generator.model, "generate", generate_spy)
    hook = generator.model.model.vision_model.register_forward_hook(
        lambda module, args, output: vision_batches.append(int(output.last_hidden_state.shape[0]))
    )
    try:
        answers = generator.generate([image, image, _image((48, 24), seed=4)], ["a", "b", "c"], max_new_tokens=4)
    finally:
        hook.remove()
    assert len(answers) == 3
    assert generate_calls == [3]
    assert vision_batches == [2]  # the image asked about twice is encoded once


def test_generate_batched_equals_one_by_one(generator: GeneratorRole) -> None:
    images = [_image((40, 30), seed=5), _image((30, 40), seed=6), _image((40, 30), seed=5)]
    prompts = ["Is there a cat?", PROMPTS["ocr"], conditional_caption_prompt("a photo of")]
    one_by_one = [generator.generate([image], [prompt], max_new_tokens=6)[0] for image, prompt in zip(images, prompts)]
    assert generator.generate(images, prompts, max_new_tokens=6) == one_by_one


def test_generate_answer_depends_on_the_image(generator: GeneratorRole) -> None:
    images = [_image((32, 32), seed=7), _image((32, 32), seed=8)]
    first, second = generator.generate(images, [PROMPTS["caption"]] * 2, max_new_tokens=6)
    assert first != second


def test_generate_returns_plain_strings(generator: GeneratorRole) -> None:
    answers = generator.generate([_image((32, 32), seed=9)], ["What is this?"], max_new_tokens=4)
    assert [type(answer) for answer in answers] == [str]
    assert answers[0] == answers[0].strip()


def test_generate_empty_batch_returns_empty_list(generator: GeneratorRole) -> None:
    assert generator.generate([], []) == []


def test_generate_rejects_images_and_prompts_of_different_lengths(generator: GeneratorRole) -> None:
    with pytest.raises(ValueError, match="^1 images but 2 prompts$"):
        generator.generate([_image((32, 32), seed=0)], ["a", "b"])


def test_version_names_checkpoint_and_config(generator: GeneratorRole, tiny_generator_dir: Path) -> None:
    sha = hashlib.sha256((tiny_generator_dir / "config.json").read_bytes()).hexdigest()[:12]
    assert generator.version == f"vlm:generator@{sha}"


def test_tiny_generator_loads_through_auto_classes(tiny_generator_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor, Idefics3ForConditionalGeneration

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_generator_dir))
    processor = AutoProcessor.from_pretrained(str(tiny_generator_dir))
    assert type(model) is Idefics3ForConditionalGeneration
    assert type(processor).__name__ == "Idefics3Processor"
    assert type(processor.image_processor).__name__ == "Idefics3ImageProcessorPil"
    assert type(processor.tokenizer).__name__ == "TokenizersBackend"
    assert model.config.image_token_id == processor.image_token_id
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert model.generation_config.eos_token_id == processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>")


def test_tiny_generator_chat_template_and_image_tokens(tiny_generator_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_generator_dir))
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it a cat?"}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert text == "<|im_start|>User:<image>Is it a cat?<end_of_utterance>\nAssistant:"
    inputs = processor(text=[text], images=[[_image((50, 20), seed=0)]], return_tensors="pt")
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    image_part = ["<fake_token_around_image>", "<global-img>", *["<image>"] * IMAGE_SEQ_LEN, "<fake_token_around_image>"]
    assert tokens[: 6 + len(image_part)] == ["<|im_start|>", "U", "s", "e", "r</w>", ":</w>", *image_part]
    assert IMAGE_SEQ_LEN == 4
    assert tuple(inputs["pixel_values"].shape) == (1, 1, 3, 32, 32)


def test_tiny_generator_tokenizer_is_lossless(tiny_generator_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_generator_dir))
    text = "A photo of a cat,  Ünïcode 猫\nnew line"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_ids_to_tokens(tokenizer("a cat")["input_ids"]) == ["a</w>", "Ġ", "cat</w>"]


def test_tiny_generator_is_deterministic_and_idempotent(tiny_generator_dir: Path, tmp_path: Path) -> None:
    again = tiny_generator_write(tmp_path)
    assert again == tmp_path / "generator"
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_generator_dir / name).read_bytes(), name
    mtime = (again / "model.safetensors").stat().st_mtime_ns
    assert tiny_generator_write(tmp_path) == again
    assert (again / "model.safetensors").stat().st_mtime_ns == mtime


def test_prompts() -> None:
    assert PROMPTS["caption"] == "Describe this image in one sentence."
    assert PROMPTS["ocr"] == "Read all the text written in this image. Answer with the text only."
    assert conditional_caption_prompt(" a photo of ") == (
        'Describe this image in one sentence that starts with "a photo of".'
    )


@pytest.mark.parametrize("module", ["vlm_engine.generation", "vlm_engine.tiny_generator"])
def test_generator_modules_import_neither_torch_nor_the_web_side(module: str) -> None:
    assert _imported_after([module], ["torch", "django", "celery", "moderation", "workers"]) == []

