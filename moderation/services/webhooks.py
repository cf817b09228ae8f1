"""Webhooks: register an endpoint, record one delivery per final state, deliver signed, retry."""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.dispatch import task_send_on_commit
from moderation.models import Post, WebhookDelivery, WebhookEndpoint
from moderation.selectors.reviews import review_summary
from moderation.errors import ServiceError
from moderation.services.retries import retry_at
from moderation.services.statements import statement_for_post

SIGNATURE_VERSION = "v1"
logger = logging.getLogger(__name__)


class DeliveryRefused(Exception):
    """The receiver's address is not allowed (private, loopback, unresolvable)."""


class SecretMissing(Exception):
    """The endpoint has no signing secret: a delivery signed with an empty key could be forged by anyone."""


# One message for every refused host: it never says what a name resolved to (internal DNS).
REFUSAL_MESSAGE = ("The webhook host does not resolve to public addresses only. Receivers on your own "
                   "network need MODERATION['WEBHOOK_ALLOW_PRIVATE'] = True.")
# IPv6 ranges that carry an IPv4 address in their last 32 bits: IPv4-compatible (::/96) and NAT64
# (64:ff9b::/96, RFC 6052). Mapped, 6to4 and Teredo have their own accessors in ``ipaddress``.
EMBEDDING_LAST_32_BITS = (ipaddress.ip_network("::/96"), ipaddress.ip_network("64:ff9b::/96"))


@dataclass(frozen=True)
class WebhookTarget:
    """A receiver URL resolved once: every send connects to ``address`` and nothing else."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def webhook_secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_endpoint_set(*, client: AbstractBaseUser, url: str) -> tuple[WebhookEndpoint, str]:
    """Create or replace the client's endpoint; returns it with a new signing secret (shown once)."""
    webhook_url_check(url=url)
    secret = webhook_secret_new()
    endpoint, _ = WebhookEndpoint.objects.update_or_create(
        client=client, defaults={"url": url, "secret": secret, "is_active": True})
    return endpoint, secret


def webhook_url_check(*, url: str) -> None:
    """Refuse a URL that is not http(s) with a host, or whose host is not public."""
    try:
        webhook_target_resolve(url=url)
    except DeliveryRefused as exc:
        raise ServiceError("webhook_url_refused", str(exc))


def webhook_target_resolve(*, url: str) -> WebhookTarget:
    """Resolve the URL's host once and check every address it has.

    Raises:
        ServiceError: ``webhook_url_invalid`` when the URL is not http(s) with a host.
        DeliveryRefused: the host does not resolve, or one of its addresses is not public.
    """
    invalid = ServiceError("webhook_url_invalid", "The webhook URL must be an http(s) URL with a host.")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port out of range or not a number
        raise invalid
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise invalid
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        raise DeliveryRefused(REFUSAL_MESSAGE)
    addresses = [str(info[4][0]) for info in infos]
    allow_private = moderation_settings.WEBHOOK_ALLOW_PRIVATE
    if not addresses or not (allow_private or all(address_is_public(a) for a in addresses)):
        raise DeliveryRefused(REFUSAL_MESSAGE)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebhookTarget(scheme=parts.scheme, host=parts.hostname, port=port, path=path, address=addresses[0])


