"""Leads edit each category's mapping to the DSA Transparency Database (category, ground) in the admin."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse

from moderation.models import Category, Policy
from moderation.services.policies import policy_active, policy_publish
from moderation.services.statements import GROUNDS, STATEMENT_CATEGORIES
from tests.factories import staff_member
from tests.moderation.test_admin_permissions import _new_version_data, _policy_snapshot

pytestmark = pytest.mark.django_db
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "dsa_tdb_statement.schema.json").read_text())
ILLEGAL = "DECISION_GROUND_ILLEGAL_CONTENT"


@pytest.fixture
def lead_client(client, groups):  # type: ignore[no-untyped-def]
    client.force_login(staff_member("leo", "Lead"))
    return client


def _mapping(policy: Policy) -> dict[str, tuple[str, str, str]]:
    return {c.slug: (c.dsa_category, c.dsa_ground, c.legal_ground) for c in policy.categories.all()}


def _publish(lead_client, policy: Policy, **change: object):  # type: ignore[no-untyped-def]
    return lead_client.post(reverse("admin:moderation_policy_new_version", args=[policy.pk]),
                            _new_version_data(policy, **change))


def test_the_app_s_enumerations_are_the_database_s():  # type: ignore[no-untyped-def]
    assert list(STATEMENT_CATEGORIES) == SCHEMA["properties"]["category"]["enum"]
    assert sorted(GROUNDS) == sorted(SCHEMA["properties"]["decision_ground"]["enum"])


def test_a_lead_edits_the_mapping_in_a_new_version(lead_client):  # type: ignore[no-untyped-def]
    v1 = policy_active()
    slugs = [c.slug for c in v1.categories.order_by("position")]
    page = lead_client.get(reverse("admin:moderation_policy_new_version", args=[v1.pk])).content.decode()
    assert 'name="categories-0-dsa_category"' in page and "STATEMENT_CATEGORY_SCAMS_AND_FRAUD" in page

    response = _publish(lead_client, v1, **{
        "categories-0-dsa_category": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
        "categories-0-dsa_ground": ILLEGAL, "categories-0-legal_ground": " StGB § 130 ",
        "categories-1-dsa_category": "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN"})

    v2 = Policy.objects.get(version=v1.version + 1)
    assert response.status_code == 302
    before, after = _mapping(v1), _mapping(v2)
    assert after[slugs[0]] == ("STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", ILLEGAL, "StGB § 130")
    assert after[slugs[1]] == ("STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN", *before[slugs[1]][1:])
    assert {s: after[s] for s in slugs[2:]} == {s: before[s] for s in slugs[2:]}  # not restated: inherited
    assert _mapping(Policy.objects.get(pk=v1.pk)) == before
    shown = lead_client.get(reverse("admin:moderation_policy_change", args=[v2.pk])).content.decode()
    assert "StGB § 130" in shown and "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN" in shown


@pytest.mark.parametrize("change, message", [
    ({"categories-0-dsa_category": "STATEMENT_CATEGORY_HATE"}, "Select a valid choice."),
    ({"categories-0-dsa_ground": "DECISION_GROUND_RUDE"}, "Select a valid choice."),
    ({"categories-0-dsa_ground": ILLEGAL, "categories-0-legal_ground": "  "},
     "An illegal-content ground needs the legal provision relied on (legal ground)."),
    ({"categories-0-legal_ground": "StGB § 130"}, "Choose the ground the legal provision goes with."),
])
def test_a_bad_mapping_is_refused_and_nothing_is_published(lead_client, change, message):  # type: ignore[no-untyped-def]
    v1 = policy_active()
    before = _policy_snapshot(), _mapping(v1)

    response = _publish(lead_client, v1, **change)

    assert response.status_code == 200 and message in response.content.decode()
    assert (Policy.objects.count(), (_policy_snapshot(), _mapping(v1))) == (1, before)


def test_the_service_refuses_a_bad_mapping_too():  # type: ignore[no-untyped-def]
    v1 = policy_active()
    category = {"slug": "hate", "name": "Hate", "prompts": ["x"], "dsa_category": "STATEMENT_CATEGORY_HATE",
                "dsa_ground": ILLEGAL, "legal_ground": ""}

    with pytest.raises(ValueError) as refused:
        policy_publish(categories=[category], benign_prompts=[])

    assert str(refused.value) == ("hate: 'STATEMENT_CATEGORY_HATE' is not a category of the DSA Transparency "
                                  "Database. hate: An illegal-content ground needs the legal provision relied on "
                                  "(legal ground).")
    assert list(Policy.objects.values_list("pk", flat=True)) == [v1.pk] and Category.objects.filter(
        policy__version=2).count() == 0


def test_a_bad_mapping_kept_from_the_previous_version_is_shown_not_published(lead_client):  # type: ignore[no-untyped-def]
    v1 = policy_active()
    first = v1.categories.order_by("position").first()
    Category.objects.filter(pk=first.pk).update(dsa_category="STATEMENT_CATEGORY_HATE")  # set outside the admin
    before = _policy_snapshot()

    response = _publish(lead_client, v1)  # the form leaves it as it was

    assert response.status_code == 200
    assert (f"{first.slug}: &#x27;STATEMENT_CATEGORY_HATE&#x27; is not a category of the DSA Transparency "
            "Database.") in response.content.decode()
    assert Policy.objects.count() == 1 and _policy_snapshot() == before
    fixed = _publish(lead_client, v1, **{"categories-0-dsa_category": "STATEMENT_CATEGORY_VIOLENCE"})
    assert fixed.status_code == 302
    assert Policy.objects.get(version=2).categories.get(slug=first.slug).dsa_category == "STATEMENT_CATEGORY_VIOLENCE"
