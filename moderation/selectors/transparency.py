"""The transparency report (DSA Art. 15): a period's notices, actions, decisions and appeals, counted
from the decision ledger (``ReviewDecision``), the post events and the notice and appeal rows."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from statistics import median
from typing import Any, Iterable

from django.contrib.auth import get_user_model
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from moderation.models import Analysis, Appeal, Category, Notice, PostEvent, PostState, ReviewDecision
from moderation.services.statements import CATEGORY_UNMAPPED, statement_ground

Verdict = ReviewDecision.Verdict
AUTOMATED, HUMAN = "automated", "human"
RESTRICT, NO_ACTION, REFERRED = "restrict", "no_action", "referred_to_review"
# What the engine's conclusion of an analysis means for the report (its other moves are retries and failures).
ENGINE_OUTCOMES = {PostState.REMOVED: RESTRICT, PostState.ALLOWED: NO_ACTION, PostState.NEEDS_REVIEW: REFERRED}
HUMAN_OUTCOMES = {Verdict.VIOLATING: RESTRICT, Verdict.NOT_VIOLATING: NO_ACTION}
# One long table for CSV: each row fills the columns its section has and leaves the others empty.
CSV_COLUMNS = ("from", "to", "client", "section", "category", "dsa_category", "reporter_type", "ground", "source",
               "outcome", "value")


@dataclass(frozen=True)
class NoticeCount:
    category: str
    reporter_type: str
    count: int


@dataclass(frozen=True)
class ActionCount:
    """Restrictions applied in the period: the engine's removals and reviewers' violating decisions."""

    category: str  # the policy's category slug
    dsa_category: str  # the Transparency Database category the policy maps it to
    ground: str  # DECISION_GROUND_ILLEGAL_CONTENT or DECISION_GROUND_INCOMPATIBLE_CONTENT
    source: str  # automated | human
    count: int


@dataclass(frozen=True)
class DecisionCount:
    source: str  # automated (the engine concluding an analysis) | human (a standing reviewer decision)
    outcome: str  # restrict | no_action | referred_to_review (the engine only)
    count: int


@dataclass(frozen=True)
class AppealCount:
    source: str  # who made the restriction appealed: automated | human
    outcome: str  # uphold | overturn | moot
    count: int


@dataclass(frozen=True)
class TransparencyReport:
    first: date  # the period's first and last day (UTC), both included
    last: date
    client: str | None  # the client's username, or None for all clients
    notices: list[NoticeCount]
    actions: list[ActionCount]
    decisions: list[DecisionCount]
    notices_decided: int  # notices of the period answered by a reviewer's decision made after them
    median_notice_to_action_s: float | None
    appeals_opened: int
    appeals_decided: list[AppealCount]
    median_appeal_decision_s: float | None

    def as_dict(self) -> dict[str, Any]:
        # The period under the names the command's options and the CSV's columns use.
        body = asdict(self)
        del body["first"], body["last"]
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), **body}

    def csv_rows(self) -> list[dict[str, Any]]:
        rows = [{"section": "notices", **asdict(n)} for n in self.notices]
        rows += [{"section": "actions", **asdict(a)} for a in self.actions]
        rows += [{"section": "decisions", **asdict(d)} for d in self.decisions]
        rows += [{"section": "notices_decided", "count": self.notices_decided},
                 {"section": "median_notice_to_action_s", "count": self.median_notice_to_action_s},
                 {"section": "appeals_opened", "count": self.appeals_opened}]
        rows += [{"section": "appeals_decided", **asdict(a)} for a in self.appeals_decided]
        rows.append({"section": "median_appeal_decision_s", "count": self.median_appeal_decision_s})
        head = {"from": self.first.isoformat(), "to": self.last.isoformat(), "client": self.client or ""}
        return [{**head, **{k: v for k, v in row.items() if k != "count"}, "value": _csv_value(row["count"])}
                for row in rows]


def _csv_value(value: float | int | None) -> str:
    return "" if value is None else str(value)


def transparency_report_csv(report: TransparencyReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report.csv_rows())
    return out.getvalue()


class ReportRequestInvalid(ValueError):
    """A period or client the report cannot be made for; the message says why."""


def report_period_parse(*, first: str, last: str) -> tuple[date, date]:
    """``YYYY-MM-DD`` days, the first no later than the last."""
    try:
        days = date.fromisoformat(first), date.fromisoformat(last)
    except (TypeError, ValueError):
        raise ReportRequestInvalid(f"dates must be YYYY-MM-DD, not {first!r} and {last!r}.") from None
    if days[0] > days[1]:
        raise ReportRequestInvalid(f"the period starts ({first}) after it ends ({last}).")
    return days


def report_client_get(*, username: str) -> Any:
    """The client (API user) named ``username``, or None for an empty name (all clients)."""
    if not username:
        return None
    client = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if client is None:
        raise ReportRequestInvalid(f"no client is named {username!r}.")
    return client


def period_bounds(*, first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC: from the first day's midnight to the midnight after the last day."""
    start = datetime.combine(first, time.min, tzinfo=dt_timezone.utc)
    return start, datetime.combine(last + timedelta(days=1), time.min, tzinfo=dt_timezone.utc)


