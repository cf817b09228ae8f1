"""The post lifecycle: the one table of allowed state changes and the one function that performs them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from moderation.dispatch import analysis_wakeup
from moderation.models import Post, PostEvent, PostState
from moderation.services.webhooks import webhook_deliveries_create

NO_STATE = ""  # where a post comes from when it is submitted
SAME = "*"  # a target meaning "the state the post is in": an audited action that changes no state
ALL_STATES = frozenset(PostState.values)


class ActorKind:
    CLIENT = "client"  # the API client that owns the post
    WORKER = "worker"  # a GPU worker, by its Celery node name
    SWEEPER = "sweeper"  # the periodic task that releases expired claims
    REVIEWER = "reviewer"  # a person in the admin, by username
    RETENTION = "retention"  # the content purge


class Effect:
    WAKE = "wake"  # ask a GPU worker to look for queued posts, after commit
    WEBHOOK = "webhook"  # record a delivery of the post's new state for its client
    NOTICES = "notices"  # answer the post's open notices with the decision, and tell their notifiers


@dataclass(frozen=True)
class Actor:
    """Who causes a transition; recorded on every event as ``kind`` or ``kind:name``."""

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    @classmethod
    def client(cls, user_id: Any) -> Actor:
        return cls(ActorKind.CLIENT, str(user_id))

    @classmethod
    def worker(cls, name: str) -> Actor:
        return cls(ActorKind.WORKER, name)

    @classmethod
    def reviewer(cls, user: AbstractBaseUser) -> Actor:
        return cls(ActorKind.REVIEWER, user.get_username())


SWEEPER = Actor(ActorKind.SWEEPER)
RETENTION = Actor(ActorKind.RETENTION)


@dataclass(frozen=True)
class Transition:
    """One row of the table: from any of ``sources`` to ``target``, caused by one of ``causes``."""

    name: str
    sources: frozenset[str]
    target: str
    causes: frozenset[str]
    effects: frozenset[str] = field(default_factory=frozenset)

    def allows(self, *, from_state: str, to_state: str, kind: str) -> bool:
        target = from_state if self.target == SAME else self.target
        return from_state in self.sources and to_state == target and kind in self.causes


def _row(name: str, sources: Iterable[str], target: str, causes: Iterable[str],
         effects: Iterable[str] = ()) -> Transition:
    return Transition(name, frozenset(sources), target, frozenset(causes), frozenset(effects))


S, K, E = PostState, ActorKind, Effect
TRANSITIONS: tuple[Transition, ...] = (
    _row("submit", [NO_STATE], S.QUEUED, [K.CLIENT], [E.WAKE]),
    _row("claim", [S.QUEUED], S.ANALYZING, [K.WORKER]),
    _row("allow", [S.ANALYZING], S.ALLOWED, [K.WORKER], [E.WEBHOOK]),
    _row("hold_for_review", [S.ANALYZING], S.NEEDS_REVIEW, [K.WORKER], [E.WEBHOOK]),
    _row("remove", [S.ANALYZING], S.REMOVED, [K.WORKER], [E.WEBHOOK]),
    _row("retry", [S.ANALYZING], S.QUEUED, [K.WORKER, K.SWEEPER], [E.WAKE]),
    _row("fail", [S.ANALYZING], S.FAILED, [K.WORKER, K.SWEEPER], [E.WEBHOOK]),
    _row("review", [S.NEEDS_REVIEW], S.REVIEWED, [K.REVIEWER], [E.WEBHOOK, E.NOTICES]),
    # A reviewer's claim, an escalation, the undo of an escalation, and closing as moot the appeal of a
    # decision just undone keep the post in review.
    _row("review_hold", [S.NEEDS_REVIEW], S.NEEDS_REVIEW, [K.REVIEWER]),
    _row("review_undo", [S.REVIEWED], S.NEEDS_REVIEW, [K.REVIEWER]),
    # A notice (DSA Art. 16) about an allowed post sends it to a person; one about a post in review keeps it there.
    _row("notice", [S.ALLOWED, S.NEEDS_REVIEW], S.NEEDS_REVIEW, [K.CLIENT]),
    # An appeal (DSA Art. 20) is recorded on the restricted post; an overturn restores it, an uphold keeps it
    # (as does closing as moot, after an undo, the appeal of a decision no longer standing).
    _row("appeal", [S.REMOVED, S.REVIEWED], SAME, [K.CLIENT]),
    _row("appeal_uphold", [S.REMOVED, S.REVIEWED], SAME, [K.REVIEWER]),
    _row("appeal_overturn", [S.REMOVED, S.REVIEWED], S.RESTORED, [K.REVIEWER]),
    _row("purge", ALL_STATES, SAME, [K.RETENTION]),
)
del S, K, E


class TransitionNotAllowed(Exception):
    """No row of the table allows this move by this kind of actor: a bug in the caller."""


class TransitionConflict(Exception):
    """Some of the posts were no longer where the caller saw them; the whole move is refused."""


@dataclass(frozen=True)
class Move:
    """One post's move: from the state the caller saw (and usually holds locked) to ``to_state``."""

    post_id: Any
    from_state: str
    to_state: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def transition_find(*, from_state: str, to_state: str, kind: str) -> Transition:
    """The table's row for this move, or ``TransitionNotAllowed``."""
    for row in TRANSITIONS:
        if row.allows(from_state=from_state, to_state=to_state, kind=kind):
            return row
    raise TransitionNotAllowed(f"{kind} may not move a post from {from_state or 'nothing'} to {to_state}")


