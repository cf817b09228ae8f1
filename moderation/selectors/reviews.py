"""Review selectors: the queue in priority order, a post's evidence, its standing decision."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import DateTimeField, F, FloatField, Func, QuerySet, Value
from django.utils import timezone

from moderation.models import Analysis, Category, EngineRequest, Post, PostEvent, PostState, ReviewDecision
from moderation.selectors.appeals import appeals_of_post
from moderation.selectors.notices import notice_counts

# Counting stops here: the queue page says "1000+" instead of scanning a huge backlog.
QUEUE_COUNT_CAP = 1000
QUEUE_PAGE_SIZE = 50


class AgeDays(Func):
    """Days between ``created`` and ``now`` as a float, in the database's own date arithmetic."""

    output_field = FloatField()

    def __init__(self, created: Any, *, now: datetime) -> None:
        super().__init__(Value(now, output_field=DateTimeField()), created)

    def as_sql(self, compiler, connection, **extra):  # type: ignore[no-untyped-def]
        raise NotImplementedError(f"AgeDays has no SQL for {connection.vendor}")

    def as_postgresql(self, compiler, connection, **extra):  # type: ignore[no-untyped-def]
        return super().as_sql(compiler, connection, arg_joiner=" - ",
                              template="(EXTRACT(EPOCH FROM (%(expressions)s)) / 86400.0)::double precision")

    def as_sqlite(self, compiler, connection, **extra):  # type: ignore[no-untyped-def]
        return super().as_sql(compiler, connection, arg_joiner=") - julianday(",
                              template="(julianday(%(expressions)s))")

    def as_mysql(self, compiler, connection, **extra):  # type: ignore[no-untyped-def]
        return super().as_sql(compiler, connection, arg_joiner=", ",
                              template="(TIMESTAMPDIFF(MICROSECOND, %(expressions)s) / -86400e6)")


def review_queue(*, now: datetime | None = None) -> QuerySet[Post]:
    """Posts waiting for review, highest priority first: ``review_priority × (1 + age in days)``.

    ``review_priority`` is the analysis' risk (severity × confidence), raised on escalation.
    """
    now = now or timezone.now()
    priority = F("review_priority") * (Value(1.0) + AgeDays(F("created_at"), now=now))
    return (Post.objects.filter(state=PostState.NEEDS_REVIEW).annotate(priority=priority)
            .order_by("-priority", "created_at", "pk"))


@dataclass(frozen=True)
class QueueRow:
    """A row of the queue: a post with the score of its top category (what "Score" shows; priority
    is ``post.priority``, severity × confidence × age) and, when it leads a cluster of near-duplicates
    (``selectors.clusters``), the cluster's size and its first other members."""

    post: Post
    score: float | None
    cluster_size: int = 1
    folded: tuple[Post, ...] = ()


def queue_top_score(post: Post) -> float | None:
    analysis = post.current_analysis
    if analysis is None or not analysis.top_category:
        return None
    score = (analysis.scores or {}).get(analysis.top_category)
    return float(score) if isinstance(score, (int, float)) else None


@dataclass(frozen=True)
class QueueSummary:
    waiting: int
    capped: bool
    oldest_at: datetime | None


def review_queue_summary() -> QueueSummary:
    waiting = Post.objects.filter(state=PostState.NEEDS_REVIEW)
    count = len(waiting.values_list("pk", flat=True)[:QUEUE_COUNT_CAP + 1])
    oldest = waiting.order_by("created_at").values_list("created_at", flat=True).first()
    return QueueSummary(waiting=min(count, QUEUE_COUNT_CAP), capped=count > QUEUE_COUNT_CAP, oldest_at=oldest)


def models_roles_latest() -> dict[str, list[str]]:
    """Which model roles were real and which ran on random weights, as the newest analysis recorded."""
    explanation = Analysis.objects.order_by("-pk").values_list("explanation", flat=True).first() or {}
    roles = explanation.get("roles") or {}
    return {"real": list(roles.get("real") or []), "no_checkpoint": list(roles.get("no_checkpoint") or [])}


def review_outcome(*, post: Post) -> ReviewDecision | None:
    """The post's standing decision: its latest one that is not an undo and was not undone."""
    return (ReviewDecision.objects.filter(post_id=post.pk, undone_by__isnull=True)
            .exclude(verdict=ReviewDecision.Verdict.UNDO).order_by("-created_at", "-id").first())


def review_outcomes(*, post_ids: list[Any]) -> dict[Any, ReviewDecision]:
    """``review_outcome`` of many posts in one query: post id -> its standing decision."""
    if not post_ids:
        return {}
    outcomes: dict[Any, ReviewDecision] = {}
    decisions = (ReviewDecision.objects.filter(post_id__in=post_ids, undone_by__isnull=True)
                 .exclude(verdict=ReviewDecision.Verdict.UNDO).order_by("-created_at", "-id"))
    for decision in decisions:
        outcomes.setdefault(decision.post_id, decision)
    return outcomes


