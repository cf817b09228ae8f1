"""Tests for the cascade: one pass per role per batch, the look-closer step, and the ad-hoc calls."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.vlm_engine.sample_images import image_bytes
from vlm_engine.cascade import classifier_text
from vlm_engine.clip import ClipRole
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.generation import PROMPTS, GeneratorRole, conditional_caption_prompt
from vlm_engine.grounding import GrounderRole
from vlm_engine.imaging import image_decode
from vlm_engine.types import Answer, Category, EngineInputError, Policy, PostInput

pytestmark = pytest.mark.slow

QUESTIONS = ["Is anyone hurt?", "Is there a weapon?", "Is this an advert?"]
PHRASES = ["a knife", "a gun", "a phone number"]
OCR = "FREE MONEY CALL NOW"
Roles = tuple[ClipRole, GrounderRole, GeneratorRole]


def _policy(review_threshold: float = 0.0) -> Policy:
    """Two categories sharing a phrase and a question, so both are deduplicated."""
    return Policy(
        version="cascade-1",
        categories=(
            Category(
                slug="violence",
                name="Violence",
                prompts=("a photo of violence", "blood and gore"),
                phrases=("a knife", "a gun"),
                questions=("Is anyone hurt?", "Is there a weapon?"),
                review_threshold=review_threshold,
            ),
            Category(
                slug="spam",
                name="Spam",
                prompts=("an advert for a scam",),
                phrases=("a gun", "a phone number"),
                questions=("Is there a weapon?", "Is this an advert?"),
                review_threshold=review_threshold,
            ),
        ),
        benign_prompts=("a normal everyday photo",),
    )


def _posts(count: int = 4) -> list[PostInput]:
    return [PostInput(key=f"p{i}", image=image_bytes((40 + i, 32), seed=i), text=f"post {i}") for i in range(count)]


@pytest.fixture(scope="module")
def roles(tiny_dir: Path) -> Roles:
    """The three tiny roles, loaded once; each test wraps them in a fresh Engine."""
    options: dict[str, Any] = {"device": "cpu", "dtype": "float32", "local_files_only": True}
    return (
        ClipRole.load(str(tiny_dir / "clip"), **options),
        GrounderRole.load(str(tiny_dir / "owlv2"), **options),
        GeneratorRole.load(str(tiny_dir / "generator"), **options),
    )


@pytest.fixture
def make_engine(roles: Roles, tiny_dir: Path) -> Callable[..., Engine]:
    def make(**settings: Any) -> Engine:
        config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), max_new_tokens=4, **settings)
        clip, grounder, generator = roles
        return Engine(
            config,
            clip,
            grounder=grounder if config.grounder else None,
            generator=generator if config.generator else None,
        )

    return make


@pytest.fixture
def calls(roles: Roles, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[int]]]:
    """Batch size of every CLIP tower forward, OWLv2 vision forward and generate call."""
    clip, grounder, generator = roles
    seen: dict[str, list[int]] = {"clip_image": [], "clip_text": [], "ground_image": [], "generate": []}

    def recorder(name: str) -> Any:
        return lambda module, args, output: seen[name].append(int(output[0].shape[0]))

    towers = {
        "clip_image": clip.model.vision_model,
        "clip_text": clip.model.text_model,
        "ground_image": grounder.model.owlv2.vision_model,
    }
    handles = [tower.register_forward_hook(recorder(name)) for name, tower in towers.items()]
    real_generate = generator.model.generate

    def generate_spy(**kwargs: Any) -> Any:
        seen["generate"].append(int(kwargs["input_ids"].shape[0]))
        return real_generate(**kwargs)

    monkeypatch.setattr(generator.model, "generate", generate_spy)
    yield seen
    for handle in handles:
        handle.remove()


def _counts_reset(calls: dict[str, list[int]]) -> None:
    for seen in calls.values():
        seen.clear()


def _fake_generate(
    monkeypatch: pytest.MonkeyPatch, generator: GeneratorRole, ocr: str = OCR
) -> list[tuple[list[tuple[int, int]], list[str]]]:
    """Replace the generator with a deterministic one: `ocr` for the OCR prompt, else an echo of the prompt."""
    seen: list[tuple[list[tuple[int, int]], list[str]]] = []

    def generate(images: Sequence[Image.Image], prompts: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
        seen.append(([image.size for image in images], list(prompts)))
        return [ocr if prompt == PROMPTS["ocr"] else f"re: {prompt}" for prompt in prompts]

    monkeypatch.setattr(generator, "generate", generate)
    return seen


def test_look_closer_at_everything_costs_one_pass_per_role(
    make_engine: Callable[..., Engine], calls: dict[str, list[int]]
) -> None:
    engine, posts = make_engine(look_closer=0.0), _posts(4)
    engine.analyze(posts, _policy())  # fills the policy-prompt and phrase caches
    _counts_reset(calls)
    results = engine.analyze(posts, _policy())
    # Per post: caption, OCR, three questions, rationale.
    assert calls == {"clip_image": [4], "clip_text": [4], "ground_image": [4], "generate": [4 * 6]}
    assert all(set(r.timings_ms) == {"decode", "embed", "score", "ground", "generate"} for r in results)


def test_look_closer_above_every_score_grounds_and_generates_nothing(
    make_engine: Callable[..., Engine], calls: dict[str, list[int]]
) -> None:
    results = make_engine(look_closer=1.01).analyze(_posts(4), _policy())
    # The four policy prompts (a new engine), then the four post texts.
    assert calls == {"clip_image": [4], "clip_text": [4, 4], "ground_image": [], "generate": []}
    for result in results:
        assert (result.groundings, result.answers, result.caption, result.ocr_text, result.rationale) == (
            (), (), None, None, None,
        )
        assert set(result.timings_ms) == {"decode", "embed", "score"}


@pytest.mark.parametrize(
    ("post_text", "ocr_text", "expected"),
    [("post text", OCR, f"post text {OCR}"), (" post text ", None, "post text"), ("", f" {OCR} ", OCR), ("", "", "")],
)
def test_classifier_text(post_text: str, ocr_text: str | None, expected: str) -> None:
    assert classifier_text(post_text, ocr_text) == expected


@pytest.mark.parametrize("look_closer", [0.0, 1e-9])
def test_text_read_from_the_image_feeds_the_classifier(
    make_engine: Callable[..., Engine], roles: Roles, monkeypatch: pytest.MonkeyPatch, look_closer: float
) -> None:
    _fake_generate(monkeypatch, roles[2])
    posts = [PostInput("both", image_bytes((40, 32), seed=1), "post text"), PostInput("image", image_bytes((40, 32)))]
    both, image_only = make_engine(look_closer=look_closer).analyze(posts, _policy())
    expected = roles[0].embed_texts([f"post text {OCR}", OCR])
    assert (both.ocr_text, image_only.ocr_text) == (OCR, OCR)
    np.testing.assert_allclose(both.text_embedding, expected[0], atol=1e-6)
    np.testing.assert_allclose(image_only.text_embedding, expected[1], atol=1e-6)


def test_rescoring_after_a_closer_look_equals_looking_first(
    make_engine: Callable[..., Engine], roles: Roles, calls: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_generate(monkeypatch, roles[2])
    posts = [*_posts(3), PostInput("text-only", None, "hello")]
    first = make_engine(look_closer=0.0).analyze(posts, _policy())
    _counts_reset(calls)
    later = make_engine(look_closer=1e-9).analyze(posts, _policy())
    # The four policy prompts (new engine), the four post texts, then the three re-read posts.
    assert calls["clip_text"] == [4, 4, 3]
    for looked_first, looked_later in zip(first, later):
        assert looked_later.scores == pytest.approx(looked_first.scores, abs=1e-6)
        np.testing.assert_allclose(looked_later.text_embedding, looked_first.text_embedding, atol=1e-6)
        assert (looked_later.answers, looked_later.ocr_text) == (looked_first.answers, looked_first.ocr_text)


def test_empty_ocr_keeps_the_post_text_and_skips_rescoring(
    make_engine: Callable[..., Engine], roles: Roles, calls: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_generate(monkeypatch, roles[2], ocr="  ")
    [result] = make_engine(look_closer=1e-9).analyze([PostInput("p", image_bytes((40, 32)), "post text")], _policy())
    assert result.ocr_text is None
    assert calls["clip_text"] == [4, 1]  # policy prompts, post text; no second pass
    np.testing.assert_allclose(result.text_embedding, roles[0].embed_texts(["post text"])[0], atol=1e-6)


def test_answers_groundings_and_caption_come_from_the_policy(make_engine: Callable[..., Engine]) -> None:
    posts = [*_posts(2), PostInput("text-only", None, "hello")]
    results = make_engine(look_closer=0.0, grounding_threshold=0.0).analyze(posts, _policy())
    for result in results[:2]:
        assert [answer.question for answer in result.answers] == QUESTIONS
        assert all(type(answer.answer) is str for answer in result.answers)
        assert result.groundings and {grounding.phrase for grounding in result.groundings} <= set(PHRASES)
        assert type(result.caption) is str
    text_only = results[2]
    assert (text_only.groundings, text_only.answers, text_only.caption, text_only.rationale) == ((), (), None, None)


@pytest.mark.parametrize(("review_threshold", "kept"), [(0.0, True), (1.01, False)])
def test_rationale_only_when_a_score_reaches_its_review_threshold(
    make_engine: Callable[..., Engine],
    roles: Roles,
    monkeypatch: pytest.MonkeyPatch,
    review_threshold: float,
    kept: bool,
) -> None:
    seen = _fake_generate(monkeypatch, roles[2])
    long_text = "buy " * 100
    post = PostInput("p", image_bytes((40, 32)), long_text)
    [result] = make_engine(look_closer=0.0).analyze([post], _policy(review_threshold))
    rationale_prompt = seen[0][1][-1]
    assert rationale_prompt.startswith(f'The post\'s text: "{long_text[:300].strip()}…".')
    assert rationale_prompt.endswith("breaks any of these rules, and why: Violence; Spam.")
    assert result.rationale == (f"re: {rationale_prompt}" if kept else None)


def test_generated_prompts_per_post(
    make_engine: Callable[..., Engine], roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _fake_generate(monkeypatch, roles[2])
    make_engine(look_closer=0.0).analyze(_posts(2), _policy())
    [(sizes, prompts)] = seen
    assert sizes == [(40, 32)] * 6 + [(41, 32)] * 6
    assert prompts[:5] == [PROMPTS["caption"], PROMPTS["ocr"], *QUESTIONS]
    assert prompts[6:11] == prompts[:5]


def test_model_version_names_every_loaded_role(make_engine: Callable[..., Engine], roles: Roles) -> None:
    clip, grounder, generator = roles
    assert make_engine().model_version == f"{clip.version}+{grounder.version}+{generator.version}"
    assert make_engine(generator="").model_version == f"{clip.version}+{grounder.version}"
    parts = [part.split("@")[0] for part in make_engine().model_version.split("+")]
    assert parts == ["clip:clip", "owlv2:owlv2", "vlm:generator"]


def test_from_config_skips_a_disabled_role(tiny_dir: Path) -> None:
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), generator="", look_closer=0.0)
    engine = Engine.from_config(config)
    assert (engine.generator, type(engine.grounder)) == (None, GrounderRole)
    [result] = engine.analyze(_posts(1), _policy())
    assert (result.answers, result.caption, result.ocr_text, result.rationale) == ((), None, None, None)
    # The tiny profile's verifier still looks at every category (look_closer 0).
    assert set(result.timings_ms) == {"decode", "embed", "score", "ground", "verify"}


def test_ask_is_one_generate_call_in_order(make_engine: Callable[..., Engine], calls: dict[str, list[int]]) -> None:
    posts = _posts(3)
    items = [(posts[0], "Is there a cat?"), (posts[1], "What colour?"), (posts[2], "Is there a cat?")]
    answers = make_engine().ask(items)
    assert calls["generate"] == [3]
    assert [type(answer) for answer in answers] == [Answer] * 3
    assert [answer.question for answer in answers] == ["Is there a cat?", "What colour?", "Is there a cat?"]


def test_ask_passes_images_and_questions_in_order(
    make_engine: Callable[..., Engine], roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _fake_generate(monkeypatch, roles[2])
    posts = _posts(2)
    answers = make_engine().ask([(posts[1], "b?"), (posts[0], "a?")])
    assert seen == [([(41, 32), (40, 32)], ["b?", "a?"])]
    assert answers == [Answer("b?", "re: b?"), Answer("a?", "re: a?")]


def test_caption_prompts_plain_and_conditional(
    make_engine: Callable[..., Engine], roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _fake_generate(monkeypatch, roles[2])
    posts = _posts(2)
    captions = make_engine().caption([(posts[0], None), (posts[1], "a photo of")])
    prompts = [PROMPTS["caption"], conditional_caption_prompt("a photo of")]
    assert seen == [([(40, 32), (41, 32)], prompts)]
    assert captions == [f"re: {prompt}" for prompt in prompts]


def test_ground_is_one_pass_in_order(
    make_engine: Callable[..., Engine], roles: Roles, calls: dict[str, list[int]]
) -> None:
    posts = _posts(3)
    items: list[tuple[PostInput, Sequence[str]]] = [
        (posts[2], ["a gun"]),
        (posts[0], ["a cat", "a gun"]),
        (posts[1], []),
    ]
    engine = make_engine(grounding_threshold=0.0)
    found = engine.ground(items)
    assert calls["ground_image"] == [3]
    for (post, phrases), groundings in zip(items, found):
        assert post.image is not None
        image = image_decode(post.image).image
        alone = roles[1].ground([image], [phrases], threshold=0.0)[0]
        assert [(g.phrase, g.box) for g in groundings] == [(g.phrase, g.box) for g in alone]
        assert [g.score for g in groundings] == pytest.approx([g.score for g in alone], abs=1e-5)
    assert found[0] and not found[2]


@pytest.mark.parametrize(
    ("method", "argument"), [("ask", "Is there a cat?"), ("ground", ["a cat"]), ("caption", None)]
)
def test_adhoc_rejects_a_post_without_an_image(
    make_engine: Callable[..., Engine], calls: dict[str, list[int]], method: str, argument: Any
) -> None:
    items = [(_posts(1)[0], argument), (PostInput("text-only", None, "hello"), argument)]
    with pytest.raises(EngineInputError) as caught:
        getattr(make_engine(), method)(items)
    assert (caught.value.key, caught.value.code) == ("text-only", "input_no_image")
    assert calls["generate"] == calls["ground_image"] == []


@pytest.mark.parametrize(
    ("method", "argument", "role"),
    [("ask", "Is there a cat?", "generator"), ("ground", ["a cat"], "grounder"), ("caption", None, "generator")],
)
def test_adhoc_without_the_role(make_engine: Callable[..., Engine], method: str, argument: Any, role: str) -> None:
    engine = make_engine(grounder="", generator="")
    with pytest.raises(EngineInputError) as caught:
        getattr(engine, method)([(_posts(1)[0], argument)])
    assert (caught.value.key, caught.value.code) == ("p0", "role_unavailable")
    assert caught.value.message == f"the {role} role is not configured"


@pytest.mark.parametrize("method", ["ask", "ground", "caption"])
def test_adhoc_of_nothing(make_engine: Callable[..., Engine], method: str) -> None:
    assert getattr(make_engine(), method)([]) == []


def test_adhoc_names_an_undecodable_post(make_engine: Callable[..., Engine]) -> None:
    with pytest.raises(EngineInputError) as caught:
        make_engine().caption([(_posts(1)[0], None), (PostInput("bad", b"<html></html>"), None)])
    assert (caught.value.key, caught.value.code) == ("bad", "image_format")


def test_boxes_on_a_draft_decoded_jpeg_are_in_the_original_pixels(
    make_engine: Callable[..., Engine], roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A JPEG this large is decoded in draft mode at a fraction of its size; the reviewer's
    # page draws boxes over the original, so the engine must scale them back up.
    width, height = 2400, 1600
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 40, 200)).save(buffer, format="JPEG")
    post = PostInput("big", buffer.getvalue(), "")
    engine = make_engine(look_closer=0.0, grounding_threshold=0.0)
    [decoded] = engine.decode([post])
    assert decoded is not None and decoded.image.width < width and (decoded.width, decoded.height) == (width, height)
    seen: list[tuple[int, int]] = []

    def whole_image(images: Sequence[Image.Image], phrases: Sequence[Sequence[str]], **kwargs: Any) -> list[list[Any]]:
        from vlm_engine.types import Grounding

        seen.extend(image.size for image in images)
        return [[Grounding(phrase=p[0], box=(0.0, 0.0, float(i.width), float(i.height)), score=0.9)]
                for i, p in zip(images, phrases)]

    monkeypatch.setattr(roles[1], "ground", whole_image)
    [result] = engine.analyze([post], _policy())
    [[adhoc]] = engine.ground([(post, ["a knife"])])
    assert seen == [decoded.image.size, decoded.image.size]
    assert result.groundings[0].box == pytest.approx((0, 0, width, height))
    assert adhoc.box == pytest.approx((0, 0, width, height))


def test_tiny_roles_are_reported_as_without_checkpoint(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(look_closer=0.0)
    result = engine.analyze(_posts(1), _policy())[0]
    assert engine.roles_real() == {"embedder": False, "grounder": False, "generator": False, "reader": False}
    assert result.no_checkpoint == ("embedder", "grounder", "generator", "reader")
    assert make_engine(grounder="", generator="").roles_real() == {"embedder": False}