def post_transition(*, moves: Sequence[Move], actor: Actor, updates: Mapping[str, Any] | None = None,
                    where: Q | None = None, missing_ok: bool = False, event_key: str | None = None) -> int:
    """Move posts along the table: one conditional UPDATE per (from, to) pair, one bulk INSERT of
    events, then the rows' effects. Returns how many posts moved.

    ``updates`` are further fields set with the state, ``where`` further conditions (a claim
    token, a free review claim). Every post of a pair moves or none does: a partial count raises
    ``TransitionConflict`` (the caller's transaction must roll back), and so does an empty one
    unless ``missing_ok``. ``event_key`` names the webhook deliveries (default: the new state).
    """
    if not moves:
        return 0
    rows = {m.post_id: transition_find(from_state=m.from_state, to_state=m.to_state, kind=actor.kind)
            for m in moves}
    with transaction.atomic(savepoint=False):
        moved = _posts_update(moves=moves, updates=updates or {}, where=where, missing_ok=missing_ok)
        PostEvent.objects.bulk_create(_event(move, actor) for move in moved)
        _effects_run(moved=moved, rows=rows, event_key=event_key)
    return len(moved)


def _posts_update(*, moves: Sequence[Move], updates: Mapping[str, Any], where: Q | None,
                  missing_ok: bool) -> list[Move]:
    groups: dict[tuple[str, str], list[Move]] = {}
    for move in moves:
        groups.setdefault((move.from_state, move.to_state), []).append(move)
    now, moved = timezone.now(), []
    for (from_state, to_state), group in groups.items():
        qs = Post.objects.filter(pk__in=[m.post_id for m in group], state=from_state)
        stamp = {"updated_at": now} if from_state != to_state else {}
        count = (qs.filter(where) if where is not None else qs).update(**{**stamp, **updates, "state": to_state})
        if count == len(group):
            moved += group
        elif count or not missing_ok:
            raise TransitionConflict(f"{count} of {len(group)} posts were still {from_state}")
    return moved


def _event(move: Move, actor: Actor) -> PostEvent:
    return PostEvent(post_id=move.post_id, from_state=move.from_state, to_state=move.to_state,
                     actor=str(actor), detail=dict(move.detail))


def _effects_run(*, moved: Sequence[Move], rows: Mapping[Any, Transition], event_key: str | None) -> None:
    # Both effects act after commit: the wake-up is sent then, and the deliveries' task too.
    if any(Effect.WAKE in rows[m.post_id].effects for m in moved):
        analysis_wakeup()
    told = [m.post_id for m in moved if Effect.WEBHOOK in rows[m.post_id].effects]
    if told:
        webhook_deliveries_create(post_ids=told, event_key=event_key)
    answered = {m.post_id: m.detail.get("decision") for m in moved if Effect.NOTICES in rows[m.post_id].effects}
    if answered:
        # Imported here: notices move posts through this module, so it cannot import them at load.
        from moderation.services.notices import notices_decide
        notices_decide(post_ids=list(answered), decisions=answered)


def post_submitted_event(*, post: Post) -> PostEvent:
    """The unsaved event of a new post (the submit path inserts it with the post, in one statement)."""
    actor = Actor.client(post.client_id)
    transition_find(from_state=NO_STATE, to_state=post.state, kind=actor.kind)
    return _event(Move(post_id=post.pk, from_state=NO_STATE, to_state=post.state), actor)


def post_submitted_effects() -> None:
    """What follows a submit once the caller's transaction, if any, commits."""
    row = transition_find(from_state=NO_STATE, to_state=PostState.QUEUED, kind=ActorKind.CLIENT)
    if Effect.WAKE in row.effects:
        analysis_wakeup()
