"""Explanations: one structured record tying a verdict to the evidence behind it."""
from __future__ import annotations

import math
from typing import Any, Mapping

from moderation.conf import moderation_settings
from moderation.services.model_output import BoxLimits, model_boxes_clean, model_text_clean, model_words_clean
from vlm_engine.types import Analysis as EngineAnalysis
from vlm_engine.types import Policy as EnginePolicy

DECISION_WORDS = {"allow": "allowed", "review": "sent to review", "remove": "removed"}
SUMMARY_BOXES = 3
# Which role produced each explanation field: a role on random weights produced noise, which is
# withheld and replaced by an `unavailable` marker. Scores stay (the verdict needs them) but are marked.
FIELDS_BY_ROLE = {"embedder": ("scores",), "grounder": ("groundings",),
                  "generator": ("caption", "answers", "rationale"), "reader": ("ocr_text", "ocr_words"),
                  "verifier": ("verification",)}
WITHHELD = {"groundings": [], "answers": [], "caption": None, "ocr_text": None, "ocr_words": [],
            "rationale": None, "verification": []}


def unavailable_marker(role: str) -> str:
    """What the API and the review page say instead of the output of a role without a real checkpoint."""
    return unavailable_because(f"no checkpoint for {role}")


def unavailable_because(reason: str) -> str:
    """What the API says instead of an output the configured model cannot give ("blip answers no questions")."""
    return f"unavailable: {reason}"


def explanation_build(*, scores: Mapping[str, float], policy: EnginePolicy, verdict_decision: str,
                      result: EngineAnalysis | None = None, image_size: tuple[int, int] | None = None
                      ) -> dict[str, Any]:
    """Scores against thresholds, the engine's evidence, and a summary naming the strongest signals.

    Every number, box and answer in the summary is taken from the stored evidence; nothing is
    invented. ``scores`` must already be clean (``model_scores_clean``); the generated text and
    boxes of ``result`` are cleaned here, boxes against ``image_size`` (width, height).
    """
    rows = [
        {"category": c.slug, "name": c.name, "score": scores.get(c.slug, 0.0),
         "review_threshold": c.review_threshold, "remove_threshold": c.remove_threshold,
         "severity": c.severity}
        for c in policy.categories
    ]
    rows.sort(key=lambda r: r["score"], reverse=True)
    unavailable = _unavailable(result)
    evidence = {**_evidence(result, image_size=image_size, policy=policy),
                **{k: v for k, v in WITHHELD.items() if k in unavailable}}
    summary = explanation_summary(rows, verdict_decision, evidence)
    real = list(result.real_roles) if result is not None else []
    summary += _random_scores_sentence(unavailable, real)
    # The policy version is the same integer everywhere (API, events, webhooks); the engine's
    # Policy carries it as a string.
    return {"policy_version": int(policy.version), "scores": rows, **evidence,
            "nearest_examples": [], "unavailable": unavailable,
            "roles": {"real": real, "no_checkpoint": list(result.no_checkpoint) if result is not None else []},
            "summary": summary}


def _random_scores_sentence(unavailable: Mapping[str, str], real: list[str]) -> str:
    if "scores" not in unavailable:
        return ""
    if "text" in real:
        return (" The image side of these scores comes from an embedder with random weights (no checkpoint for"
                " embedder); only their text side, from the text role, is a finding.")
    return (" These scores come from an embedder with random weights (no checkpoint for embedder):"
            " they are not a finding.")


def _unavailable(result: EngineAnalysis | None) -> dict[str, str]:
    """Explanation field -> marker, for each field a role without a real checkpoint would have filled."""
    missing = result.no_checkpoint if result is not None else ()
    return {field: unavailable_marker(role) for role in missing for field in FIELDS_BY_ROLE.get(role, ())}


def _verification(result: EngineAnalysis, policy: EnginePolicy) -> list[dict[str, Any]]:
    """The verifier's match per flagged category, in policy order, with the share it took in the score."""
    names = {c.slug: c.name for c in policy.categories}
    return [{"category": m.category, "name": names.get(m.category, m.category), "match": min(max(m.match, 0.0), 1.0),
             "prompt": model_text_clean(m.prompt), "weight": m.weight}
            for m in result.verification if m.category in names and math.isfinite(m.match)]


def _evidence(result: EngineAnalysis | None, *, image_size: tuple[int, int] | None,
              policy: EnginePolicy) -> dict[str, Any]:
    if result is None:
        return dict(WITHHELD)
    s = moderation_settings
    width, height = image_size if image_size else (None, None)
    groundings = model_boxes_clean(
        [{"phrase": g.phrase, "box": g.box, "score": g.score} for g in result.groundings], width=width,
        height=height, limits=BoxLimits(per_phrase=s.MAX_BOXES_PER_PHRASE, per_image=s.MAX_BOXES_PER_IMAGE,
                                        merge_iou=s.BOX_MERGE_IOU))
    answers = [{"question": model_text_clean(a.question), "answer": model_text_clean(a.answer)}
               for a in result.answers]
    words = model_words_clean([{"text": w.text, "box": w.box, "score": w.score} for w in result.ocr_words],
                              width=width, height=height)
    return {"groundings": groundings, "answers": answers, "caption": model_text_clean(result.caption),
            "ocr_text": model_text_clean(result.ocr_text), "ocr_words": words,
            "rationale": model_text_clean(result.rationale), "verification": _verification(result, policy)}


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
    return model_text_clean(sentence + _boxes_sentence(evidence.get("groundings") or [])
                            + _verification_sentence(evidence.get("verification") or [])) or ""


def _verification_sentence(matches: list[dict[str, Any]]) -> str:
    if not matches:
        return ""
    shown = "; ".join(f"{m['name']} {m['match']:.2f}" for m in matches[:SUMMARY_BOXES])
    counted = f"weight {matches[0]['weight']:.2f} in the score" if matches[0]["weight"] else "shown only, not counted"
    return f" Image–text match (verifier, {counted}): {shown}."


def _boxes_sentence(groundings: list[dict[str, Any]]) -> str:
    """The best box of each phrase, strongest phrases first; a phrase is named once."""
    best: dict[str, float] = {}
    for g in sorted(groundings, key=lambda g: -g["score"]):
        best.setdefault(g["phrase"], g["score"])
    shown = [f"“{phrase}” ({score:.2f})" for phrase, score in list(best.items())[:SUMMARY_BOXES]]
    return f" Found in the image: {', '.join(shown)}." if shown else ""
