"""The post lifecycle: the table, the README's diagram of it, the one writer, and what a move costs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from moderation.models import Post, PostEvent, PostState
from moderation.services.lifecycle import (ALL_STATES, NO_STATE, RETENTION, SAME, SWEEPER, TRANSITIONS, Actor, Move,
                                           TransitionConflict, TransitionNotAllowed, post_transition,
                                           transition_find)
from tests.factories import PostFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
EDGE = re.compile(r"^\s*(?:%%\s*)?(\[\*\]|\*|\w+) --> (\*|\w+): (\w+) \[([\w, ]+)\]\s*$")


def readme_edges() -> set[tuple[str, str, str, frozenset[str]]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Post lifecycle", 1)[1].split("\n## ", 1)[0]
    block = section.split("```mermaid", 1)[1].split("```", 1)[0]
    edges = set()
    header, *lines = block.strip().splitlines()
    assert header == "stateDiagram-v2"
    for line in lines:
        if line.strip():
            match = EDGE.match(line)
            assert match, f"a diagram line the test cannot read: {line!r}"
            source, target, name, kinds = match.groups()
            edges.add(({"[*]": NO_STATE}.get(source, source), target, name,
                       frozenset(k.strip() for k in kinds.split(","))))
    return edges


def table_edges() -> set[tuple[str, str, str, frozenset[str]]]:
    edges = set()
    for row in TRANSITIONS:
        if row.sources == ALL_STATES:
            edges.add(("*", row.target, row.name, row.causes))
        else:
            edges.update((source, source if row.target == SAME else row.target, row.name, row.causes)
                         for source in row.sources)
    return edges


def test_the_readme_diagram_is_the_transition_table():  # type: ignore[no-untyped-def]
    assert readme_edges() == table_edges()
    assert len(table_edges()) == 19


def test_each_move_by_each_kind_of_actor_has_at_most_one_row():  # type: ignore[no-untyped-def]
    kinds = {kind for row in TRANSITIONS for kind in row.causes}
    for from_state in [NO_STATE, *ALL_STATES]:
        for to_state in ALL_STATES:
            for kind in kinds:
                rows = [r.name for r in TRANSITIONS if r.allows(from_state=from_state, to_state=to_state, kind=kind)]
                assert len(rows) <= 1, (from_state, to_state, kind, rows)
    assert {r.target for r in TRANSITIONS} - {SAME} == set(ALL_STATES)  # every state is reachable


@pytest.mark.parametrize("from_state, to_state, kind", [
    ("allowed", "removed", "reviewer"),  # a decided post is only reopened by an undo
    ("reviewed", "allowed", "worker"),
    ("queued", "analyzing", "sweeper"),
    ("analyzing", "allowed", "reviewer"),
    ("needs_review", "reviewed", "worker"),
    ("", "queued", "worker"),
    ("allowed", "allowed", "reviewer"),
])
def test_moves_outside_the_table_are_refused(from_state, to_state, kind):  # type: ignore[no-untyped-def]
    with pytest.raises(TransitionNotAllowed):
        transition_find(from_state=from_state, to_state=to_state, kind=kind)


@pytest.mark.django_db
def test_a_refused_move_writes_nothing():  # type: ignore[no-untyped-def]
    post = PostFactory(state=PostState.ALLOWED)

    with pytest.raises(TransitionNotAllowed):
        post_transition(moves=[Move(post_id=post.pk, from_state="allowed", to_state="removed")],
                        actor=Actor("reviewer", "alice"))

    assert Post.objects.get(pk=post.pk).state == "allowed"
    assert PostEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_partly_stale_batch_moves_no_post():  # type: ignore[no-untyped-def]
    fresh, stale = PostFactory(state=PostState.QUEUED), PostFactory(state=PostState.ALLOWED)
    moves = [Move(post_id=p.pk, from_state="queued", to_state="analyzing") for p in (fresh, stale)]

    with pytest.raises(TransitionConflict), transaction.atomic():
        post_transition(moves=moves, actor=Actor.worker("gpu0"))

    assert [Post.objects.get(pk=p.pk).state for p in (fresh, stale)] == ["queued", "allowed"]
    assert PostEvent.objects.count() == 0


@pytest.mark.django_db
def test_missing_ok_skips_a_post_no_longer_where_it_was():  # type: ignore[no-untyped-def]
    post = PostFactory(state=PostState.REVIEWED)

    moved = post_transition(moves=[Move(post_id=post.pk, from_state="needs_review", to_state="needs_review")],
                            actor=Actor("reviewer", "alice"), missing_ok=True)

    assert moved == 0
    assert PostEvent.objects.count() == 0


@pytest.mark.django_db
def test_events_carry_one_actor_format():  # type: ignore[no-untyped-def]
    reviewer = UserFactory(username="alice")
    posts = PostFactory.create_batch(5, state=PostState.ANALYZING)
    post_transition(moves=[Move(post_id=posts[0].pk, from_state="analyzing", to_state="queued")], actor=SWEEPER)
    post_transition(moves=[Move(post_id=posts[1].pk, from_state="analyzing", to_state="failed")],
                    actor=Actor.worker("gpu0@host"))
    Post.objects.filter(pk=posts[2].pk).update(state=PostState.NEEDS_REVIEW)
    post_transition(moves=[Move(post_id=posts[2].pk, from_state="needs_review", to_state="reviewed")],
                    actor=Actor.reviewer(reviewer))
    post_transition(moves=[Move(post_id=posts[3].pk, from_state="analyzing", to_state="analyzing")], actor=RETENTION)

    assert list(PostEvent.objects.order_by("id").values_list("actor", "from_state", "to_state")) == [
        ("sweeper", "analyzing", "queued"), ("worker:gpu0@host", "analyzing", "failed"),
        ("reviewer:alice", "needs_review", "reviewed"), ("retention", "analyzing", "analyzing")]
    assert str(Actor.client(42)) == "client:42"


@pytest.mark.django_db
def test_a_batch_concludes_with_one_update_per_state_and_one_insert_of_events():  # type: ignore[no-untyped-def]
    posts = PostFactory.create_batch(6, state=PostState.ANALYZING)
    targets = ["allowed", "needs_review", "removed", "allowed", "removed", "allowed"]
    moves = [Move(post_id=p.pk, from_state="analyzing", to_state=t, detail={"n": i})
             for i, (p, t) in enumerate(zip(posts, targets))]

    with CaptureQueriesContext(connection) as queries:
        assert post_transition(moves=moves, actor=Actor.worker("gpu0")) == 6

    sql = [q["sql"].split(" ", 1)[0] for q in queries.captured_queries]
    assert sql.count("UPDATE") == 3
    assert sql.count("INSERT") == 1 + 0  # events; no client has a webhook endpoint here
    assert [Post.objects.get(pk=p.pk).state for p in posts] == targets
    assert sorted(PostEvent.objects.values_list("detail__n", flat=True)) == [0, 1, 2, 3, 4, 5]


# Modules allowed to assign ``.state`` on objects that are not posts: (path, name of the object).
OTHER_MODELS_STATE = {("moderation/services/webhooks.py", "delivery"),
                      ("moderation/services/transparency_db.py", "record")}  # a statement export's submission
WRITES = {"create", "bulk_create", "get_or_create", "update_or_create", "update", "bulk_update"}


def _chain_root(node: ast.AST) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _writes_of_posts(tree: ast.AST, path: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func, root = node.func, _chain_root(node.func)
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            state_kw = any(k.arg == "state" for k in node.keywords)
            post_state_kw = any(k.arg == "state" and "PostState" in ast.dump(k.value) for k in node.keywords)
            state_field = any(isinstance(c, ast.Constant) and c.value == "state" for c in ast.walk(node))
            if root == "PostEvent" and (name == "PostEvent" or name in WRITES):
                found.append(f"{path}:{node.lineno} writes PostEvent")
            elif name in WRITES and post_state_kw or root == "Post" and (name == "Post" or name in WRITES) and (
                    state_kw or name == "bulk_update" and state_field):
                found.append(f"{path}:{node.lineno} writes Post.state")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in (t for top in targets for t in ast.walk(top)):
                if isinstance(target, ast.Attribute) and target.attr == "state" \
                        and (path, _chain_root(target)) not in OTHER_MODELS_STATE:
                    found.append(f"{path}:{node.lineno} assigns {_chain_root(target)}.state")
    return found


def test_only_the_lifecycle_writes_post_state_or_events():  # type: ignore[no-untyped-def]
    found = []
    for package in ("moderation", "workers"):
        for file in sorted((ROOT / package).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            if "/migrations/" in path or path == "moderation/services/lifecycle.py":
                continue
            source = file.read_text()
            found += _writes_of_posts(ast.parse(source), path)
            if re.search(r"(?i)update\s+\"?moderation_post\"?\s+set|into\s+\"?moderation_postevent", source):
                found.append(f"{path} writes posts or events in SQL")
    assert found == []


def test_the_guard_sees_each_kind_of_write():  # type: ignore[no-untyped-def]
    source = "\n".join([
        "Post.objects.filter(pk=1).update(state='removed')",
        "PostEvent.objects.create(post=p, to_state='x')",
        "PostEvent.objects.bulk_create([PostEvent(post=p)])",
        "Post.objects.bulk_update(posts, ['state'])",
        "post.state = 'allowed'",
        "held.update(state=PostState.QUEUED)",
    ])
    assert len(_writes_of_posts(ast.parse(source), "moderation/x.py")) == 7
