"""Retention: after a purge no table keeps any text of the post or anything derived from it."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from moderation.models import Analysis, EngineRequest, IdempotencyRecord, Post, WebhookDelivery
from moderation.services.analysis import analysis_record_batch, post_claim_batch
from moderation.services.policies import policy_active
from moderation.services.requests import post_question_ask, request_claim_batch, request_complete
from moderation.services.reviews import review_claim_next, review_decide
from moderation.services.webhooks import webhook_endpoint_set
from tests.factories import UserFactory, image_bytes
from vlm_engine.types import Analysis as EngineAnalysis
from vlm_engine.types import Answer, Grounding

pytestmark = pytest.mark.django_db(transaction=False)

# Each a string no other row would hold, so finding it anywhere means the purge missed it.
MARKERS = {
    "text": "zqtext-slur-in-the-post", "external_id": "zqext-author-4411", "metadata": "zqmeta-author-email",
    "ocr": "zqocr-words-on-the-sign", "caption": "zqcaption-a-man-holding", "answer": "zqanswer-a-knife",
    "rationale": "zqrationale-because", "question": "zqquestion-who-is-this", "phrase": "zqphrase-tattoo",
    "prompt": "zqprompt-describe-face", "result": "zqresult-a-face-of-bob",
    "reviewer_question": "zqreviewer-is-this-bob",
}


def _database_dump() -> str:
    """Every value of every column of every table, as text."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(_as_text(value) for row in cursor.fetchall() for value in row)
    return "\n".join(chunks)


def _as_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def _post_touched_by_every_feature(api, client_user, receiver_url: str) -> Post:  # type: ignore[no-untyped-def]
    webhook_endpoint_set(client=client_user, url=receiver_url)
    upload = SimpleUploadedFile("x.png", image_bytes("PNG"), content_type="image/png")
    submitted = api.post("/api/v1/posts/", {"image": upload, "text": MARKERS["text"],
                                            "external_id": MARKERS["external_id"],
                                            "metadata": f'{{"author": "{MARKERS["metadata"]}"}}'},
                         format="multipart", HTTP_IDEMPOTENCY_KEY="retry-1")
    assert submitted.status_code == 202
    post = Post.objects.get()
    token, _ = post_claim_batch(limit=1, worker="w")
    analysis_record_batch(token=token, policy=policy_active(), worker="w", results=[EngineAnalysis(
        key=str(post.pk), scores={"hate": 0.97}, image_embedding=None, text_embedding=None,
        model_version="clip:test", timings_ms={}, groundings=(Grounding("swastika", (1.0, 2.0, 3.0, 4.0), 0.9),),
        answers=(Answer("Is there a weapon?", MARKERS["answer"]),), caption=MARKERS["caption"],
        ocr_text=MARKERS["ocr"], rationale=MARKERS["rationale"])])
    for path, body in (("questions", {"question": MARKERS["question"]}), ("groundings", {"phrases": [MARKERS["phrase"]]}),
                       ("captions", {"prompt": MARKERS["prompt"]})):
        assert api.post(f"/api/v1/posts/{post.pk}/{path}/", body, format="json").status_code == 202
    reviewer = UserFactory(username="rev1", is_staff=True)
    Post.objects.filter(pk=post.pk).update(state="needs_review")
    assert review_claim_next(reviewer=reviewer).pk == post.pk
    post_question_ask(reviewer=reviewer, post_id=post.pk, question=MARKERS["reviewer_question"])
    review_decide(post=Post.objects.get(pk=post.pk), reviewer=reviewer, verdict="violating", category="hate",
                 reason="breaks the hate policy")
    token, claimed = request_claim_batch(limit=10)
    for request in claimed:
        request_complete(token=token, request_id=request.pk, result={"answer": MARKERS["result"]}, model_version="v")
    return post


def test_purge_leaves_no_content_anywhere_in_the_database(api, client_user, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "WEBHOOK_ALLOW_PRIVATE": True}
    post = _post_touched_by_every_feature(api, client_user, "http://127.0.0.1:9/hooks")
    before = _database_dump()
    assert [name for name, marker in MARKERS.items() if marker not in before] == []
    Post.objects.filter(pk=post.pk).update(created_at=timezone.now() - timedelta(days=40))

    call_command("moderation_purge_content", "--days", "30", "--mode", "anonymize", stdout=StringIO())

    after = _database_dump()
    assert [name for name, marker in MARKERS.items() if marker in after] == []
    assert IdempotencyRecord.objects.count() == 0
    analysis = Analysis.objects.get(post=post)
    assert (analysis.scores, analysis.decision) == ({"hate": 0.97}, "remove")  # the verdict stays
    assert analysis.explanation["groundings"][0]["phrase"] == "swastika"
    assert EngineRequest.objects.filter(post=post, state="done").count() == 4
    assert [d.payload["post"]["external_id"] for d in WebhookDelivery.objects.all()] == [None, None]
    # The statements of reasons told to the client quoted the summary and the reviewer's reason.
    assert [(d.payload["statement"]["decision_facts"], d.payload["statement"]["incompatible_content_explanation"])
            for d in WebhookDelivery.objects.all()] == [("(deleted with the content)",) * 2] * 2


def test_idempotency_key_is_not_replayed_after_purge(api, client_user):  # type: ignore[no-untyped-def]
    first = api.post("/api/v1/posts/", {"text": MARKERS["text"]}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    Post.objects.update(created_at=timezone.now() - timedelta(days=40))

    call_command("moderation_purge_content", "--days", "30", stdout=StringIO())
    again = api.post("/api/v1/posts/", {"text": MARKERS["text"]}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in again and again.json()["id"] != first.json()["id"]
    assert Post.objects.get(pk=first.json()["id"]).text == ""