def transparency_report(*, first: date, last: date, client: Any = None) -> TransparencyReport:
    """The figures of the days ``first``..``last`` (UTC, both included), of one client or all."""
    start, end = period_bounds(first=first, last=last)
    events = _engine_conclusions(start=start, end=end, client=client)
    decisions = _decisions_standing(start=start, end=end, client=client)
    notice_times = _notice_to_action_s(start=start, end=end, client=client)
    appeals = _for_client(Appeal.objects.all(), client, "client")
    decided = list(appeals.filter(decided_at__gte=start, decided_at__lt=end)
                   .values_list("restriction_automated", "decision", "created_at", "decided_at"))  # for the median
    return TransparencyReport(
        first=first, last=last, client=client.get_username() if client is not None else None,
        notices=_notices(start=start, end=end, client=client),
        actions=_actions(events=events, decisions=decisions),
        decisions=_decision_counts(events=events, decisions=decisions),
        notices_decided=len(notice_times), median_notice_to_action_s=_median(notice_times),
        appeals_opened=appeals.filter(created_at__gte=start, created_at__lt=end).count(),
        appeals_decided=[AppealCount(source, outcome, n) for (source, outcome), n in _tally(
            ((AUTOMATED if automated else HUMAN, decision), 1) for automated, decision, _, _ in decided)],
        median_appeal_decision_s=_median([(d - c).total_seconds() for _, _, c, d in decided]))


def _for_client(qs: QuerySet[Any], client: Any, field: str) -> QuerySet[Any]:
    return qs if client is None else qs.filter(**{field: client})


def _tally(counted: Iterable[tuple[tuple[str, ...], int]]) -> list[tuple[tuple[str, ...], int]]:
    """(key, count) pairs summed per key, in key order."""
    counts: dict[tuple[str, ...], int] = {}
    for key, n in counted:
        counts[key] = counts.get(key, 0) + n
    return sorted(counts.items())


def _grouped(qs: QuerySet[Any], *fields: str) -> list[dict[str, Any]]:
    """One row per distinct ``fields`` with its count ``n``, counted by the database."""
    return list(qs.order_by().values(*fields).annotate(n=Count("pk")))


def _median(values: list[float]) -> float | None:
    return float(median(values)) if values else None


def _notices(*, start: datetime, end: datetime, client: Any) -> list[NoticeCount]:
    rows = _for_client(Notice.objects.filter(created_at__gte=start, created_at__lt=end), client, "client")
    return [NoticeCount(category, reporter, n) for (category, reporter), n in _tally(
        ((r["category"], r["reporter_type"]), r["n"]) for r in _grouped(rows, "category", "reporter_type"))]


def _engine_conclusions(*, start: datetime, end: datetime, client: Any) -> list[dict[str, Any]]:
    """The engine's concluding moves of the period, counted per new state and the category and policy
    of the analysis concluded (the post's latest analysis made by then)."""
    analysis = (Analysis.objects.filter(post_id=OuterRef("post_id"), created_at__lte=OuterRef("created_at"))
                .order_by("-created_at", "-pk"))
    events = (PostEvent.objects.filter(from_state=PostState.ANALYZING, to_state__in=list(ENGINE_OUTCOMES),
                                       created_at__gte=start, created_at__lt=end)
              .annotate(category=Subquery(analysis.values("top_category")[:1]),
                        policy_id=Subquery(analysis.values("policy_id")[:1])))
    return _grouped(_for_client(events, client, "post__client"), "to_state", "category", "policy_id")


def _decisions_standing(*, start: datetime, end: datetime, client: Any) -> list[dict[str, Any]]:
    """Reviewer decisions of the period that still stand (not undo rows, not undone), escalations left
    out, counted per verdict, category and the policy they judged by."""
    rows = (ReviewDecision.objects.filter(created_at__gte=start, created_at__lt=end, undone_by__isnull=True,
                                          verdict__in=list(HUMAN_OUTCOMES))
            .annotate(policy_id=Coalesce(F("analysis__policy_id"), F("post__current_analysis__policy_id"))))
    return _grouped(_for_client(rows, client, "post__client"), "verdict", "category", "policy_id")


def _actions(*, events: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> list[ActionCount]:
    restrictions = [(AUTOMATED, e["category"] or "", e["policy_id"], e["n"]) for e in events
                    if ENGINE_OUTCOMES[e["to_state"]] == RESTRICT]
    restrictions += [(HUMAN, d["category"], d["policy_id"], d["n"]) for d in decisions
                     if d["verdict"] == Verdict.VIOLATING]
    mapping = _mappings({(policy_id, slug) for _, slug, policy_id, _ in restrictions})
    counted = []
    for source, slug, policy_id, n in restrictions:
        category = mapping.get((policy_id, slug))
        counted.append(((slug, category.dsa_category if category else CATEGORY_UNMAPPED,
                         statement_ground(category=category), source), n))
    return [ActionCount(*key, count=n) for key, n in _tally(counted)]


def _mappings(pairs: set[tuple[Any, str]]) -> dict[tuple[Any, str], Category]:
    if not pairs:
        return {}
    wanted = Q()
    for policy_id, slug in pairs:
        wanted |= Q(policy_id=policy_id, slug=slug)
    return {(c.policy_id, c.slug): c for c in Category.objects.filter(wanted)}


def _decision_counts(*, events: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> list[DecisionCount]:
    counted = [((AUTOMATED, ENGINE_OUTCOMES[e["to_state"]]), e["n"]) for e in events]
    counted += [((HUMAN, HUMAN_OUTCOMES[d["verdict"]]), d["n"]) for d in decisions]
    return [DecisionCount(source, outcome, n) for (source, outcome), n in _tally(counted)]


def _notice_to_action_s(*, start: datetime, end: datetime, client: Any) -> list[float]:
    """Seconds from each notice of the period to the reviewer's standing decision that answered it
    (a notice answered at once by an earlier decision or removal waited for no action)."""
    notices = _for_client(Notice.objects.filter(created_at__gte=start, created_at__lt=end,
                                                decision__isnull=False, decision__undone_by__isnull=True,
                                                decision__created_at__gte=F("created_at")), client, "client")
    return [(acted - noticed).total_seconds()
            for noticed, acted in notices.values_list("created_at", "decision__created_at")]