# States whose standing decision the client sees: a review, or the overturn that restored the post.
DECIDED_BY_A_PERSON = (PostState.REVIEWED, PostState.RESTORED)


def review_summary(*, post: Post, outcomes: dict[Any, ReviewDecision] | None = None) -> dict[str, Any] | None:
    """What a client sees of the reviewers' word on its post: only once the post is ``reviewed`` (or
    ``restored`` by an overturned appeal, whose ``not_violating`` decision then stands), and never who
    decided or their note. ``outcomes`` (from ``review_outcomes``) saves a list page one query per post."""
    if post.state not in DECIDED_BY_A_PERSON:
        return None
    decision = outcomes.get(post.pk) if outcomes is not None else review_outcome(post=post)
    if decision is None:
        return None
    decided_at = timezone.localtime(decision.created_at, timezone.get_fixed_timezone(0)).isoformat()
    return {"verdict": decision.verdict, "category": decision.category or None,
            "decided_at": decided_at.replace("+00:00", "Z")}


@dataclass(frozen=True)
class BoxView:
    """A grounding box in percentages of the displayed image, so it scales with it."""

    phrase: str
    score: float
    left: float
    top: float
    width: float
    height: float


def grounding_boxes_to_percent(*, groundings: list[dict[str, Any]], width: int, height: int) -> list[BoxView]:
    """Original-pixel boxes ``[x0, y0, x1, y1]`` → percentages of the image's width and height."""
    boxes = []
    for g in groundings:
        x0, y0, x1, y1 = (float(v) for v in g["box"])
        boxes.append(BoxView(phrase=str(g["phrase"]), score=float(g.get("score", 0.0)),
                             left=100 * x0 / width, top=100 * y0 / height,
                             width=100 * (x1 - x0) / width, height=100 * (y1 - y0) / height))
    return boxes


def post_review_evidence(*, post: Post) -> dict[str, Any]:
    """Everything the post page shows besides the post itself, read from the current analysis."""
    analysis = post.current_analysis
    explanation = analysis.explanation if analysis else {}
    sized = bool(post.image and post.image_width and post.image_height)
    groundings = explanation.get("groundings") or []
    return {
        "analysis": analysis,
        "explanation": explanation,
        "scores": explanation.get("scores") or _score_rows(analysis),
        "boxes": grounding_boxes_to_percent(groundings=groundings, width=post.image_width,
                                            height=post.image_height) if sized else [],
        "phrases": list(dict.fromkeys(str(g["phrase"]) for g in groundings)),
        # The OCR reader's words, drawn as a layer of their own beside the grounding boxes.
        "words": grounding_boxes_to_percent(
            groundings=[{"phrase": w["text"], "box": w["box"], "score": w["score"]}
                        for w in explanation.get("ocr_words") or []],
            width=post.image_width, height=post.image_height) if sized else [],
        "events": [EventRow(event=e, note=event_note(detail=e.detail))
                   for e in PostEvent.objects.filter(post=post).order_by("created_at", "id")],
        "decisions": list(ReviewDecision.objects.filter(post=post).order_by("created_at", "id")),
        "requests": list(EngineRequest.objects.filter(post=post).order_by("-created_at")[:10]),
        "notice_counts": notice_counts(post=post),
        "appeals": list(appeals_of_post(post=post)),
    }


@dataclass(frozen=True)
class EventRow:
    event: PostEvent
    note: str


# The detail keys worth a word in a post's history, in the order they are told.
EVENT_NOTE_KEYS = ("verdict", "action", "decision", "category", "reason", "error", "attempt")


def event_note(*, detail: Any) -> str:
    """One line from an event's ``detail``, whatever keys it has (pipeline events may have none)."""
    if not isinstance(detail, dict):
        return ""
    parts = [f"{key}: {detail[key]}" for key in EVENT_NOTE_KEYS if detail.get(key) not in (None, "")]
    if detail.get("content_deleted"):
        parts.append("content deleted")
    return "; ".join(parts)


def _score_rows(analysis: Any) -> list[dict[str, Any]]:
    if analysis is None:
        return []
    rows = [{"category": slug, "name": slug, "score": score} for slug, score in analysis.scores.items()]
    return sorted(rows, key=lambda r: -r["score"])


def review_last_decision(*, reviewer: Any) -> ReviewDecision | None:
    """The reviewer's latest row in the ledger (the one ``u`` would undo)."""
    return ReviewDecision.objects.filter(reviewer=reviewer).order_by("-created_at", "-id").first()


def review_category_slugs(*, post: Post) -> list[str]:
    """The categories a reviewer may choose: those of the policy version that judged the post."""
    analysis = post.current_analysis
    qs = Category.objects.filter(policy_id=analysis.policy_id) if analysis else Category.objects.filter(
        policy=Category.objects.order_by("-policy__version").values("policy")[:1])
    return list(qs.order_by("position", "slug").values_list("slug", flat=True))
