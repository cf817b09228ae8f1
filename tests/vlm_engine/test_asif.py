"""ASIF precedents: exact votes on hand-made anchors, a new anchor counting at once, nearest anchors."""
from __future__ import annotations

import numpy as np
import pytest

from vlm_engine.learning import AsifClassifier, LabelledEmbeddings, Precedent

# Three anchors in 2-d, the same vector for image and text: a0 violating, a1 and a2 not.
A0, A1, A2 = (1.0, 0.0), (0.0, 1.0), (0.6, 0.8)
QUERY_IMAGE, QUERY_TEXT = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])


def anchors(rows: list[tuple[tuple[float, float], tuple[float, float], float]]) -> LabelledEmbeddings:
    return LabelledEmbeddings(image=np.array([r[0] for r in rows], dtype=np.float32),
                              text=np.array([r[1] for r in rows], dtype=np.float32),
                              labels=np.array([[r[2]] for r in rows], dtype=np.float32),
                              keys=tuple(f"p{i}" for i in range(len(rows))))


def asif(rows: list[tuple[tuple[float, float], tuple[float, float], float]]) -> AsifClassifier:
    return AsifClassifier(anchors(rows), categories=["hate"], k=2, exponent=2, min_labels=1)


THREE = [(A0, A0, 1.0), (A1, A1, 0.0), (A2, A2, 0.0)]


def test_vote_is_the_violating_share_of_top_k_similarities_to_the_exponent():  # type: ignore[no-untyped-def]
    # Image side: top-2 of (1, 0, 0.6) -> (1, 0.36) after ^2 -> p0 = 1/1.36. Text side: top-2 of
    # (0, 1, 0.8) -> p1, p2 only. The mean of both puts (1/1.36)/2 on the one violating anchor.
    scores = asif(THREE).predict(QUERY_IMAGE, QUERY_TEXT)

    assert scores.shape == (1, 1)
    assert scores[0, 0] == pytest.approx(1 / 1.36 / 2, abs=1e-7)


def test_nearest_ranks_anchors_by_their_weight_in_the_vote():  # type: ignore[no-untyped-def]
    nearest = asif(THREE).nearest(QUERY_IMAGE, QUERY_TEXT, count=3)

    assert nearest == [[
        Precedent(key="p0", label="hate", similarity=0.5, weight=round(1 / 1.36 / 2, 6)),
        Precedent(key="p2", label="not_violating", similarity=0.7,
                  weight=round((0.36 / 1.36 + 0.64 / 1.64) / 2, 6)),
        Precedent(key="p1", label="not_violating", similarity=0.5, weight=round(1 / 1.64 / 2, 6)),
    ]]


def test_nearest_keeps_only_allowed_keys_and_count():  # type: ignore[no-untyped-def]
    nearest = asif(THREE).nearest(QUERY_IMAGE, QUERY_TEXT, count=1, allowed={"p1", "p2"})

    assert [p.key for p in nearest[0]] == ["p2"]
    assert asif(THREE).nearest(QUERY_IMAGE, QUERY_TEXT, count=5, allowed=set()) == [[]]


def test_a_new_anchor_counts_at_once():  # type: ignore[no-untyped-def]
    # A violating anchor identical to the query takes half of each side's top-2: 0.25 + 0.5 = 0.75.
    with_new = asif([*THREE, ((1.0, 0.0), (0.0, 1.0), 1.0)])

    assert with_new.predict(QUERY_IMAGE, QUERY_TEXT)[0, 0] == pytest.approx(0.75, abs=1e-7)
    assert asif(THREE).predict(QUERY_IMAGE, QUERY_TEXT)[0, 0] == pytest.approx(0.367647, abs=1e-6)


def test_a_higher_exponent_sharpens_towards_the_closest_anchor():  # type: ignore[no-untyped-def]
    data = anchors(THREE)
    blunt = AsifClassifier(data, categories=["hate"], k=3, exponent=1, min_labels=1)
    sharp = AsifClassifier(data, categories=["hate"], k=3, exponent=8, min_labels=1)
    query = np.array([[0.9, 0.436]])

    # Image and text are the same here, so the score is that side's share alone.
    sims = np.array([0.9, 0.436, 0.6 * 0.9 + 0.8 * 0.436]) / np.linalg.norm([0.9, 0.436])
    assert blunt.predict(query, query)[0, 0] == pytest.approx(sims[0] / sims.sum(), abs=1e-7)
    assert sharp.predict(query, query)[0, 0] == pytest.approx(sims[0] ** 8 / (sims ** 8).sum(), abs=1e-7)


def test_too_few_labels_give_no_opinion_and_undecided_anchors_do_not_vote():  # type: ignore[no-untyped-def]
    data = anchors([(A0, A0, 1.0), (A1, A1, float("nan")), (A2, A2, 0.0)])
    assert np.isnan(AsifClassifier(data, categories=["hate"], min_labels=3).predict(QUERY_IMAGE, QUERY_IMAGE)[0, 0])

    # Only p0 and p2 vote: image sims (1, 0.6) -> (1, 0.36) -> p0's share 1/1.36.
    scores = AsifClassifier(data, categories=["hate"], k=2, exponent=2, min_labels=2).predict(QUERY_IMAGE,
                                                                                               QUERY_IMAGE)
    assert scores[0, 0] == pytest.approx(1 / 1.36, abs=1e-7)


def test_a_query_opposite_every_anchor_gets_the_base_rate():  # type: ignore[no-untyped-def]
    query = np.array([[-0.6, -0.8]])
    assert asif(THREE).predict(query, query)[0, 0] == pytest.approx(1 / 3, abs=1e-7)
    assert asif(THREE).nearest(query, query, count=3) == [[]]


@pytest.mark.parametrize("kwargs, message", [({"k": 0}, "k must be at least 1"),
                                             ({"exponent": 0}, "exponent must be positive"),
                                             ({"categories": ["a", "b"]}, "2 categories for 1 label columns")])
def test_bad_settings_are_refused(kwargs, message):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        AsifClassifier(anchors(THREE), **{"categories": ["hate"], **kwargs})


def test_asif_beats_knn_with_few_decisions_when_only_the_text_tells_memes_apart():  # type: ignore[no-untyped-def]
    from bench.precedents import compare, templates

    figures = compare(templates, seeds=10)

    assert figures["asif_p1"]["30"]["mean"] > figures["knn"]["30"]["mean"] + 0.02
    assert figures["asif_p1"]["100"]["mean"] >= figures["knn"]["100"]["mean"]


@pytest.mark.slow
def test_on_real_minilm_meme_text_asif_at_exponent_1_matches_knn(minilm):  # type: ignore[no-untyped-def]
    from bench.precedents import memes

    figures = memes(seeds=2, role=minilm)

    # Image and text are the same text embedding here, so exponent 1 weighs like kNN; sharper loses.
    assert figures["asif_p1"]["leave_one_out"] == pytest.approx(figures["knn"]["leave_one_out"], abs=0.01)
    assert figures["asif_p1"]["after_30"]["mean"] >= 0.8
    assert figures["asif_p8"]["after_30"]["mean"] < figures["asif_p1"]["after_30"]["mean"]
