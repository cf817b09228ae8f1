"""Bad model output in one post of a batch: stored clean, or that post alone fails, the rest conclude."""
from __future__ import annotations

from dataclasses import replace

import pytest
from django.core.files.base import ContentFile
from django.db import connection

from moderation.models import Analysis, Post, PostEvent, PostState
from moderation.services import analysis as analysis_services
from tests.factories import PostFactory, image_bytes
from vlm_engine.engine import Engine
from vlm_engine.types import Answer, Grounding
from workers.pipeline import batches_drain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED}


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"


class CorruptingEngine:
    """The real tiny engine, with the generator, grounder and scorer of chosen posts replaced by
    fakes that return what a misbehaving model can: NUL and control characters, NaN, wild boxes."""

    def __init__(self, engine: Engine, corrupt: dict[str, dict[str, object]]) -> None:
        self.engine, self.corrupt = engine, corrupt
        self.batches: list[int] = []

    def decode(self, posts):  # type: ignore[no-untyped-def]
        return self.engine.decode(posts)

    def analyze(self, posts, policy, **kwargs):  # type: ignore[no-untyped-def]
        self.batches.append(len(posts))
        results = self.engine.analyze(posts, policy, **kwargs)
        return [replace(r, **self.corrupt.get(r.key, {})) for r in results]


def post_with_image(size: tuple[int, int] = (64, 48)) -> Post:
    post = PostFactory()
    post.image.save("x.jpg", ContentFile(image_bytes("JPEG", size=size)), save=False)
    post.image_width, post.image_height, post.image_format = size[0], size[1], "JPEG"
    post.save()
    return post


def test_bad_output_of_one_post_never_abandons_its_batch(engine, monkeypatch):  # type: ignore[no-untyped-def]
    nul, nan, boxes, explodes, fine = (post_with_image() for _ in range(5))
    engine = CorruptingEngine(engine, {
        str(nul.pk): {"caption": "a cat\x00 on\x07 a mat\u202e", "rationale": "x" * 50_000,
                      "answers": (Answer(question="Is there a weapon?", answer="no\x00\x1b[31m"),),
                      "model_version": "tiny\x00", "no_checkpoint": ()},  # as if from real roles
        str(nan.pk): {"scores": {"hate": float("nan"), "harassment": 0.1}},
        str(boxes.pk): {"groundings": (Grounding(phrase="noose", box=(-50.0, -10.0, 30.0, 20.0), score=0.9),
                                       Grounding(phrase="noose", box=(500.0, 500.0, 900.0, 900.0), score=0.8),
                                       Grounding(phrase="noose", box=(0.0, 0.0, float("inf"), 9.0), score=0.7)),
                        "no_checkpoint": ()},
    })
    decide = analysis_services.analysis_decide

    def decide_exploding_for_one(*, scores, policy, post_id):  # type: ignore[no-untyped-def]
        if post_id == explodes.pk:
            raise KeyError("category vanished")
        return decide(scores=scores, policy=policy, post_id=post_id)

    monkeypatch.setattr(analysis_services, "analysis_decide", decide_exploding_for_one)

    assert batches_drain(engine=lambda: engine, batch_size=5, worker="w") == 9

    # One batch of five; the two suspects were then retried alone until their attempts ran out.
    assert engine.batches == [5, 1, 1, 1, 1]
    for post in (nul, boxes, fine):
        post.refresh_from_db()
        assert (post.state in FINAL, post.attempts, post.last_error) == (True, 1, "")
        assert Analysis.objects.filter(post=post).count() == 1
        assert PostEvent.objects.filter(post=post, to_state__in=FINAL).count() == 1
    stored = Analysis.objects.get(post=nul).explanation
    assert stored["caption"] == "a cat on a mat"
    assert stored["answers"] == [{"question": "Is there a weapon?", "answer": "no[31m"}]
    assert len(stored["rationale"]) == 2000
    assert Analysis.objects.get(post=nul).model_version == "tiny"
    assert Analysis.objects.get(post=boxes).explanation["groundings"] == [
        {"phrase": "noose", "box": [0.0, 0.0, 30.0, 20.0], "score": 0.9}]
    nan.refresh_from_db()
    assert (nan.state, nan.attempts) == (PostState.FAILED, 3)
    assert nan.last_error == "model output invalid: the model returned a non-finite score for 'hate': nan"
    explodes.refresh_from_db()
    assert (explodes.state, explodes.attempts) == (PostState.FAILED, 3)
    assert explodes.last_error == "recording the analysis failed: KeyError: 'category vanished'"
    assert Analysis.objects.filter(post__in=[nan, explodes]).count() == 0


