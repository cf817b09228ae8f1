"""The submitter: posts recorded statements of reasons to the DSA Transparency Database, retries with backoff.

A statement the database accepted is never sent again. Each batch is locked while it is sent, so
two submitters never send one statement at once. If an answer is lost after the database stored
a batch, the next try is answered 422 with the PUIDs it already holds (``existing_puids``): those
are recorded as submitted, and the rest of the batch goes again. The token travels only in the
request's Authorization header: it is read from the settings when a batch is sent, never passed
to a task, written to a log or stored with an error.
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import ssl
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import StatementExport
from moderation.selectors.statement_exports import statement_exports_period
from moderation.services.retries import retry_at
from moderation.services.statement_exports import BATCH_LIMIT, statement_exports_record
from moderation.services.webhooks import webhook_error_class

# The batch endpoint, below TRANSPARENCY_DB_URL (routes/api.php of the database: Route::post('statements', ...)
# in the v1 group, github.com/digital-services-act/transparency-database).
ENDPOINT_PATH = "/api/v1/statements"
TIMEOUT_S = 30.0
ANSWER_LIMIT = 4 * 1024 * 1024  # bytes of an answer read: it echoes every statement of the batch (~2 KB each)
ERROR_LIMIT = 2000
# A 4xx that says "later", not "never".
TRANSIENT_CLIENT_ERRORS = {408, 425, 429}
State = StatementExport.State
logger = logging.getLogger(__name__)


def transparency_db_configured() -> bool:
    return bool(moderation_settings.TRANSPARENCY_DB_URL and moderation_settings.TRANSPARENCY_DB_TOKEN)


def transparency_db_submit() -> dict[str, int]:
    """What beat runs: record the decisions not recorded yet, then send every batch that is due.
    Nothing happens while the database is not configured."""
    if not transparency_db_configured():
        return {}
    statement_exports_record()
    return statements_submit_due()


def statements_resubmit(*, since: datetime, until: datetime | None = None) -> dict[str, int]:
    """Send every statement of a period not accepted yet, now: pending ones waiting for a retry, and
    failed or refused ones again (after the token or the data was put right)."""
    period = statement_exports_period(since=since, until=until)
    StatementExport.objects.filter(period).exclude(state=State.SUBMITTED).update(
        state=State.PENDING, next_attempt_at=timezone.now())
    return statements_submit_due(within=period)


def statements_submit_due(*, within: Q | None = None, max_batches: int = 100) -> dict[str, int]:
    """Send the due statements in batches of up to ``BATCH_LIMIT``, each statement at most once per
    call unless the database named another statement of its batch as the one at fault."""
    counts = {"submitted": 0, "retrying": 0, "failed": 0, "refused": 0}
    tried: set[Any] = set()
    for _ in range(max_batches):
        with transaction.atomic():
            batch = _due(within=within, exclude=tried)
            if not batch:
                break
            outcomes = _attempt(batch)
        for record, outcome in zip(batch, outcomes):
            if outcome != "requeued":  # a requeued statement goes again in this call, and is counted then
                tried.add(record.pk)
                counts[outcome] += 1
    return counts


def _due(*, within: Q | None, exclude: set[Any]) -> list[StatementExport]:
    qs = StatementExport.objects.filter(state=State.PENDING, next_attempt_at__lte=timezone.now())
    qs = (qs.filter(within) if within is not None else qs).exclude(pk__in=exclude)
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True)
    return list(qs.order_by("restricted_at", "id")[:BATCH_LIMIT])


def _attempt(batch: list[StatementExport]) -> list[str]:
    try:
        status, answer = _send(batch)
    except (OSError, http.client.HTTPException) as exc:
        error = webhook_error_class(exc)
        logger.warning("Sending %d statements to the transparency database failed (%s)", len(batch), error)
        return _outcomes_save(batch, [_retry(record, status=None, error=error) for record in batch])
    if 200 <= status < 300:
        return _outcomes_save(batch, _accepted(batch, answer))
    if 400 <= status < 500 and status not in TRANSIENT_CLIENT_ERRORS:
        logger.warning("The transparency database refused a batch of %d statements (HTTP %d)", len(batch), status)
        return _outcomes_save(batch, _refused(batch, status=status, answer=answer))
    logger.warning("The transparency database answered HTTP %d to a batch of %d statements", status, len(batch))
    return _outcomes_save(batch, [_retry(record, status=status, error=f"http_{status}") for record in batch])


def _send(batch: list[StatementExport]) -> tuple[int, Any]:
    """POST the batch; returns the status and the decoded JSON answer (None when it is not JSON).

    Raises:
        OSError, http.client.HTTPException: the connection failed or timed out.
    """
    parts = urlsplit(moderation_settings.TRANSPARENCY_DB_URL)
    if parts.scheme == "https":  # certificate and host name verified
        client: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=TIMEOUT_S, context=ssl.create_default_context())
    else:  # only a loopback host passes the settings check
        client = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT_S)
    body = json.dumps({"statements": [record.statement for record in batch]}, separators=(",", ":")).encode()
    headers = {"Authorization": f"Bearer {moderation_settings.TRANSPARENCY_DB_TOKEN}",
               "Accept": "application/json", "Content-Type": "application/json",
               "User-Agent": "django-vlm-moderation"}
    try:
        client.request("POST", parts.path.rstrip("/") + ENDPOINT_PATH, body=body, headers=headers)
        response = client.getresponse()
        raw = response.read(ANSWER_LIMIT)
        status = int(response.status)
    finally:
        client.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def _accepted(batch: list[StatementExport], answer: Any) -> list[str]:
    created = answer.get("statements") if isinstance(answer, dict) else None
    uuids = {str(s.get("puid")): str(s.get("uuid") or "") for s in created or [] if isinstance(s, dict)}
    return [_submitted(record, status=201, database_uuid=uuids.get(record.puid, "")) for record in batch]


def _refused(batch: list[StatementExport], *, status: int, answer: Any) -> list[str]:
    """A 4xx: statements the database already holds count as submitted, statements it names as
    invalid are refused with its words, and the rest of the batch goes again; a refusal that names
    no statement refuses the whole batch."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    errors = errors if isinstance(errors, dict) else {}
    # Only what names this batch counts, so every round that sends the rest again is smaller.
    held = {str(puid) for puid in errors.get("existing_puids") or []} & {record.puid for record in batch}
    invalid = {int(m.group(1)): value for key, value in errors.items()
               if (m := re.fullmatch(r"statement_(\d+)", str(key))) and int(m.group(1)) < len(batch)}
    outcomes = []
    for index, record in enumerate(batch):
        if record.puid in held:
            outcomes.append(_submitted(record, status=status, database_uuid=""))
        elif index in invalid:
            outcomes.append(_refuse(record, status=status, error=_error_text(status, invalid[index])))
        elif held or invalid:
            outcomes.append(_requeue(record, status=status))
        else:
            message = answer.get("message") if isinstance(answer, dict) else None
            outcomes.append(_refuse(record, status=status, error=_error_text(status, message)))
    return outcomes


