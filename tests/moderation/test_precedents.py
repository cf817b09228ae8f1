"""Precedents: the ASIF vote follows each new decision, and nearest examples never cross clients."""
from __future__ import annotations

import uuid
from io import StringIO

import numpy as np
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from moderation.models import Analysis, Post, PostState, ReviewDecision
from moderation.services.analysis import analysis_record_batch, post_claim_batch
from moderation.services.learning import precedents_current, precedents_forget, scoring_classifier
from moderation.services.policies import policy_active
from tests.factories import PostFactory, UserFactory
from vlm_engine.types import Analysis as EngineAnalysis

pytestmark = pytest.mark.django_db
CATEGORIES = ["hate", "harassment", "extremism", "violence", "sexual"]
E1, E2, NEAR_E1 = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.8, 0.6, 0.0)
# Both sides of a query at E1 see (E1 anchor 1, NEAR_E1 anchor 0.8, E2 anchor 0): 0.8^8 of 1 + 0.8^8.
NEAR_WEIGHT = 0.8**8 / (1 + 0.8**8)


@pytest.fixture(autouse=True)
def _settings(settings):  # type: ignore[no-untyped-def]
    precedents_forget()
    settings.MODERATION = {**settings.MODERATION, "PRECEDENTS": "asif", "KNN_MIN_LABELS": 2, "KNN_K": 15,
                           "ASIF_EXPONENT": 8.0, "NEAREST_EXAMPLES": 5}


def labelled(client, vector, *, category: str | None) -> Post:  # type: ignore[no-untyped-def]
    """A reviewed post of ``client`` whose analysis had ``vector`` as both embeddings."""
    post = PostFactory(client=client, state=PostState.ALLOWED)
    blob = np.asarray(vector, dtype="<f4").tobytes()
    analysis = Analysis.objects.create(post=post, claim_token=uuid.uuid4(), policy=policy_active(),
                                       model_version="clip:test", decision="review", scores={},
                                       image_embedding=blob, text_embedding=blob)
    reviewer = UserFactory(username="rev")
    ReviewDecision.objects.create(post=post, analysis=analysis, reviewer=reviewer, reviewer_username="rev",
                                  verdict="violating" if category else "not_violating", category=category or "")
    return post


def analysed(client, vector, post: Post | None = None) -> Analysis:  # type: ignore[no-untyped-def]
    """A new post of ``client`` (or ``post``, queued again) analysed with ``vector`` as both embeddings,
    precedents as they stand."""
    if post is None:
        post = PostFactory(client=client)
    else:
        Post.objects.filter(pk=post.pk).update(state=PostState.QUEUED)
    token, _ = post_claim_batch(limit=1, worker="w")
    result = EngineAnalysis(key=str(post.pk), scores={"hate": 0.1}, image_embedding=vector, text_embedding=vector,
                            model_version="clip:test", timings_ms={"embed": 1.0})
    analysis_record_batch(token=token, policy=policy_active(), results=[result], worker="w",
                          precedents=precedents_current(categories=CATEGORIES))
    return Analysis.objects.filter(post=post).latest("created_at")


@pytest.fixture
def two_clients(client_user, other_user):  # type: ignore[no-untyped-def]
    """acme's labelled posts: one hateful near E1, one fine at E2; the other client's: hateful at E1."""
    return {"acme_hate": labelled(client_user, NEAR_E1, category="hate"),
            "acme_ok": labelled(client_user, E2, category=None),
            "other_hate": labelled(other_user, E1, category="hate")}


def test_nearest_examples_are_the_clients_own_heaviest_anchors(two_clients, client_user, other_user):  # type: ignore[no-untyped-def]
    acme = analysed(client_user, E1)
    other = analysed(other_user, E1)

    # The other client's post is acme's closest precedent (similarity 1) but is never shown to acme;
    # acme's E2 post has similarity 0, so no weight, and is left out too.
    assert acme.explanation["nearest_examples"] == [
        {"post_id": str(two_clients["acme_hate"].pk), "label": "hate", "similarity": 0.8,
         "weight": round(NEAR_WEIGHT, 6)}]
    assert other.explanation["nearest_examples"] == [
        {"post_id": str(two_clients["other_hate"].pk), "label": "hate", "similarity": 1.0,
         "weight": round(1 - NEAR_WEIGHT, 6)}]
    assert acme.scoring == "zero_shot"  # analysis_record_batch was given no scorer: it only names precedents


