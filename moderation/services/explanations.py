"""Explanations: one structured record tying a verdict to the evidence behind it."""
from __future__ import annotations

from typing import Any, Mapping

from vlm_engine.types import Policy as EnginePolicy

DECISION_WORDS = {"allow": "allowed", "review": "sent to review", "remove": "removed"}


def explanation_build(*, scores: Mapping[str, float], policy: EnginePolicy,
                      verdict_decision: str) -> dict[str, Any]:
    """Scores against thresholds, plus a summary naming the strongest signals.

    Every number in the summary is taken from ``scores`` and the policy; nothing is invented.
    """
    rows = [
        {"category": c.slug, "name": c.name, "score": scores.get(c.slug, 0.0),
         "review_threshold": c.review_threshold, "remove_threshold": c.remove_threshold,
         "severity": c.severity}
        for c in policy.categories
    ]
    rows.sort(key=lambda r: r["score"], reverse=True)
    return {"policy_version": policy.version, "scores": rows,
            "summary": _summary(rows, verdict_decision)}


def _summary(rows: list[dict[str, Any]], decision: str) -> str:
    flagged = [r for r in rows if r["score"] >= r["review_threshold"]]
    verb = DECISION_WORDS.get(decision, decision)
    if not flagged:
        top = rows[0] if rows else None
        strongest = f" Strongest signal: {top['name']} at {top['score']:.2f}." if top else ""
        return f"The post was {verb}: no category reached its review threshold.{strongest}"
    parts = [f"{r['name']} {r['score']:.2f} (review ≥ {r['review_threshold']:.2f}, "
             f"remove ≥ {r['remove_threshold']:.2f})" for r in flagged[:3]]
    return f"The post was {verb}. Signals above threshold: {'; '.join(parts)}."