def address_is_public(address: str) -> bool:
    """Whether ``address`` is a global unicast address, and so is any IPv4 address it embeds."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if not ip.is_global or ip.is_multicast:
        return False
    return all(embedded.is_global and not embedded.is_multicast for embedded in _embedded_ipv4(ip))


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if a is not None]
    if any(ip in network for network in EMBEDDING_LAST_32_BITS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


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
        "statement": statement_for_post(post=post),
    }


def webhook_deliveries_create(*, post_ids: Iterable[Any], event_key: str | None = None) -> int:
    """Record one delivery for each post's current state, once per ``event_key`` (default: the
    state itself, so each final state is told once); duplicates are ignored."""
    posts = list(Post.objects.filter(pk__in=list(post_ids), client__moderation_webhook__is_active=True)
                 .select_related("current_analysis__policy", "client__moderation_webhook"))
    if not posts:
        return 0
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(post=p, endpoint=p.client.moderation_webhook, post_state=p.state,
                         event_key=event_key or p.state, payload=webhook_payload(post=p)) for p in posts],
        ignore_conflicts=True)
    task_send_on_commit(moderation_settings.WEBHOOK_TASK, queue=moderation_settings.DEFAULT_QUEUE)
    return len(posts)


def webhook_event_deliveries_create(*, events: Iterable[tuple[Post, str, dict[str, Any]]]) -> int:
    """Record one delivery per ``(post, event_key, payload)`` for posts whose client has an active
    endpoint (a notifier's outcome, say); an event key already recorded is ignored."""
    events = list(events)
    endpoints = dict(WebhookEndpoint.objects.filter(client_id__in={p.client_id for p, _, _ in events}, is_active=True)
                     .values_list("client_id", "pk"))
    deliveries = [WebhookDelivery(post=p, endpoint_id=endpoints[p.client_id], post_state=p.state, event_key=key,
                                  payload=payload) for p, key, payload in events if p.client_id in endpoints]
    if not deliveries:
        return 0
    WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    task_send_on_commit(moderation_settings.WEBHOOK_TASK, queue=moderation_settings.DEFAULT_QUEUE)
    return len(deliveries)


def webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: HMAC-SHA256 over "id.timestamp.body", base64, "v1," prefix."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    if not key:
        raise SecretMissing()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return f"{SIGNATURE_VERSION},{base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()}"


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address checked at resolution, never to a fresh lookup; Host stays the URL's."""

    def __init__(self, target: WebhookTarget, *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned_address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As ``_PinnedHTTPConnection``, with TLS verified against the URL's host name (also the SNI)."""

    def __init__(self, target: WebhookTarget, *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.pinned_address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned_address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _send(delivery: WebhookDelivery) -> int:
    """POST the delivery to the one checked address; returns the HTTP status (redirects are not followed).

    Raises:
        SecretMissing: the endpoint has no signing secret.
        DeliveryRefused: the host is not public.
        OSError, ssl.SSLError, http.client.HTTPException: the connection failed.
    """
    if not delivery.endpoint.secret:
        raise SecretMissing()
    target = webhook_target_resolve(url=delivery.endpoint.url)
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "django-vlm-moderation",
               "webhook-id": str(delivery.pk), "webhook-timestamp": str(timestamp),
               "webhook-signature": webhook_signature(secret=delivery.endpoint.secret, msg_id=str(delivery.pk),
                                                      timestamp=timestamp, body=body)}
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(target, timeout=moderation_settings.WEBHOOK_TIMEOUT)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        return int(connection.getresponse().status)
    finally:
        connection.close()


def webhook_error_class(exc: BaseException) -> str:
    """What a client may learn of a failed attempt: a coarse class, never addresses or OS messages."""
    if isinstance(exc, SecretMissing):
        return "secret_missing"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    return "refused"


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
    except (OSError, DeliveryRefused, SecretMissing, http.client.HTTPException, ServiceError) as exc:
        error = webhook_error_class(exc)
        logger.warning("Webhook delivery %s to endpoint %s failed (%s): %r", delivery.pk, delivery.endpoint_id,
                       error, exc)
    if status is not None and not 200 <= status < 300:
        error = f"http_{status}"
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_error = status, error
    if status is not None and 200 <= status < 300:
        delivery.state, delivery.delivered_at = WebhookDelivery.State.DELIVERED, timezone.now()
    elif (due := retry_at(attempts=delivery.attempts, delays=moderation_settings.WEBHOOK_RETRY_DELAYS)) is None:
        delivery.state = WebhookDelivery.State.FAILED
    else:
        delivery.next_attempt_at = due
    delivery.save(update_fields=["attempts", "last_status_code", "last_error", "state", "delivered_at",
                                 "next_attempt_at"])
    return {"delivered": "delivered", "failed": "failed"}.get(delivery.state, "retrying")
