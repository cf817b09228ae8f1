"""The default policy's exemplars: shipped by the data migration and handed to the engine."""
from __future__ import annotations

import pytest

from moderation.services.policies import default_policy_data, policy_active, policy_for_engine

pytestmark = pytest.mark.django_db


def test_the_shipped_default_policy_has_its_exemplars():  # type: ignore[no-untyped-def]
    data = default_policy_data()
    policy = policy_active()

    assert policy.benign_exemplars == data["benign_exemplars"] and "I hate Mondays" in policy.benign_exemplars
    assert {c.slug: c.exemplars for c in policy.categories.all()} == {
        c["slug"]: c["exemplars"] for c in data["categories"]}
    assert all(len(c["exemplars"]) >= 4 for c in data["categories"])


def test_the_engine_policy_carries_the_exemplars():  # type: ignore[no-untyped-def]
    engine_policy = policy_for_engine(policy=policy_active())
    hate = next(c for c in engine_policy.categories if c.slug == "hate")

    assert "go back to your country" in hate.exemplars
    assert engine_policy.benign_exemplars == tuple(default_policy_data()["benign_exemplars"])
