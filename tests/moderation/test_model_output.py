"""Model output cleaned before storage: text, scores, boxes; the explanation built from it."""
from __future__ import annotations

from dataclasses import replace

import pytest

from moderation.services.explanations import explanation_build
from moderation.services.model_output import (BoxLimits, ModelOutputInvalid, model_boxes_clean,
                                              model_embedding_clean, model_scores_clean, model_text_clean)
from vlm_engine.types import Analysis, Answer, Category, Grounding, Policy, VerifierMatch, Word

LIMITS = BoxLimits(per_phrase=2, per_image=3, merge_iou=0.3)


@pytest.mark.parametrize(("raw", "clean"), [
    ("a\x00b", "ab"),
    ("line\none\ttab", "line\none\ttab"),
    ("\x1b[31mred\x7f\x85", "[31mred"),
    ("evil\u202etxt.exe", "eviltxt.exe"),
    ("lone \ud800 surrogate", "lone  surrogate"),
    ("  padded \x00 ", "padded"),
    (None, None),
])
def test_text_loses_control_and_format_characters(raw, clean):  # type: ignore[no-untyped-def]
    assert model_text_clean(raw) == clean


def test_text_is_capped():  # type: ignore[no-untyped-def]
    assert model_text_clean("abc " * 10, limit=6) == "abc ab"
    assert len(model_text_clean("x" * 5000) or "") == 2000


def test_scores_are_clamped_and_non_finite_ones_refused():  # type: ignore[no-untyped-def]
    assert model_scores_clean({"hate": 1.5, "violence": -0.2, "sexual": 0.1234567}) == {
        "hate": 1.0, "violence": 0.0, "sexual": 0.123457}
    with pytest.raises(ModelOutputInvalid, match="non-finite score for 'hate': inf"):
        model_scores_clean({"hate": float("inf")})
    with pytest.raises(ModelOutputInvalid, match="non-numeric score for 'hate'"):
        model_scores_clean({"hate": "high"})


def test_embeddings_become_float32_bytes_and_non_finite_ones_are_refused():  # type: ignore[no-untyped-def]
    assert model_embedding_clean((0.6, -0.8), role="image") == b"\x9a\x99\x19?\xcd\xccL\xbf"
    assert model_embedding_clean(None, role="text") is None
    with pytest.raises(ModelOutputInvalid, match="non-finite image embedding"):
        model_embedding_clean((0.6, float("nan")), role="image")


def test_boxes_are_clipped_merged_and_capped():  # type: ignore[no-untyped-def]
    raw = [
        {"phrase": "noose", "box": (10, 10, 50, 50), "score": 0.9},
        {"phrase": "noose", "box": (12, 12, 52, 52), "score": 0.8},     # merged into the first
        {"phrase": "noose", "box": (60, 0, 70, 10), "score": 0.7},
        {"phrase": "noose", "box": (80, 0, 90, 10), "score": 0.6},      # third box of the phrase: dropped
        {"phrase": "gun", "box": (-20, 90, 30, 400), "score": 0.5},     # clipped to 100 x 100
        {"phrase": "gun", "box": (200, 200, 300, 300), "score": 0.95},  # wholly outside: dropped
        {"phrase": "gun", "box": (0, 0, float("nan"), 5), "score": 0.9},
        {"phrase": "bat\x00", "box": (0, 0, 9, 9), "score": 0.4},       # fourth box of the image
    ]

    assert model_boxes_clean(raw, width=100, height=100, limits=LIMITS) == [
        {"phrase": "noose", "box": [10.0, 10.0, 52.0, 52.0], "score": 0.9},
        {"phrase": "noose", "box": [60.0, 0.0, 70.0, 10.0], "score": 0.7},
        {"phrase": "gun", "box": [0.0, 90.0, 30.0, 100.0], "score": 0.5},
    ]


