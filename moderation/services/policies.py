"""Policies: publish immutable versions, read the active one, convert it for the engine."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from django.db import transaction

from moderation.models import Category, Policy
from moderation.services.statements import GROUND_ILLEGAL, GROUNDS, STATEMENT_CATEGORIES
from vlm_engine.types import Category as EngineCategory
from vlm_engine.types import Policy as EnginePolicy

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "default_policy.json"
CATEGORY_FIELDS = ("slug", "name", "description", "severity", "prompts", "phrases", "questions", "exemplars",
                   "review_threshold", "remove_threshold", "dsa_category", "dsa_ground", "legal_ground")
# A new version that does not restate a category's statement mapping keeps the previous version's.
MAPPING_FIELDS = ("dsa_category", "dsa_ground", "legal_ground")


def category_mapping_errors(category: Mapping[str, Any]) -> list[str]:
    """What is wrong with a category's statement mapping (the keys it states; the others are inherited):
    an unknown Transparency Database category or ground, or an illegal-content ground with no provision."""
    errors = []
    if "dsa_category" in category and category["dsa_category"] not in STATEMENT_CATEGORIES:
        errors.append(f"{category['dsa_category']!r} is not a category of the DSA Transparency Database.")
    if "dsa_ground" in category and category["dsa_ground"] not in GROUNDS:
        errors.append(f"{category['dsa_ground']!r} is not a decision ground; use one of {', '.join(GROUNDS)}.")
    if category.get("dsa_ground") == GROUND_ILLEGAL and not str(category.get("legal_ground") or "").strip():
        errors.append("An illegal-content ground needs the legal provision relied on (legal ground).")
    return errors


def default_policy_data() -> dict[str, Any]:
    return json.loads(DEFAULT_POLICY_PATH.read_text())


@transaction.atomic
def policy_publish(*, categories: Iterable[Mapping[str, Any]], benign_prompts: Iterable[str],
                   benign_exemplars: Iterable[str] = (), note: str = "", created_by: Any = None) -> Policy:
    """Write a new policy version; earlier versions are never changed.

    A category's statement mapping (``MAPPING_FIELDS``) not restated is the previous version's; the
    result is checked by ``category_mapping_errors`` (``ValueError``, nothing written: callers validate
    their input first).
    """
    # Locking the newest row serialises concurrent publishes on the version number.
    latest = Policy.objects.select_for_update().order_by("-version").first()
    inherited = _mappings(latest)
    rows = [{**inherited.get(c.get("slug"), {}), **{f: c[f] for f in CATEGORY_FIELDS if f in c}} for c in categories]
    errors = [f"{row.get('slug')}: {e}" for row in rows for e in category_mapping_errors(row)]
    if errors:
        raise ValueError(" ".join(errors))
    policy = Policy.objects.create(version=(latest.version + 1) if latest else 1,
                                   benign_prompts=list(benign_prompts), benign_exemplars=list(benign_exemplars),
                                   note=note, created_by=created_by)
    Category.objects.bulk_create(Category(policy=policy, position=i, **row) for i, row in enumerate(rows))
    return policy


def _mappings(policy: Policy | None) -> dict[str, dict[str, Any]]:
    if policy is None:
        return {}
    return {row["slug"]: {f: row[f] for f in MAPPING_FIELDS}
            for row in policy.categories.values("slug", *MAPPING_FIELDS)}


def policy_active() -> Policy:
    """The highest policy version (the app ships version 1 as a data migration)."""
    policy = Policy.objects.order_by("-version").first()
    if policy is None:
        data = default_policy_data()
        policy = policy_publish(categories=data["categories"], benign_prompts=data["benign_prompts"],
                                benign_exemplars=data["benign_exemplars"], note=data["note"])
    return policy


_ENGINE_POLICIES: dict[tuple[int, str], EnginePolicy] = {}


def policy_for_engine(*, policy: Policy) -> EnginePolicy:
    """The engine's view of ``policy``, built once per version (versions are immutable)."""
    key = (policy.pk, policy.created_at.isoformat())
    if key not in _ENGINE_POLICIES:
        _ENGINE_POLICIES[key] = _engine_policy_build(policy)
    return _ENGINE_POLICIES[key]


def _engine_policy_build(policy: Policy) -> EnginePolicy:
    categories = tuple(
        EngineCategory(slug=c.slug, name=c.name, description=c.description, severity=c.severity,
                       prompts=tuple(c.prompts), phrases=tuple(c.phrases), questions=tuple(c.questions),
                       exemplars=tuple(c.exemplars), review_threshold=c.review_threshold,
                       remove_threshold=c.remove_threshold)
        for c in policy.categories.order_by("position", "slug")
    )
    return EnginePolicy(version=str(policy.version), categories=categories,
                        benign_prompts=tuple(policy.benign_prompts), benign_exemplars=tuple(policy.benign_exemplars))

