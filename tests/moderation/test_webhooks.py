"""Webhooks: signed deliveries to a real local receiver, redirects, backoff, address checks."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator

import pytest
from django.utils import timezone

from moderation.models import Post, WebhookDelivery, WebhookEndpoint
from moderation.services.analysis import analysis_record_batch, post_claim_batch
from moderation.services.policies import policy_active
from moderation.services.webhooks import (REFUSAL_MESSAGE, SecretMissing, address_is_public, webhook_deliver_due,
                                          webhook_deliveries_create, webhook_endpoint_set, webhook_secret_new,
                                          webhook_signature)
from tests.conftest import tls_server_context
from tests.factories import PostFactory
from vlm_engine.types import Analysis as EngineAnalysis

pytestmark = pytest.mark.django_db


class Receiver:
    """A real HTTP server on loopback that records requests and answers with a set status."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        self.status = 204
        self.location = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.paths.append(self.path)
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
    assert (delivery.state, delivery.last_status_code, delivery.last_error) == ("pending", 302, "http_302")
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
    from moderation.errors import ServiceError

    with pytest.raises(ServiceError) as refused:
        webhook_endpoint_set(client=client_user, url=receiver.url)

    assert refused.value.code == "webhook_url_refused"


@pytest.mark.parametrize("url", ["http://localhost/x", "http://127.0.0.1/x", "http://no-such-host.invalid/x"])
def test_refusal_is_generic_and_names_the_setting(api, url):  # type: ignore[no-untyped-def]
    response = api.put("/api/v1/webhook/", {"url": url}, format="json")

    assert (response.status_code, response.json()) == (400, {"code": "webhook_url_refused",
                                                             "message": REFUSAL_MESSAGE})
    assert "127.0.0.1" not in REFUSAL_MESSAGE and "WEBHOOK_ALLOW_PRIVATE" in REFUSAL_MESSAGE


@pytest.mark.parametrize("url", [
    "http://[::127.0.0.1]/x",               # IPv4-compatible
    "http://[::ffff:127.0.0.1]/x",          # IPv4-mapped
    "http://[64:ff9b::7f00:1]/x",           # NAT64
    "http://[64:ff9b::a00:8]/x",            # NAT64 of 10.0.0.8
    "http://[2002:7f00:1::]/x",             # 6to4
    "http://[2002:a9fe:a9fe::1]/x",         # 6to4 of 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",  # Teredo, client 127.0.0.1
])
def test_ipv6_forms_embedding_private_ipv4_are_refused(api, url):  # type: ignore[no-untyped-def]
    response = api.put("/api/v1/webhook/", {"url": url}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "webhook_url_refused")
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True), ("64:ff9b::5db8:d822", True),
    ("2002:5db8:d822::1", True), ("::5db8:d822", True), ("127.0.0.1", False), ("::1", False),
    ("fe80::1", False), ("224.0.0.1", False), ("::ffff:10.0.0.1", False), ("64:ff9b::c0a8:101", False),
])
def test_address_is_public_checks_embedded_ipv4(address, public):  # type: ignore[no-untyped-def]
    assert address_is_public(address) is public


class RebindingResolver:
    """A DNS answer that changes between lookups: public first, then loopback (DNS rebinding)."""

    def __init__(self, host: str, first: str, then: str) -> None:
        self.host, self.answers, self.calls = host, [first, then], 0
        self.real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != self.host:
            return self.real(host, port, *args, **kwargs)
        address = self.answers[min(self.calls, 1)]
        self.calls += 1
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