def test_a_post_whose_output_stays_bad_ends_failed_with_the_real_error(engine, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_ATTEMPTS": 2}
    bad, fine = post_with_image(), post_with_image()
    engine = CorruptingEngine(engine, {str(bad.pk): {"scores": {"hate": float("nan")}}})

    batches_drain(engine=lambda: engine, batch_size=4, worker="w")

    bad.refresh_from_db()
    assert (bad.state, bad.attempts) == (PostState.FAILED, 2)
    assert bad.last_error == "model output invalid: the model returned a non-finite score for 'hate': nan"
    assert Post.objects.get(pk=fine.pk).state in FINAL


def test_nul_in_generated_text_reaches_postgresql_clean(engine):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL is the database that refuses NUL in JSON text")
    post = post_with_image()
    engine = CorruptingEngine(engine, {str(post.pk): {"ocr_text": "\x00" * 3 + "HATE\x00", "no_checkpoint": ()}})

    batches_drain(engine=lambda: engine, batch_size=4, worker="w")

    with connection.cursor() as cursor:
        cursor.execute("SELECT explanation->>'ocr_text' FROM moderation_analysis WHERE post_id = %s", [post.pk])
        assert cursor.fetchone() == ("HATE",)


class FakeAdHocEngine:
    """Answers ad-hoc requests the way a misbehaving generator and grounder can."""

    model_version = "fake\x00"

    def roles_real(self):  # type: ignore[no-untyped-def]
        return {"embedder": True, "grounder": True, "generator": True}  # real roles, misbehaving

    def questions_unanswered(self):  # type: ignore[no-untyped-def]
        return None  # a generator that answers

    def ask(self, pairs):  # type: ignore[no-untyped-def]
        return [Answer(question=q, answer="yes\x00\x1b") for _, q in pairs]

    def ground(self, pairs):  # type: ignore[no-untyped-def]
        return [[Grounding(phrase=p, box=(-5.0, -5.0, 1e9, 30.0), score=0.5) for p in phrases] for _, phrases in pairs]

    def caption(self, pairs):  # type: ignore[no-untyped-def]
        return ["cap\x00tion" for _ in pairs]


def test_ad_hoc_answers_are_stored_clean(settings):  # type: ignore[no-untyped-def]
    from moderation.models import EngineRequest
    from moderation.services.requests import post_caption_request, post_grounding_request, post_question_ask
    from workers.requests import requests_drain

    post = post_with_image(size=(64, 48))
    question = post_question_ask(client=post.client, post_id=post.pk, question="Is there a weapon?")
    grounding = post_grounding_request(client=post.client, post_id=post.pk, phrases=["bat"])
    caption = post_caption_request(client=post.client, post_id=post.pk)

    assert requests_drain(engine=FakeAdHocEngine, batch_size=8) == 3

    results = {r.pk: (r.state, r.result, r.model_version) for r in EngineRequest.objects.all()}
    assert results[question.pk] == ("done", {"answer": "yes"}, "fake")
    assert results[grounding.pk] == ("done", {"groundings": [{"phrase": "bat", "box": [0.0, 0.0, 64.0, 30.0],
                                                              "score": 0.5}]}, "fake")
    assert results[caption.pk] == ("done", {"caption": "caption"}, "fake")


class CaptionerAdHocEngine(FakeAdHocEngine):
    """An engine whose (real) generator is a pure captioner: it captions, and answers no questions."""

    def questions_unanswered(self):  # type: ignore[no-untyped-def]
        return "vit-gpt2 answers no questions"

    def ask(self, pairs):  # type: ignore[no-untyped-def]
        pytest.fail("a captioner was asked a question")


def test_a_captioner_says_it_answers_no_questions(settings):  # type: ignore[no-untyped-def]
    from moderation.models import EngineRequest
    from moderation.services.requests import post_caption_request, post_question_ask
    from workers.requests import requests_drain

    post = post_with_image(size=(64, 48))
    question = post_question_ask(client=post.client, post_id=post.pk, question="Is there a weapon?")
    caption = post_caption_request(client=post.client, post_id=post.pk)

    assert requests_drain(engine=CaptionerAdHocEngine, batch_size=8) == 2

    results = {r.pk: (r.state, r.result) for r in EngineRequest.objects.all()}
    assert results == {question.pk: ("done", {"answer": None, "unavailable": "unavailable: vit-gpt2 answers no questions"}),
                       caption.pk: ("done", {"caption": "caption"})}