def test_a_reviewed_post_analysed_again_is_not_its_own_example(two_clients, client_user):  # type: ignore[no-untyped-def]
    again = analysed(client_user, NEAR_E1, post=two_clients["acme_hate"])

    assert [e["post_id"] for e in again.explanation["nearest_examples"]] == [str(two_clients["acme_ok"].pk)]


def test_the_api_never_shows_another_clients_post_as_a_nearest_example(  # type: ignore[no-untyped-def]
        two_clients, client_user, other_user, api, other_api):
    acme = analysed(client_user, E1)
    other = analysed(other_user, E1)

    mine = api.get(f"/api/v1/posts/{acme.post_id}/").json()["analysis"]["explanation"]["nearest_examples"]
    theirs = other_api.get(f"/api/v1/posts/{other.post_id}/").json()["analysis"]["explanation"]["nearest_examples"]

    assert [e["post_id"] for e in mine] == [str(two_clients["acme_hate"].pk)]
    assert [e["post_id"] for e in theirs] == [str(two_clients["other_hate"].pk)]
    assert api.get(f"/api/v1/posts/{other.post_id}/").status_code == 404


def test_the_admin_post_page_links_the_nearest_examples(two_clients, client_user, client):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    reviewer = UserFactory(username="rita", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewer"))
    client.force_login(reviewer)
    acme = analysed(client_user, E1)
    Post.objects.filter(pk=acme.post_id).update(state=PostState.NEEDS_REVIEW)

    page = client.get(reverse("admin:moderation_review_post", args=[acme.post_id])).content.decode()

    assert "Nearest labelled examples" in page
    assert reverse("admin:moderation_review_post", args=[two_clients["acme_hate"].pk]) in page
    assert reverse("admin:moderation_review_post", args=[two_clients["other_hate"].pk]) not in page


def test_a_new_decision_changes_the_vote_at_once(two_clients, client_user):  # type: ignore[no-untyped-def]
    query = np.array([E2])
    scorer, version, scoring = scoring_classifier(categories=CATEGORIES)
    assert (version, scoring) == (None, "asif")
    # At E2: acme_ok 1, acme_hate 0.6 (-> 0.6^8), other_hate 0.
    before = 0.6**8 / (1 + 0.6**8)
    assert scorer.predict(query, query)[0, 0] == pytest.approx(before, abs=1e-6)

    labelled(client_user, E2, category="hate")

    scorer = scoring_classifier(categories=CATEGORIES)[0]
    assert scorer.predict(query, query)[0, 0] == pytest.approx((1 + 0.6**8) / (2 + 0.6**8), abs=1e-6)


def test_the_knn_setting_scores_with_the_knn_vote(two_clients, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "PRECEDENTS": "knn"}

    scorer, _, scoring = scoring_classifier(categories=CATEGORIES)

    assert (type(scorer).__name__, scoring) == ("KnnClassifier", "knn")


def test_below_the_label_floor_it_stays_zero_shot_but_still_names_precedents(  # type: ignore[no-untyped-def]
        two_clients, client_user, settings):
    settings.MODERATION = {**settings.MODERATION, "KNN_MIN_LABELS": 10}

    assert scoring_classifier(categories=CATEGORIES)[2] == "zero_shot"
    assert [e["label"] for e in analysed(client_user, E1).explanation["nearest_examples"]] == ["hate"]


@pytest.mark.parametrize("setting, value", [("PRECEDENTS", "nearest"), ("ASIF_EXPONENT", 0), ("ASIF_EXPONENT", True),
                                            ("NEAREST_EXAMPLES", 0)])
def test_bad_precedent_settings_are_refused_at_check_time(settings, setting, value):  # type: ignore[no-untyped-def]
    from moderation.checks import moderation_settings_check

    settings.MODERATION = {**settings.MODERATION, setting: value}

    assert [e.msg.split(" must ")[0] for e in moderation_settings_check()] == [f"MODERATION[{setting!r}]"]
