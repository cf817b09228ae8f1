"""Webhooks: register an endpoint, record one delivery per final state, deliver signed, retry."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any, Iterable
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.dispatch import task_send_on_commit
from moderation.models import Post, WebhookDelivery, WebhookEndpoint
from moderation.selectors_reviews import review_summary
from moderation.services.errors import ServiceError

SIGNATURE_VERSION = "v1"


class DeliveryRefused(Exception):
    """The receiver's address is not allowed (private, loopback, unresolvable)."""


def webhook_endpoint_set(*, client: AbstractBaseUser, url: str) -> tuple[WebhookEndpoint, str]:
    """Create or replace the client's endpoint; returns it with a new signing secret (shown once)."""
    webhook_url_check(url=url)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    endpoint, _ = WebhookEndpoint.objects.update_or_create(
        client=client, defaults={"url": url, "secret": secret, "is_active": True})
    return endpoint, secret


def webhook_url_check(*, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ServiceError("webhook_url_invalid", "The webhook URL must be an http(s) URL with a host.")
    try:
        webhook_addresses_check(host=parts.hostname, port=parts.port or 443)
    except DeliveryRefused as exc:
        raise ServiceError("webhook_url_refused", str(exc))


def webhook_addresses_check(*, host: str, port: int) -> None:
    """Refuse hosts that resolve to non-public addresses unless the settings allow them."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise DeliveryRefused(f"{host} does not resolve: {exc}")
    if moderation_settings.WEBHOOK_ALLOW_PRIVATE:
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise DeliveryRefused(f"{host} resolves to a non-public address ({address}).")


def webhook_payload(*, post: Post) -> dict[str, Any]:
    analysis = post.current_analysis
    review = review_summary(post=post)
    return {
        "type": "post.reviewed" if review else "post.decided",
        "post": {"id": str(post.pk), "external_id": post.external_id, "status": post.state,
                 "decision": analysis.decision if analysis else None,
                 "top_category": analysis.top_category if analysis else None,
                 "scores": analysis.scores if analysis else {}, "review": review,
                 "error": post.last_error or None},
    }


def webhook_deliveries_create(*, post_ids: Iterable[Any], event_key: str | None = None) -> int:
    """Record one delivery for each post's current state, once per ``event_key`` (default: the
    state itself, so each final state is told once); duplicates are ignored."""
    posts = list(Post.objects.filter(pk__in=list(post_ids), client__moderation_webhook__is_active=True)
                 .select_related("current_analysis", "client__moderation_webhook"))
    if not posts:
        return 0
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(post=p, endpoint=p.client.moderation_webhook, post_state=p.state,
                         event_key=event_key or p.state, payload=webhook_payload(post=p)) for p in posts],
        ignore_conflicts=True)
    task_send_on_commit(moderation_settings.WEBHOOK_TASK, queue=moderation_settings.DEFAULT_QUEUE)
    return len(posts)


def webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: HMAC-SHA256 over "id.timestamp.body", base64, "v1," prefix."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return f"{SIGNATURE_VERSION},{base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as the 3xx it is: a failed delivery


_opener = urllib.request.build_opener(_NoRedirects)


def _send(delivery: WebhookDelivery) -> int:
    """POST the delivery; returns the HTTP status. Raises OSError or DeliveryRefused."""
    url = delivery.endpoint.url
    parts = urlsplit(url)
    webhook_addresses_check(host=parts.hostname or "", port=parts.port or 443)
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "django-vlm-moderation",
               "webhook-id": str(delivery.pk), "webhook-timestamp": str(timestamp),
               "webhook-signature": webhook_signature(secret=delivery.endpoint.secret, msg_id=str(delivery.pk),
                                                      timestamp=timestamp, body=body)}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=moderation_settings.WEBHOOK_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _due(limit: int, *, exclude: set[Any]) -> list[WebhookDelivery]:
    qs = (WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=timezone.now())
          .exclude(pk__in=exclude))
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    return list(qs.select_related("endpoint").order_by("next_attempt_at")[:limit])


def webhook_deliver_due(*, limit: int = 50) -> dict[str, int]:
    """Attempt each due delivery at most once; each is locked while it is sent, so no double sends."""
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    attempted: set[Any] = set()
    while len(attempted) < limit:
        with transaction.atomic():
            batch = _due(1, exclude=attempted)
            if not batch:
                break
            attempted.add(batch[0].pk)
            counts[_attempt(batch[0])] += 1
    return counts


def _attempt(delivery: WebhookDelivery) -> str:
    status, error = None, ""
    try:
        status = _send(delivery)
    except (OSError, DeliveryRefused) as exc:
        error = f"{type(exc).__name__}: {exc}"
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_error = status, error or ("" if status and status < 300 else f"HTTP {status}")
    if status is not None and 200 <= status < 300:
        delivery.state, delivery.delivered_at = WebhookDelivery.State.DELIVERED, timezone.now()
    elif delivery.attempts > len(moderation_settings.WEBHOOK_RETRY_DELAYS):
        delivery.state = WebhookDelivery.State.FAILED
    else:
        delay = moderation_settings.WEBHOOK_RETRY_DELAYS[delivery.attempts - 1]
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    delivery.save(update_fields=["attempts", "last_status_code", "last_error", "state", "delivered_at",
                                 "next_attempt_at"])
    return {"delivered": "delivered", "failed": "failed"}.get(delivery.state, "retrying")
