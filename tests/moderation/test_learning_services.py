"""Model versions (promote, roll back, never deleted), retrain scheduling, dataset export."""
from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from moderation.models import Analysis, ModelVersion, ReviewDecision
from moderation.errors import ServiceError
from moderation.services.learning import model_promote, model_rollback, retrain_due
from tests.factories import PostFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db


def version(n: int) -> ModelVersion:
    v = ModelVersion(version=n, digest=f"d{n}", dataset_digest="x")
    v.artifact.save("head.safetensors", ContentFile(b"weights"), save=False)
    v.save()
    return v


def active() -> list[int]:
    return list(ModelVersion.objects.filter(status="active").values_list("version", flat=True))


def test_promote_keeps_one_active_and_rollback_restores_the_previous():  # type: ignore[no-untyped-def]
    v1, v2, v3 = version(1), version(2), version(3)

    model_promote(version=v1, by=None)
    model_promote(version=v2, by=None)
    assert active() == [2]
    model_promote(version=v3, by=None)
    assert active() == [3]

    assert model_rollback(by=None).version == 2
    assert model_rollback(by=None).version == 1
    assert model_rollback(by=None) is None
    assert active() == []
    assert sorted(ModelVersion.objects.values_list("status", flat=True)) == ["retired", "retired", "retired"]
    with pytest.raises(ServiceError):
        model_rollback(by=None)


def test_retrain_is_due_after_enough_new_labels(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "RETRAIN_MIN_NEW_LABELS": 2}
    reviewer = UserFactory(username="r")

    def decide() -> None:
        ReviewDecision.objects.create(post=PostFactory(), reviewer=reviewer, reviewer_username="r",
                                      verdict="not_violating")

    decide()
    assert retrain_due() is False
    decide()
    assert retrain_due() is True
    version(1)  # a training run happened: only decisions after it count
    assert retrain_due() is False


def test_export_dataset_writes_standing_labels_and_images(tmp_path, settings):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    reviewer = UserFactory(username="rev")
    post = PostFactory(text="caption text")
    post.image.save("x.jpg", ContentFile(image_bytes("JPEG")), save=True)
    analysis = Analysis.objects.create(post=post, claim_token=uuid.uuid4(), policy_id=1, model_version="m",
                                       decision="review", scores={"hate": 0.7},
                                       image_embedding=np.array([0.6, 0.8], "<f4").tobytes(),
                                       sentence_embedding=np.array([0.5, 0.25, -1.0], "<f4").tobytes())
    first = ReviewDecision.objects.create(post=post, analysis=analysis, reviewer=reviewer, reviewer_username="rev",
                                          verdict="not_violating")
    ReviewDecision.objects.create(post=post, analysis=analysis, reviewer=reviewer, reviewer_username="rev",
                                  verdict="undo", undoes=first)
    ReviewDecision.objects.create(post=post, analysis=analysis, reviewer=reviewer, reviewer_username="rev",
                                  verdict="violating", category="hate", reason="slur in the caption")
    escalated = PostFactory()
    ReviewDecision.objects.create(post=escalated, reviewer=reviewer, reviewer_username="rev", verdict="escalate")

    call_command("moderation_export_dataset", str(tmp_path / "out"), stdout=io.StringIO())

    lines = [json.loads(line) for line in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
    assert [(r["post_id"], r["verdict"], r["category"], r["text"]) for r in lines] == [
        (str(post.pk), "violating", "hate", "caption text")]
    assert (tmp_path / "out" / lines[0]["image"]).read_bytes() == post.image.open("rb").read()
    assert lines[0]["model_version"] == "m"
    assert lines[0]["embeddings"] == {"image": [0.6000000238418579, 0.800000011920929], "text": None,
                                      "sentence": [0.5, 0.25, -1.0]}


@pytest.mark.parametrize(
    ("candidate", "baseline", "margin", "promoted"),
    [
        (0.90, 0.85, 0.02, True),
        (0.86, 0.85, 0.02, False),
        (0.70, None, 0.02, True),  # nothing to beat: the first head with a value is promoted
        (None, 0.85, 0.02, False),
    ],
)
def test_auto_promote_needs_the_margin(candidate, baseline, margin, promoted):  # type: ignore[no-untyped-def]
    from moderation.services.learning import _beats

    def metrics(value):  # type: ignore[no-untyped-def]
        return {"macro": {"auroc": value}}

    assert _beats(metrics(candidate), metrics(baseline), margin) is promoted


def _labelled(model_version: str, *, sentence: list[float] | None, verdict: str = "not_violating") -> str:
    post = PostFactory(text="caption")
    reviewer = UserFactory()
    analysis = Analysis.objects.create(
        post=post, claim_token=uuid.uuid4(), policy_id=1, model_version=model_version, decision="review",
        scores={"hate": 0.5}, image_embedding=np.array([1.0, 0.0], "<f4").tobytes(),
        sentence_embedding=None if sentence is None else np.array(sentence, "<f4").tobytes())
    ReviewDecision.objects.create(post=post, analysis=analysis, reviewer=reviewer, reviewer_username="r",
                                  verdict=verdict, category="hate" if verdict == "violating" else "")
    return str(post.pk)


def test_the_dataset_keeps_sentence_embeddings_of_the_current_text_role_only():  # type: ignore[no-untyped-def]
    from moderation.services.learning import dataset_build

    before = _labelled("clip:c@1", sentence=None)  # analysed before sentence embeddings were kept
    other = _labelled("clip:c@1+text:old@2", sentence=[0.0, 0.0, 1.0], verdict="violating")
    current = _labelled("clip:c@1+text:minilm@3", sentence=[0.6, 0.8, 0.0])

    data = dataset_build(categories=["hate"])

    rows = dict(zip(data.keys, data.sentence.tolist()))
    assert rows == {before: [0.0, 0.0, 0.0], other: [0.0, 0.0, 0.0],
                    current: [0.6000000238418579, 0.800000011920929, 0.0]}
    assert dict(zip(data.keys, data.labels[:, 0].tolist())) == {before: 0.0, other: 1.0, current: 0.0}


def test_without_a_text_role_the_dataset_has_no_sentence_embeddings():  # type: ignore[no-untyped-def]
    from moderation.services.learning import dataset_build

    _labelled("clip:c@1+text:minilm@3", sentence=[0.6, 0.8, 0.0])
    _labelled("clip:c@1", sentence=None)  # the newest: the workers now run without a text role

    data = dataset_build(categories=["hate"])

    assert data.sentence is None and len(data.keys) == 2
