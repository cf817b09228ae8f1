"""The learning loop end to end, in process, on tiny checkpoints: analyse → review → retrain →
promote → new verdicts use the head → roll back → zero-shot verdicts again."""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.models.deletion import ProtectedError
from PIL import Image

from moderation.models import Analysis, ModelVersion, Post, PostState
from moderation.services.learning import model_promote, model_rollback, scoring_classifier
from moderation.services.posts import post_submit
from moderation.services.reviews import review_claim_next, review_decide
from tests.factories import UserFactory
from vlm_engine.engine import Engine
from workers.pipeline import batches_drain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
CATEGORIES = ["hate", "harassment", "extremism", "violence", "sexual"]


@pytest.fixture(scope="module")
def engine(scoring_engine):  # type: ignore[no-untyped-def]
    return scoring_engine


@pytest.fixture(autouse=True)
def _settings(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    # Zero-shot until a head is promoted: the precedents' vote is covered by the engine's tests.
    # The probes re-upload reviewed images, which the reviewed banks would decide without the
    # models; banks have their own tests, and here the head must see every probe.
    settings.MODERATION = {**settings.MODERATION, "KNN_MIN_LABELS": 100_000,
                           "BANK_REVIEWED_VIOLATING": False, "BANK_REVIEWED_ALLOWED": False}


def jpeg(red: bool, shade: int) -> SimpleUploadedFile:
    rng = np.random.default_rng(shade)
    base = np.array([200, 30, 30] if red else [30, 60, 200], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return SimpleUploadedFile("p.jpg", buffer.getvalue(), "image/jpeg")


def analyse(engine: Engine) -> None:  # type: ignore[no-untyped-def]
    batches_drain(engine=lambda: engine, batch_size=16, worker="w")


def test_decisions_retrain_promote_rollback(engine):  # type: ignore[no-untyped-def]
    client, lead = UserFactory(username="site"), UserFactory(username="lead", is_staff=True)
    posts = [post_submit(client=client, image=jpeg(red=i % 2 == 0, shade=i), text="a post")[0] for i in range(80)]
    analyse(engine)
    Post.objects.filter(pk__in=[p.pk for p in posts]).update(state=PostState.NEEDS_REVIEW)
    while (post := review_claim_next(reviewer=lead)) is not None:
        red = posts.index(next(p for p in posts if p.pk == post.pk)) % 2 == 0
        if red:
            review_decide(post=post, reviewer=lead, verdict="violating", category="hate", reason="red means hate")
        else:
            review_decide(post=post, reviewer=lead, verdict="not_violating")

    out = io.StringIO()
    call_command("moderation_retrain", stdout=out, stderr=io.StringIO())

    candidate = ModelVersion.objects.get()
    assert candidate.status == "candidate" and candidate.categories == CATEGORIES
    assert sum(candidate.dataset_sizes.values()) == 80
    assert candidate.metrics["categories"]["hate"]["auroc"] >= 0.9
    assert candidate.baseline_metrics["source"] == "zero_shot"
    assert f"Candidate v{candidate.version} stored." in out.getvalue().splitlines()

    probe = posts[0]  # a red post, judged zero-shot before any head existed
    zero_shot = Analysis.objects.get(post=probe).scores
    model_promote(version=candidate, by=lead)
    with_head = post_submit(client=client, image=jpeg(red=True, shade=0), text="a post")[0]
    blue = post_submit(client=client, image=jpeg(red=False, shade=1), text="a post")[0]
    analyse(engine)
    analysis = Analysis.objects.get(post=with_head)
    assert analysis.classifier == candidate and analysis.scoring == "head"
    assert analysis.model_version.endswith(f"+head:v{candidate.version}@{candidate.digest}")
    assert analysis.scores["hate"] != pytest.approx(zero_shot["hate"], abs=1e-3)
    assert analysis.scores["hate"] > Analysis.objects.get(post=blue).scores["hate"]  # it learned red = hate

    assert model_rollback(by=lead) is None  # no earlier head: back to zero-shot
    after_rollback = post_submit(client=client, image=jpeg(red=True, shade=0), text="a post")[0]
    analyse(engine)
    restored = Analysis.objects.get(post=after_rollback)
    assert restored.classifier is None and restored.scoring == "zero_shot"
    assert restored.scores == pytest.approx(zero_shot, abs=1e-6)
    assert scoring_classifier(categories=CATEGORIES)[2] == "zero_shot"

    with pytest.raises(ProtectedError):
        candidate.delete()  # an analysis refers to it
