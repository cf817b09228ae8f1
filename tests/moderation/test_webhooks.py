"""Webhooks: signed deliveries to a real local receiver, redirects, backoff, address checks."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator

import pytest
from django.utils import timezone

from moderation.models import Post, WebhookDelivery
from moderation.services.analysis import analysis_record_batch, post_claim_batch
from moderation.services.policies import policy_active
from moderation.services.webhooks import (webhook_deliver_due, webhook_deliveries_create, webhook_endpoint_set,
                                          webhook_signature)
from tests.factories import PostFactory
from vlm_engine.types import Analysis as EngineAnalysis

pytestmark = pytest.mark.django_db


class Receiver:
    """A real HTTP server on loopback that records requests and answers with a set status."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        self.location = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def allow_loopback(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "WEBHOOK_ALLOW_PRIVATE": True}


def decided_post(client) -> Post:  # type: ignore[no-untyped-def]
    post = PostFactory(client=client)
    token, _ = post_claim_batch(limit=1, worker="w")
    analysis_record_batch(token=token, policy=policy_active(), worker="w", results=[
        EngineAnalysis(key=str(post.pk), scores={"hate": 0.97}, image_embedding=None, text_embedding=None,
                       model_version="clip:test", timings_ms={})])
    return Post.objects.get(pk=post.pk)


def test_delivery_is_signed_standard_webhooks_style(client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    _, secret = webhook_endpoint_set(client=client_user, url=receiver.url)
    post = decided_post(client_user)

    assert webhook_deliver_due() == {"delivered": 1, "retrying": 0, "failed": 0}

    headers, body = receiver.requests[0]
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed,
                                         hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert json.loads(body)["post"] == {"id": str(post.pk), "external_id": None, "status": "removed",
                                        "decision": "remove", "top_category": "hate",
                                        "scores": {"hate": 0.97}, "review": None, "error": None}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)


def test_one_delivery_per_final_state_however_often_recorded(client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    webhook_endpoint_set(client=client_user, url=receiver.url)
    post = decided_post(client_user)

    webhook_deliveries_create(post_ids=[post.pk])
    webhook_deliveries_create(post_ids=[post.pk])
    webhook_deliver_due()
    webhook_deliver_due()

    assert WebhookDelivery.objects.count() == 1 and len(receiver.requests) == 1


def test_redirect_is_a_failed_attempt_with_backoff(client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    receiver.status, receiver.location = 302, "http://127.0.0.1:1/elsewhere"
    webhook_endpoint_set(client=client_user, url=receiver.url)
    decided_post(client_user)
    before = timezone.now()

    assert webhook_deliver_due() == {"delivered": 0, "retrying": 1, "failed": 0}

    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.last_status_code, delivery.last_error) == ("pending", 302, "HTTP 302")
    assert delivery.next_attempt_at >= before + timedelta(seconds=5)
    assert len(receiver.requests) == 1  # the redirect was not followed


def test_retries_run_out_then_failed(client_user, receiver, allow_loopback, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "WEBHOOK_RETRY_DELAYS": [0, 0]}
    receiver.status = 500
    webhook_endpoint_set(client=client_user, url=receiver.url)
    decided_post(client_user)

    results = [webhook_deliver_due() for _ in range(4)]

    assert [r["failed"] for r in results] == [0, 0, 1, 0]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert len(receiver.requests) == 3


def test_loopback_receiver_refused_by_default(client_user, receiver):  # type: ignore[no-untyped-def]
    from moderation.services.errors import ServiceError

    with pytest.raises(ServiceError) as refused:
        webhook_endpoint_set(client=client_user, url=receiver.url)

    assert refused.value.code == "webhook_url_refused"


@pytest.mark.parametrize("url", ["http://10.0.0.8/x", "http://169.254.169.254/latest", "http://[::1]/x",
                                 "http://192.168.1.1/", "ftp://example.com/x", "http:///nohost"])
def test_private_and_odd_urls_refused_over_api(api, url):  # type: ignore[no-untyped-def]
    response = api.put("/api/v1/webhook/", {"url": url}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] in {"webhook_url_refused", "webhook_url_invalid", "invalid"}


def test_delivery_refused_when_address_turns_private(client_user, receiver, allow_loopback, settings):  # type: ignore[no-untyped-def]
    webhook_endpoint_set(client=client_user, url=receiver.url)
    decided_post(client_user)
    settings.MODERATION = {**settings.MODERATION, "WEBHOOK_ALLOW_PRIVATE": False}

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert delivery.last_error.startswith("DeliveryRefused") and receiver.requests == []


def test_webhook_api_shows_own_endpoint_only(api, other_api, client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    put = api.put("/api/v1/webhook/", {"url": receiver.url}, format="json")

    assert put.status_code == 200 and put.json()["secret"].startswith("whsec_")
    assert api.get("/api/v1/webhook/").json()["url"] == receiver.url
    assert "secret" not in api.get("/api/v1/webhook/").json()
    assert other_api.get("/api/v1/webhook/").status_code == 404


def test_signature_function_matches_spec_example():  # type: ignore[no-untyped-def]
    # Test vector from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'

    assert webhook_signature(secret=secret, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330,
                             body=body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_each_final_review_decision_is_told_once(client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    from moderation.models import ReviewDecision
    from moderation.services.reviews import review_decide, review_undo
    from tests.factories import UserFactory, post_in_review

    webhook_endpoint_set(client=client_user, url=receiver.url)
    reviewer = UserFactory(username="alice")
    post = post_in_review(client=client_user)
    Verdict = ReviewDecision.Verdict

    review_decide(post=post, reviewer=reviewer, verdict=Verdict.ESCALATE)
    assert WebhookDelivery.objects.count() == 0  # still in review: nothing final to tell
    first = review_decide(post=post, reviewer=reviewer, verdict=Verdict.VIOLATING, category="hate",
                          reason="slur in the caption")
    review_undo(reviewer=reviewer)
    second = review_decide(post=Post.objects.get(pk=post.pk), reviewer=reviewer, verdict=Verdict.NOT_VIOLATING)

    assert sorted(WebhookDelivery.objects.values_list("event_key", flat=True)) == sorted(
        [f"review:{first.pk}", f"review:{second.pk}"])
    assert webhook_deliver_due()["delivered"] == 2
    told = sorted((json.loads(body)["post"]["review"]["verdict"], json.loads(body)["type"])
                  for _, body in receiver.requests)
    assert told == [("not_violating", "post.reviewed"), ("violating", "post.reviewed")]
    violating = next(json.loads(body)["post"] for _, body in receiver.requests
                     if json.loads(body)["post"]["review"]["verdict"] == "violating")
    assert violating["status"] == "reviewed" and violating["review"]["category"] == "hate"
    assert set(violating["review"]) == {"verdict", "category", "decided_at"}  # never who decided or why
