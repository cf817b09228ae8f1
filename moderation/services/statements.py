"""Statements of reasons (DSA Art. 17), in the DSA Transparency Database's attribute set, from stored facts only."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from moderation.conf import moderation_settings
from moderation.models import Analysis, Category, Notice, Post, PostState, ReviewDecision
from moderation.selectors.reviews import review_outcome

GROUND_ILLEGAL = "DECISION_GROUND_ILLEGAL_CONTENT"
GROUND_TERMS = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
GROUNDS = (GROUND_TERMS, GROUND_ILLEGAL)
# The database's category enumeration (its Statement model's STATEMENT_CATEGORY_* keys); a policy
# category maps to one of them. tests/moderation/schemas/dsa_tdb_statement.schema.json names the source.
STATEMENT_CATEGORIES = (
    "STATEMENT_CATEGORY_ANIMAL_WELFARE", "STATEMENT_CATEGORY_CONSUMER_INFORMATION",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE", "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS", "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS", "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE",
    "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY", "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "STATEMENT_CATEGORY_SELF_HARM", "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS",
    "STATEMENT_CATEGORY_VIOLENCE")
CATEGORY_UNMAPPED = "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"  # a restriction whose category row is gone
# The strongest notice decides the source: a trusted flagger's, then an Art. 16 notice, then an authority's.
SOURCE_BY_REPORTER = [(Notice.ReporterType.TRUSTED_FLAGGER, "SOURCE_TRUSTED_FLAGGER"),
                      (Notice.ReporterType.USER, "SOURCE_ARTICLE_16"),
                      (Notice.ReporterType.AUTHORITY, "SOURCE_TYPE_OTHER_NOTIFICATION")]
TEXT_LIMIT, FACTS_LIMIT, GROUND_LIMIT = 2000, 5000, 500


@dataclass(frozen=True)
class Restriction:
    """What restricted the post: the engine's removal or a reviewer's violating decision."""

    analysis: Analysis
    decision: ReviewDecision | None
    category_slug: str
    applied_at: datetime
    puid: str


def restriction_by_engine(*, analysis: Analysis) -> Restriction:
    """The engine's removal recorded by ``analysis``.

    The PUID names the post and the row of the decision: a later restriction of the same post is a
    new row (analysis or review decision), so it never shares a PUID with an earlier one.
    """
    return Restriction(analysis=analysis, decision=None, category_slug=analysis.top_category,
                       applied_at=analysis.created_at, puid=f"{analysis.post_id}-analysis-{analysis.pk}")


def restriction_by_review(*, decision: ReviewDecision, analysis: Analysis) -> Restriction:
    """A reviewer's ``violating`` decision on the post ``analysis`` describes."""
    return Restriction(analysis=analysis, decision=decision, category_slug=decision.category,
                       applied_at=decision.created_at, puid=f"{decision.post_id}-review-{decision.pk}")


def post_restriction(*, post: Post) -> Restriction | None:
    """The decision that restricts the post now, or None (allowed, in review, not violating)."""
    analysis = post.current_analysis
    if analysis is None:
        return None
    if post.state == PostState.REMOVED:
        return restriction_by_engine(analysis=analysis)
    decision = review_outcome(post=post) if post.state == PostState.REVIEWED else None
    if decision is None or decision.verdict != ReviewDecision.Verdict.VIOLATING:
        return None
    return restriction_by_review(decision=decision, analysis=analysis)


def statement_for_post(*, post: Post) -> dict[str, Any] | None:
    """The statement of reasons of the post's restricting decision, or None when nothing restricts it."""
    restriction = post_restriction(post=post)
    return None if restriction is None else statement_build(post=post, restriction=restriction)


def statement_build(*, post: Post, restriction: Restriction) -> dict[str, Any]:
    """The statement of reasons of one restricting decision, current or past, from stored rows only."""
    category = Category.objects.filter(policy_id=restriction.analysis.policy_id,
                                       slug=restriction.category_slug).first()
    explanation = _explanation(restriction)
    return {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        **_ground(category=category, policy_version=restriction.analysis.policy.version, explanation=explanation),
        "category": category.dsa_category if category else CATEGORY_UNMAPPED,
        "content_type": _content_types(post),
        "automated_detection": "Yes" if restriction.analysis.decision != "allow" else "No",
        "automated_decision": ("AUTOMATED_DECISION_FULLY" if restriction.decision is None
                               else "AUTOMATED_DECISION_NOT_AUTOMATED"),
        "source_type": _source_type(post=post, before=restriction.applied_at),
        "decision_facts": _facts(restriction=restriction, category=category, explanation=explanation),
        "application_date": restriction.applied_at.date().isoformat(),
        "content_date": post.created_at.date().isoformat(),
        "territorial_scope": list(moderation_settings.STATEMENT_TERRITORIAL_SCOPE),
        "puid": restriction.puid,
    }


def _explanation(restriction: Restriction) -> str:
    if restriction.decision is not None:
        return restriction.decision.reason
    return str((restriction.analysis.explanation or {}).get("summary") or "")


def statement_ground(*, category: Category | None) -> str:
    """The ground a restriction under ``category`` states: illegal content only with the provision relied on."""
    if category is not None and category.dsa_ground == GROUND_ILLEGAL and category.legal_ground:
        return GROUND_ILLEGAL
    return GROUND_TERMS


def _ground(*, category: Category | None, policy_version: int, explanation: str) -> dict[str, str]:
    name = category.name if category else "unknown category"
    text = (explanation or f"The content falls under {name}.")[:TEXT_LIMIT]
    if category is not None and statement_ground(category=category) == GROUND_ILLEGAL:
        return {"decision_ground": GROUND_ILLEGAL, "illegal_content_legal_ground": category.legal_ground[:GROUND_LIMIT],
                "illegal_content_explanation": text}
    return {"decision_ground": GROUND_TERMS,
            "incompatible_content_ground": f"Content policy v{policy_version}, category {name}"[:GROUND_LIMIT],
            "incompatible_content_explanation": text}


def _content_types(post: Post) -> list[str]:
    # The image's hash outlives a retention purge; a post with no image is a text post.
    types = ["CONTENT_TYPE_IMAGE"] if post.image_sha256 else []
    return types + (["CONTENT_TYPE_TEXT"] if post.text or not post.image_sha256 else [])


def _source_type(*, post: Post, before: datetime) -> str:
    kinds = set(Notice.objects.filter(post=post, created_at__lte=before).values_list("reporter_type", flat=True))
    return next((source for kind, source in SOURCE_BY_REPORTER if kind in kinds), "SOURCE_VOLUNTARY")


def _facts(*, restriction: Restriction, category: Category | None, explanation: str) -> str:
    analysis, name = restriction.analysis, category.name if category else restriction.category_slug
    score = float((analysis.scores or {}).get(restriction.category_slug, 0.0))
    engine = (f"Automated analysis ({analysis.model_version}, policy v{analysis.policy.version}) scored the post "
              f"{score:.2f} for {name}")
    if restriction.decision is None:
        threshold = f", at or above its removal threshold {category.remove_threshold:.2f}" if category else ""
        facts = f"{engine}{threshold}, and removed it. {explanation}"
    else:
        facts = (f"{engine}. A human reviewer then found it violating {name} on "
                 f"{restriction.applied_at.date().isoformat()}: {explanation}")
    return facts.strip()[:FACTS_LIMIT]
