"""Explanations: one structured record tying a verdict to the evidence behind it."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

from vlm_engine.types import Analysis as EngineAnalysis
from vlm_engine.types import Policy as EnginePolicy

DECISION_WORDS = {"allow": "allowed", "review": "sent to review", "remove": "removed"}
SUMMARY_BOXES = 3


def explanation_build(*, scores: Mapping[str, float], policy: EnginePolicy, verdict_decision: str,
                      result: EngineAnalysis | None = None) -> dict[str, Any]:
    """Scores against thresholds, the engine's evidence, and a summary naming the strongest signals.

    Every number, box and answer in the summary is taken from the stored evidence; nothing is invented.
    """
    rows = [
        {"category": c.slug, "name": c.name, "score": scores.get(c.slug, 0.0),
         "review_threshold": c.review_threshold, "remove_threshold": c.remove_threshold,
         "severity": c.severity}
        for c in policy.categories
    ]
    rows.sort(key=lambda r: r["score"], reverse=True)
    evidence = _evidence(result)
    return {"policy_version": policy.version, "scores": rows, **evidence,
            "nearest_examples": [], "summary": explanation_summary(rows, verdict_decision, evidence)}


def _evidence(result: EngineAnalysis | None) -> dict[str, Any]:
    if result is None:
        return {"groundings": [], "answers": [], "caption": None, "ocr_text": None, "rationale": None}
    groundings = sorted((asdict(g) for g in result.groundings), key=lambda g: -g["score"])
    for g in groundings:
        g["box"] = list(g["box"])
    return {"groundings": groundings, "answers": [asdict(a) for a in result.answers],
            "caption": result.caption, "ocr_text": result.ocr_text, "rationale": result.rationale}


def explanation_summary(rows: list[dict[str, Any]], decision: str, evidence: Mapping[str, Any]) -> str:
    verb = DECISION_WORDS.get(decision, decision)
    flagged = [r for r in rows if r["score"] >= r["review_threshold"]]
    if flagged:
        parts = [f"{r['name']} {r['score']:.2f} (review ≥ {r['review_threshold']:.2f}, "
                 f"remove ≥ {r['remove_threshold']:.2f})" for r in flagged[:3]]
        sentence = f"The post was {verb}. Signals above threshold: {'; '.join(parts)}."
    else:
        top = rows[0] if rows else None
        strongest = f" Strongest signal: {top['name']} at {top['score']:.2f}." if top else ""
        sentence = f"The post was {verb}: no category reached its review threshold.{strongest}"
    return sentence + _boxes_sentence(evidence.get("groundings") or [])


def _boxes_sentence(groundings: list[dict[str, Any]]) -> str:
    if not groundings:
        return ""
    shown = [f"“{g['phrase']}” ({g['score']:.2f})" for g in groundings[:SUMMARY_BOXES]]
    return f" Found in the image: {', '.join(shown)}."