def _error_text(status: int, detail: Any) -> str:
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False) if detail else ""
    return f"http_{status}: {text}"[:ERROR_LIMIT] if text else f"http_{status}"


def _submitted(record: StatementExport, *, status: int, database_uuid: str) -> str:
    record.attempts += 1
    record.state, record.submitted_at, record.database_uuid = State.SUBMITTED, timezone.now(), database_uuid[:64]
    record.last_status_code, record.last_error = status, ""
    return "submitted"


def _refuse(record: StatementExport, *, status: int, error: str) -> str:
    record.attempts += 1
    record.state, record.last_status_code, record.last_error = State.REFUSED, status, error
    return "refused"


def _requeue(record: StatementExport, *, status: int) -> str:
    # Sent with statements the database refused or already held; not at fault itself, so due at once.
    record.attempts += 1
    record.next_attempt_at, record.last_status_code = timezone.now(), status
    record.last_error = f"http_{status}: sent again without the statements the database named"
    return "requeued"


def _retry(record: StatementExport, *, status: int | None, error: str) -> str:
    record.attempts += 1
    record.last_status_code, record.last_error = status, error
    due = retry_at(attempts=record.attempts, delays=moderation_settings.TRANSPARENCY_DB_RETRY_DELAYS)
    if due is None:
        record.state = State.FAILED
        return "failed"
    record.next_attempt_at = due
    return "retrying"


def _outcomes_save(batch: list[StatementExport], outcomes: list[str]) -> list[str]:
    StatementExport.objects.bulk_update(batch, ["state", "attempts", "next_attempt_at", "last_status_code",
                                                "last_error", "submitted_at", "database_uuid"])
    return outcomes
