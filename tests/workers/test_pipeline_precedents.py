"""The worker names nearest labelled examples from the decisions standing when it scores a batch."""
from __future__ import annotations

import pytest

from moderation.models import Analysis, Post, ReviewDecision
from moderation.services.learning import precedents_forget
from moderation.services.posts import post_submit
from tests.factories import UserFactory
from vlm_engine.engine import Engine
from workers.pipeline import batches_drain

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def engine(scoring_engine):  # type: ignore[no-untyped-def]
    return scoring_engine


def analyse(engine: Engine) -> None:
    batches_drain(engine=lambda: engine, batch_size=8, worker="w")


def decide(post: Post, verdict: str, category: str = "") -> None:
    post.refresh_from_db()
    reviewer = UserFactory(username="rev")
    ReviewDecision.objects.create(post=post, analysis=post.current_analysis, reviewer=reviewer,
                                  reviewer_username="rev", verdict=verdict, category=category)


def test_a_decision_names_the_next_posts_nearest_example_within_the_client(engine):  # type: ignore[no-untyped-def]
    precedents_forget()
    acme, globex = UserFactory(username="acme"), UserFactory(username="globex")
    mine = post_submit(client=acme, text="send them all back")[0]
    theirs = post_submit(client=globex, text="send them all back")[0]
    analyse(engine)
    assert Analysis.objects.get(post=mine).explanation["nearest_examples"] == []  # nothing decided yet
    decide(mine, "violating", "hate")
    decide(theirs, "violating", "hate")

    again = post_submit(client=acme, text="send them all back")[0]
    analyse(engine)

    examples = Analysis.objects.get(post=again).explanation["nearest_examples"]
    assert [(e["post_id"], e["label"], e["similarity"]) for e in examples] == [(str(mine.pk), "hate", 1.0)]
