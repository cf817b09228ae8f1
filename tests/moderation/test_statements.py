"""Statements of reasons: built from stored facts, in the DSA Transparency Database's attribute set."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from django.urls import reverse

from moderation.conf import moderation_settings
from moderation.models import Category, Post, WebhookDelivery, WebhookEndpoint
from moderation.services.analysis import analysis_record_batch, post_claim_batch
from moderation.services.policies import policy_active, policy_publish
from moderation.services.reviews import review_decide
from moderation.services.statements import statement_for_post
from moderation.services.webhooks import webhook_secret_new
from tests.factories import PostFactory, UserFactory
from vlm_engine.types import Analysis as EngineAnalysis

pytestmark = pytest.mark.django_db
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "dsa_tdb_statement.schema.json").read_text())


def schema_errors(statement: dict) -> list[str]:
    return [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(statement)]


def analysed(post: Post, **scores: float) -> Post:
    """The post through a real claim and record, as a worker stores it."""
    token, _ = post_claim_batch(limit=1, worker="gpu0")
    analysis_record_batch(token=token, policy=policy_active(), worker="gpu0", results=[EngineAnalysis(
        key=str(post.pk), scores=scores, image_embedding=None, text_embedding=(0.6, 0.8),
        model_version="clip:test", timings_ms={"embed": 1.0})])
    return Post.objects.select_related("current_analysis__policy").get(pk=post.pk)


@pytest.fixture
def endpoint(client_user):  # type: ignore[no-untyped-def]
    return WebhookEndpoint.objects.create(client=client_user, url="https://hooks.example.com/m",
                                          secret=webhook_secret_new())


def test_the_schema_names_its_source():  # type: ignore[no-untyped-def]
    assert "github.com/digital-services-act/transparency-database" in SCHEMA["description"]
    assert "69e80a0bc8eb3cbfbe8246e898194c3bdf490a4b" in SCHEMA["description"]
    assert "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH" in SCHEMA["properties"]["category"]["enum"]


def test_an_automated_removal_has_a_statement(client_user, endpoint):  # type: ignore[no-untyped-def]
    post = analysed(PostFactory(client=client_user, text="a post"), hate=0.95, harassment=0.1)
    analysis = post.current_analysis

    statement = statement_for_post(post=post)

    assert schema_errors(statement) == []
    summary = analysis.explanation["summary"]
    assert statement == {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": "Content policy v1, category Hate against protected groups",
        "incompatible_content_explanation": summary,
        "category": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
        "content_type": ["CONTENT_TYPE_TEXT"],
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_FULLY",
        "source_type": "SOURCE_VOLUNTARY",
        "decision_facts": ("Automated analysis (clip:test, policy v1) scored the post 0.95 for Hate against "
                           f"protected groups, at or above its removal threshold 0.90, and removed it. {summary}"),
        "application_date": analysis.created_at.date().isoformat(),
        "content_date": post.created_at.date().isoformat(),
        "territorial_scope": moderation_settings.STATEMENT_TERRITORIAL_SCOPE,
        "puid": f"{post.pk}-analysis-{analysis.pk}",
    }
    told = WebhookDelivery.objects.get(post=post)
    assert (told.payload["type"], told.payload["statement"]) == ("post.decided", json.loads(json.dumps(statement)))


def test_a_review_after_a_trusted_flagger_s_notice(api, client_user, endpoint):  # type: ignore[no-untyped-def]
    post = analysed(PostFactory(client=client_user, text="a post"), hate=0.01)
    assert post.state == "allowed"
    api.post(reverse("moderation:post-notices", kwargs={"post_id": post.pk}),
             {"reporter_type": "trusted_flagger", "category": "harassment", "explanation": "Targets a person."},
             format="json")
    decision = review_decide(post=post, reviewer=UserFactory(username="alice", is_staff=True),
                             verdict="violating", category="harassment", reason="Names and insults a person.")

    response = api.get(reverse("moderation:post-statement", kwargs={"post_id": post.pk}))

    statement = response.json()
    assert response.status_code == 200 and schema_errors(statement) == []
    assert {k: statement[k] for k in ("category", "automated_detection", "automated_decision", "source_type",
                                      "incompatible_content_explanation", "puid", "application_date")} == {
        "category": "STATEMENT_CATEGORY_CYBER_VIOLENCE", "automated_detection": "No",
        "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED", "source_type": "SOURCE_TRUSTED_FLAGGER",
        "incompatible_content_explanation": "Names and insults a person.",
        "puid": f"{post.pk}-review-{decision.pk}", "application_date": decision.created_at.date().isoformat()}
    assert statement["decision_facts"] == (
        "Automated analysis (clip:test, policy v1) scored the post 0.00 for Harassment and bullying. A human "
        f"reviewer then found it violating Harassment and bullying on {decision.created_at.date().isoformat()}: "
        "Names and insults a person.")
    reviewed = WebhookDelivery.objects.get(event_key=f"review:{decision.pk}")
    assert (reviewed.payload["type"], reviewed.payload["statement"]) == ("post.reviewed", statement)


def test_an_illegal_content_ground_comes_from_the_policy_mapping(client_user):  # type: ignore[no-untyped-def]
    Category.objects.filter(policy=policy_active(), slug="hate").update(
        dsa_ground="DECISION_GROUND_ILLEGAL_CONTENT", legal_ground="§ 130 StGB (incitement to hatred)")
    post = analysed(PostFactory(client=client_user), hate=0.97)

    statement = statement_for_post(post=post)

    assert schema_errors(statement) == []
    assert (statement["decision_ground"], statement["illegal_content_legal_ground"]) == (
        "DECISION_GROUND_ILLEGAL_CONTENT", "§ 130 StGB (incitement to hatred)")
    assert "incompatible_content_ground" not in statement


def test_allowed_and_cleared_posts_have_none(api, other_api, client_user):  # type: ignore[no-untyped-def]
    allowed = analysed(PostFactory(client=client_user), hate=0.01)
    url = reverse("moderation:post-statement", kwargs={"post_id": allowed.pk})

    response = api.get(url)

    assert (response.status_code, response.json()["code"]) == (404, "no_statement")
    assert (other_api.get(url).status_code, other_api.get(url).json()["code"]) == (404, "not_found")


def test_the_schema_refuses_what_the_database_would(client_user):  # type: ignore[no-untyped-def]
    statement = statement_for_post(post=analysed(PostFactory(client=client_user), hate=0.95))
    broken = {**statement, "category": "hate", "puid": "has spaces"}
    del broken["decision_facts"]

    assert len(schema_errors(broken)) == 3


def test_a_new_policy_version_keeps_the_mapping_it_does_not_restate():  # type: ignore[no-untyped-def]
    fields = ["slug", "name", "description", "severity", "prompts", "phrases", "questions", "review_threshold",
              "remove_threshold"]
    rows = list(policy_active().categories.values(*fields))  # what the admin's form sends

    newer = policy_publish(categories=rows, benign_prompts=[], note="thresholds")

    assert dict(newer.categories.values_list("slug", "dsa_category")) == {
        "hate": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", "harassment": "STATEMENT_CATEGORY_CYBER_VIOLENCE",
        "extremism": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY", "violence": "STATEMENT_CATEGORY_VIOLENCE",
        "sexual": "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"}