def test_rebinding_resolver_never_reaches_loopback(client_user, receiver, settings, monkeypatch):  # type: ignore[no-untyped-def]
    port = receiver.server.server_port
    resolver = RebindingResolver("hooks.rebind.test", "93.184.216.34", "127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    settings.MODERATION = {**settings.MODERATION, "WEBHOOK_TIMEOUT": 1.0}
    WebhookEndpoint.objects.create(client=client_user, url=f"http://hooks.rebind.test:{port}/hooks",
                                   secret=webhook_secret_new())
    decided_post(client_user)
    resolver.calls = 0

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == []
    assert resolver.calls == 1  # resolved once; the checked address is the one connected to
    assert delivery.state == "pending" and delivery.last_error in {"timeout", "refused"}


def test_connection_keeps_the_host_header(client_user, receiver, allow_loopback, monkeypatch):  # type: ignore[no-untyped-def]
    port = receiver.server.server_port
    monkeypatch.setattr(socket, "getaddrinfo", RebindingResolver("hooks.example.test", "127.0.0.1", "127.0.0.1"))
    webhook_endpoint_set(client=client_user, url=f"http://hooks.example.test:{port}/hooks?src=mod")
    decided_post(client_user)

    assert webhook_deliver_due()["delivered"] == 1
    assert receiver.requests[0][0]["host"] == f"hooks.example.test:{port}"
    assert receiver.paths == ["/hooks?src=mod"]


@pytest.fixture
def tls_receiver(tmp_path) -> Iterator[tuple[Receiver, list[str], str]]:  # type: ignore[no-untyped-def]
    """A receiver behind TLS, its certificate made for hooks.example.test by a CA of its own; it records
    the server name (SNI) each client sent. Yields the receiver, those names and the CA file."""
    context, cert = tls_server_context(tmp_path, "hooks.example.test")
    names: list[str] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    receiver = Receiver()
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    yield receiver, names, str(cert)
    receiver.server.shutdown()


def test_tls_verifies_and_names_the_url_host_not_the_address(client_user, tls_receiver, allow_loopback,
                                                             monkeypatch):  # type: ignore[no-untyped-def]
    receiver, names, ca_file = tls_receiver
    port = receiver.server.server_port
    monkeypatch.setattr(socket, "getaddrinfo", RebindingResolver("hooks.example.test", "127.0.0.1", "127.0.0.1"))
    trusting_the_test_ca = ssl.create_default_context(cafile=ca_file)
    monkeypatch.setattr(ssl, "create_default_context", lambda: trusting_the_test_ca)
    webhook_endpoint_set(client=client_user, url=f"https://hooks.example.test:{port}/hooks")
    decided_post(client_user)

    assert webhook_deliver_due()["delivered"] == 1
    assert names == ["hooks.example.test"]
    assert receiver.requests[0][0]["host"] == f"hooks.example.test:{port}"


def test_tls_with_an_untrusted_certificate_is_a_tls_failure(client_user, tls_receiver, allow_loopback,
                                                           monkeypatch):  # type: ignore[no-untyped-def]
    receiver, names, _ = tls_receiver
    port = receiver.server.server_port
    monkeypatch.setattr(socket, "getaddrinfo", RebindingResolver("hooks.example.test", "127.0.0.1", "127.0.0.1"))
    webhook_endpoint_set(client=client_user, url=f"https://hooks.example.test:{port}/hooks")
    decided_post(client_user)

    webhook_deliver_due()

    assert names == ["hooks.example.test"] and receiver.requests == []
    assert WebhookDelivery.objects.get().last_error == "tls"


def test_failures_are_told_as_coarse_classes(client_user, allow_loopback, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "WEBHOOK_TIMEOUT": 0.5}
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    webhook_endpoint_set(client=client_user, url=f"http://127.0.0.1:{silent.getsockname()[1]}/")
    decided_post(client_user)
    webhook_deliver_due()
    timed_out = WebhookDelivery.objects.get()
    WebhookEndpoint.objects.update(url=f"http://127.0.0.1:{closed_port}/")
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    webhook_deliver_due()
    silent.close()

    assert (timed_out.last_error, timed_out.last_status_code) == ("timeout", None)
    assert WebhookDelivery.objects.get().last_error == "refused"


def test_endpoint_without_a_secret_is_never_delivered(client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    WebhookEndpoint.objects.create(client=client_user, url=receiver.url, secret="")
    decided_post(client_user)

    assert webhook_deliver_due() == {"delivered": 0, "retrying": 1, "failed": 0}
    assert (WebhookDelivery.objects.get().last_error, receiver.requests) == ("secret_missing", [])
    with pytest.raises(SecretMissing):
        webhook_signature(secret="", msg_id="m", timestamp=1, body=b"{}")


def test_admin_created_endpoint_gets_a_secret_shown_once(client, client_user, receiver, allow_loopback):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    added = client.post("/admin/moderation/webhookendpoint/add/", {"client": client_user.pk, "url": receiver.url,
                                                                   "is_active": "on", "created_at_0": "2026-01-01",
                                                                   "created_at_1": "00:00:00"}, follow=True)

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and len(base64.b64decode(endpoint.secret[6:])) == 32
    assert added.content.decode().count(endpoint.secret) == 1
    changed = client.post(f"/admin/moderation/webhookendpoint/{endpoint.pk}/change/",
                          {"client": client_user.pk, "url": receiver.url, "is_active": "on",
                           "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}, follow=True)
    assert WebhookEndpoint.objects.get().secret == endpoint.secret
    assert endpoint.secret not in changed.content.decode()
    assert endpoint.secret not in client.get(f"/admin/moderation/webhookendpoint/{endpoint.pk}/change/").content.decode()


def test_admin_refuses_a_private_receiver(client, client_user):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = client.post("/admin/moderation/webhookendpoint/add/", {
        "client": client_user.pk, "url": "http://127.0.0.1/x", "is_active": "on",
        "created_at_0": "2026-01-01", "created_at_1": "00:00:00"})

    assert response.status_code == 200 and WebhookEndpoint.objects.count() == 0
    assert "WEBHOOK_ALLOW_PRIVATE" in response.content.decode()


@pytest.mark.parametrize("url", ["http://10.0.0.8/x", "http://169.254.169.254/latest", "http://[::1]/x",
                                 "http://192.168.1.1/", "ftp://example.com/x", "http:///nohost",
                                 "http://example.com:99999/x"])
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
    assert (delivery.last_error, delivery.last_status_code, receiver.requests) == ("refused", None, [])


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