def test_explanation_names_each_phrase_once_and_keeps_the_policy_version_an_integer(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_BOXES_PER_PHRASE": 5}
    policy = Policy(version="4", benign_prompts=(), categories=(
        Category(slug="hate", name="Hate", prompts=("x",), review_threshold=0.5, remove_threshold=0.9),))
    result = Analysis(key="k", scores={"hate": 0.2}, image_embedding=None, text_embedding=None,
                      model_version="m", timings_ms={}, caption="a\x00cap",
                      groundings=(Grounding(phrase="noose", box=(0, 0, 10, 10), score=0.9),
                                  Grounding(phrase="noose", box=(50, 50, 60, 60), score=0.8),
                                  Grounding(phrase="rope", box=(20, 20, 30, 30), score=0.3)))

    explanation = explanation_build(scores={"hate": 0.2}, policy=policy, verdict_decision="allow", result=result,
                                    image_size=(100, 100))

    assert explanation["policy_version"] == 4
    assert explanation["caption"] == "acap"
    assert explanation["summary"] == ("The post was allowed: no category reached its review threshold. "
                                      "Strongest signal: Hate at 0.20. Found in the image: “noose” (0.90), "
                                      "“rope” (0.30).")


def test_explanation_withholds_what_roles_without_a_checkpoint_produced():  # type: ignore[no-untyped-def]
    policy = Policy(version="1", benign_prompts=(), categories=(
        Category(slug="hate", name="Hate", prompts=("x",), review_threshold=0.5, remove_threshold=0.9),))
    result = Analysis(key="k", scores={"hate": 0.6}, image_embedding=None, text_embedding=None,
                      model_version="m", timings_ms={}, caption="garbage tokens", ocr_text="READ",
                      rationale="noise", answers=(Answer(question="Is there a weapon?", answer="zq"),),
                      groundings=(Grounding(phrase="noose", box=(0, 0, 10, 10), score=0.9),),
                      no_checkpoint=("embedder", "grounder", "generator"))

    explanation = explanation_build(scores={"hate": 0.6}, policy=policy, verdict_decision="review", result=result,
                                    image_size=(100, 100))

    assert (explanation["caption"], explanation["answers"], explanation["rationale"],
            explanation["groundings"], explanation["ocr_text"]) == (None, [], None, [], "READ")
    assert explanation["unavailable"] == {
        "scores": "unavailable: no checkpoint for embedder",
        "groundings": "unavailable: no checkpoint for grounder",
        "caption": "unavailable: no checkpoint for generator",
        "answers": "unavailable: no checkpoint for generator",
        "rationale": "unavailable: no checkpoint for generator"}
    assert explanation["roles"] == {"real": [], "no_checkpoint": ["embedder", "grounder", "generator"]}
    assert explanation["summary"] == (
        "The post was sent to review. Signals above threshold: Hate 0.60 (review ≥ 0.50, remove ≥ 0.90). "
        "These scores come from an embedder with random weights (no checkpoint for embedder): "
        "they are not a finding.")


def test_explanation_of_real_roles_has_nothing_unavailable():  # type: ignore[no-untyped-def]
    policy = Policy(version="1", benign_prompts=(), categories=(Category(slug="hate", name="Hate", prompts=("x",)),))
    result = Analysis(key="k", scores={"hate": 0.1}, image_embedding=None, text_embedding=None,
                      model_version="m", timings_ms={}, caption="a cat")
    explanation = explanation_build(scores={"hate": 0.1}, policy=policy, verdict_decision="allow", result=result)
    assert (explanation["unavailable"], explanation["caption"]) == ({}, "a cat")


def test_explanation_carries_the_read_words_cleaned_and_clipped():  # type: ignore[no-untyped-def]
    policy = Policy(version="1", benign_prompts=(), categories=(Category(slug="hate", name="Hate", prompts=("x",)),))
    words = (Word(text="HATE\x00", box=(10.0, 5.0, 60.0, 30.0), score=0.99),
             Word(text="YOU", box=(90.0, 5.0, 140.0, 30.0), score=0.98),
             Word(text="GONE", box=(150.0, 5.0, 160.0, 30.0), score=0.9))
    result = Analysis(key="k", scores={"hate": 0.1}, image_embedding=None, text_embedding=None,
                      model_version="m", timings_ms={}, ocr_text="HATE YOU GONE", ocr_words=words)

    explanation = explanation_build(scores={"hate": 0.1}, policy=policy, verdict_decision="allow", result=result,
                                    image_size=(120, 40))

    assert explanation["ocr_words"] == [{"text": "HATE", "box": [10.0, 5.0, 60.0, 30.0], "score": 0.99},
                                        {"text": "YOU", "box": [90.0, 5.0, 120.0, 30.0], "score": 0.98}]
    vlm_read = explanation_build(scores={"hate": 0.1}, policy=policy, verdict_decision="allow",
                                 result=replace(result, no_checkpoint=("reader",)))
    assert (vlm_read["ocr_text"], vlm_read["ocr_words"], vlm_read["unavailable"]) == (
        None, [], {"ocr_text": "unavailable: no checkpoint for reader",
                   "ocr_words": "unavailable: no checkpoint for reader"})


def test_summary_says_only_the_text_side_of_scores_is_a_finding_when_the_text_role_is_real():  # type: ignore[no-untyped-def]
    policy = Policy(version="1", benign_prompts=(), categories=(Category(slug="hate", name="Hate", prompts=("x",)),))
    result = Analysis(key="k", scores={"hate": 0.1}, image_embedding=None, text_embedding=None, model_version="m",
                      timings_ms={}, no_checkpoint=("embedder",), real_roles=("reader", "text"))
    explanation = explanation_build(scores={"hate": 0.1}, policy=policy, verdict_decision="allow", result=result)
    assert explanation["roles"] == {"real": ["reader", "text"], "no_checkpoint": ["embedder"]}
    assert explanation["summary"].endswith(
        " The image side of these scores comes from an embedder with random weights (no checkpoint for embedder);"
        " only their text side, from the text role, is a finding.")


def test_explanation_shows_the_verifiers_matches_only_from_a_real_checkpoint():  # type: ignore[no-untyped-def]
    policy = Policy(version="1", benign_prompts=(), categories=(
        Category(slug="hate", name="Hate", prompts=("x",), review_threshold=0.5, remove_threshold=0.9),
        Category(slug="spam", name="Spam", prompts=("y",))))
    matches = (VerifierMatch(category="hate", match=0.8125, prompt="a hateful\x00 meme", weight=0.3),
               VerifierMatch(category="spam", match=float("nan"), prompt="y", weight=0.3),
               VerifierMatch(category="gone", match=0.5, prompt="z", weight=0.3))
    result = Analysis(key="k", scores={"hate": 0.6, "spam": 0.1}, image_embedding=None, text_embedding=None,
                      model_version="m", timings_ms={}, verification=matches, real_roles=("embedder", "verifier"))

    shown = explanation_build(scores={"hate": 0.6, "spam": 0.1}, policy=policy, verdict_decision="review",
                              result=result)
    withheld = explanation_build(scores={"hate": 0.6, "spam": 0.1}, policy=policy, verdict_decision="review",
                                 result=replace(result, no_checkpoint=("verifier",), real_roles=("embedder",)))

    assert shown["verification"] == [{"category": "hate", "name": "Hate", "match": 0.8125,
                                      "prompt": "a hateful meme", "weight": 0.3}]
    assert shown["summary"].endswith(" Image–text match (verifier, weight 0.30 in the score): Hate 0.81.")
    assert (withheld["verification"], withheld["unavailable"]) == (
        [], {"verification": "unavailable: no checkpoint for verifier"})
    assert "Image–text match" not in withheld["summary"]
