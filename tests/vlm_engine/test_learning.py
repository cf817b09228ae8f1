"""Tests for learning from reviewers: the fusion head, the kNN vote, calibration, metrics, splits, the engine."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open

from tests.vlm_engine.sample_images import image_bytes
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.learning import (
    AsifClassifier,
    KnnClassifier,
    LabelledEmbeddings,
    TrainedHead,
    TrainingConfig,
    dataset_digest,
    embeddings_pair,
    head_train,
    metrics_evaluate,
    sentences_stack,
    split_by_key,
)
from vlm_engine.learning.calibration import temperatures_fit
from vlm_engine.learning.dataset import joint_embeddings
from vlm_engine.learning.metrics import auroc
from vlm_engine.types import Analysis, Policy, PostInput

DIM = 16
# The label is the sign of the sum of image_j * text_j over these dims: a function of image ⊙ text.
PRODUCT_DIMS = 4
FAST = TrainingConfig(hidden=32, epochs=30, lr=1e-2, batch_size=100, patience=3, seed=0)
THRESHOLDS = {"violating": (0.5, 0.9)}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """Tiny models gain nothing from a second intra-op thread, and lose much when the CPUs are busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _product_dataset(rng: np.random.Generator, n: int, prefix: str) -> LabelledEmbeddings:
    image, text = _unit_rows(rng, n), _unit_rows(rng, n)
    labels = ((image[:, :PRODUCT_DIMS] * text[:, :PRODUCT_DIMS]).sum(axis=1) > 0).astype(np.float32)
    return LabelledEmbeddings(image, text, labels[:, None], tuple(f"{prefix}{row}" for row in range(n)))


@pytest.fixture(scope="module")
def splits() -> tuple[LabelledEmbeddings, LabelledEmbeddings, LabelledEmbeddings]:
    rng = np.random.default_rng(7)
    return _product_dataset(rng, 1500, "train"), _product_dataset(rng, 300, "val"), _product_dataset(rng, 1000, "test")


@pytest.fixture(scope="module")
def head(splits: tuple[LabelledEmbeddings, ...]) -> TrainedHead:
    train, validation, _ = splits
    return head_train(train, validation, categories=["violating"], config=FAST)


def _logistic_auroc(train: np.ndarray, labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float | None:
    """A logistic model on one side alone, by plain gradient descent."""
    weights, bias = np.zeros(train.shape[1]), 0.0
    for _ in range(300):
        error = 1 / (1 + np.exp(-(train @ weights + bias))) - labels
        weights -= 0.5 * train.T @ error / len(labels)
        bias -= 0.5 * float(error.mean())
    return auroc(test @ weights + bias, test_labels)


def test_head_learns_image_times_text_where_zero_shot_and_one_side_cannot(
    splits: tuple[LabelledEmbeddings, ...], head: TrainedHead
) -> None:
    train, _, test = splits
    labels = test.labels[:, 0]
    head_auroc = auroc(head.predict(test.image, test.text)[:, 0], labels)
    prompt = _unit_rows(np.random.default_rng(1), 1)[0]
    zero_shot_auroc = auroc(joint_embeddings(test.image, test.text) @ prompt, labels)
    image_auroc = _logistic_auroc(train.image, train.labels[:, 0], test.image, labels)
    text_auroc = _logistic_auroc(train.text, train.labels[:, 0], test.text, labels)
    assert head_auroc is not None and head_auroc >= 0.95
    for one_side in (zero_shot_auroc, image_auroc, text_auroc):
        assert one_side is not None and 0.4 <= one_side <= 0.6


def test_knn_reacts_to_one_new_label(splits: tuple[LabelledEmbeddings, ...]) -> None:
    train, _, test = splits
    query_image, query_text = test.image[:1], test.text[:1]
    nearest = int(np.argmax(joint_embeddings(train.image, train.text) @ joint_embeddings(query_image, query_text)[0]))
    before = float(train.labels[nearest, 0])
    knn = KnnClassifier(train, categories=["violating"], k=1)
    assert knn.predict(query_image, query_text).tolist() == [[before]]
    relabelled = train.labels.copy()
    relabelled[nearest, 0] = 1.0 - before  # a reviewer overturns one decision
    changed = LabelledEmbeddings(train.image, train.text, relabelled, train.keys)
    assert KnnClassifier(changed, categories=["violating"], k=1).predict(query_image, query_text).tolist() == [
        [1.0 - before]
    ]


def test_knn_weights_votes_by_similarity() -> None:
    basis = np.eye(3, dtype=np.float32)
    examples = np.stack([basis[0], basis[1], 0.6 * basis[0] + 0.8 * basis[2], basis[2]])
    labels = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    knn = KnnClassifier(
        LabelledEmbeddings(examples, examples, labels, ("a", "b", "c", "d")), categories=["x", "y"], k=2, min_labels=4
    )
    # Nearest to basis[0]: "a" (similarity 1) and "c" (0.6); "b" and "d" have similarity 0.
    probs = knn.predict(basis[:1], basis[:1])
    assert probs[0].tolist() == pytest.approx([1.0 / 1.6, 0.6 / 1.6], rel=1e-6)


def test_knn_has_no_opinion_below_min_labels() -> None:
    rows = np.eye(4, dtype=np.float32)
    labels = np.array([[1.0, np.nan], [0.0, 1.0], [1.0, np.nan], [0.0, np.nan]], dtype=np.float32)
    knn = KnnClassifier(LabelledEmbeddings(rows, rows, labels, tuple("abcd")), categories=["x", "y"], k=1, min_labels=2)
    probs = knn.predict(rows[:1], rows[:1])
    assert probs[0, 0] == 1.0
    assert np.isnan(probs[0, 1])


def test_training_is_deterministic(splits: tuple[LabelledEmbeddings, ...], head: TrainedHead) -> None:
    train, validation, test = splits
    again = head_train(train, validation, categories=["violating"], config=FAST)
    first, second = (
        metrics_evaluate(probs, test.labels, categories=["violating"], thresholds=THRESHOLDS)
        for probs in (head.predict(test.image, test.text), again.predict(test.image, test.text))
    )
    assert first == second
    assert again.digest == head.digest
    assert again.temperatures == head.temperatures
    assert len(head.digest) == 12


def test_training_reports_progress(splits: tuple[LabelledEmbeddings, ...]) -> None:
    train, validation, _ = splits
    calls: list[tuple[int, int, float]] = []
    config = TrainingConfig(hidden=8, epochs=3, batch_size=500, patience=0)
    head_train(train, validation, categories=["violating"], config=config, progress=lambda *call: calls.append(call))
    assert [(epoch, total) for epoch, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(loss > 0 for _, _, loss in calls)


def test_save_load_round_trip(tmp_path: Path, splits: tuple[LabelledEmbeddings, ...], head: TrainedHead) -> None:
    _, _, test = splits
    path = tmp_path / "head.safetensors"
    head.save(path)
    loaded = TrainedHead.load(path)
    assert loaded.predict(test.image, test.text).tolist() == head.predict(test.image, test.text).tolist()
    assert (loaded.categories, loaded.config, loaded.temperatures) == (head.categories, head.config, head.temperatures)
    assert loaded.digest == head.digest
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] == head.digest
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        assert json.loads(metadata["categories"]) == ["violating"]
        assert json.loads(metadata["config"])["hidden"] == FAST.hidden
        assert handle.get_tensor("temperatures").tolist() == list(head.temperatures)
        assert handle.get_tensor("image_proj.weight").shape == (FAST.hidden, DIM)


def test_load_rejects_other_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a saved fusion head"):
        TrainedHead.load(path)


def test_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 4.0, size=(20000, 1))
    labels = (rng.random((20000, 1)) < 1 / (1 + np.exp(-logits / 2.0))).astype(np.float64)
    [temperature] = temperatures_fit(logits, labels)
    assert temperature == pytest.approx(2.0, abs=0.1)


def test_temperature_stays_one_with_a_single_class() -> None:
    assert temperatures_fit(np.array([[2.0], [3.0]]), np.array([[1.0], [1.0]])).tolist() == [1.0]


def test_split_by_key_is_deterministic_disjoint_and_complete() -> None:
    keys = [f"post-{number}" for number in range(1000)]
    train, validation, test = split_by_key(keys)
    assert split_by_key(keys) == (train, validation, test)
    assert sorted(train + validation + test) == list(range(1000))
    assert (len(train), len(validation), len(test)) == (728, 133, 139)


def test_split_by_key_keeps_existing_keys_in_their_split() -> None:
    keys = [f"post-{number}" for number in range(500)]
    grown = [f"new-{number}" for number in range(300)] + keys  # new keys, and the old ones at new rows

    def split_of(split: tuple[list[int], list[int], list[int]], names: list[str]) -> dict[str, int]:
        return {names[row]: side for side, rows in enumerate(split) for row in rows}

    before, after = split_of(split_by_key(keys), keys), split_of(split_by_key(grown), grown)
    assert {key: after[key] for key in keys} == before


def test_split_by_key_rejects_fractions_over_one() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        split_by_key(["a"], validation=0.6, test=0.5)


def test_dataset_digest_changes_with_any_label() -> None:
    rows = np.eye(3, dtype=np.float32)
    data = LabelledEmbeddings(rows, rows, np.zeros((3, 1), np.float32), ("a", "b", "c"))
    relabelled = LabelledEmbeddings(rows, rows, np.array([[0.0], [1.0], [0.0]], np.float32), ("a", "b", "c"))
    assert dataset_digest(data) == dataset_digest(LabelledEmbeddings(rows.copy(), rows, data.labels, data.keys))
    assert dataset_digest(data) != dataset_digest(relabelled)
    assert len(dataset_digest(data)) == 16


def test_embeddings_pair_fills_the_missing_side() -> None:
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    image, text = embeddings_pair([a, None, a], [b, b, None])
    assert image.tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    assert text.tolist() == [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]


def test_metrics_evaluate_on_a_hand_made_table() -> None:
    probs = np.array([[0.125, 0.0], [0.375, 0.25], [0.25, 0.5], [0.75, 0.0], [0.875, 0.125], [0.625, 0.0]])
    labels = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [1, 0], [0, 0]], dtype=np.float32)
    result = metrics_evaluate(probs, labels, categories=["a", "b"], thresholds={"a": (0.5, 0.8), "b": (0.3, 0.8)})
    a = {
        "auroc": 7 / 9,
        "ece": 2.25 / 6,
        "support": 3,
        "n": 6,
        "review": {"threshold": 0.5, "accuracy": 4 / 6, "f1": 2 / 3, "precision": 2 / 3, "recall": 2 / 3},
        "remove": {"threshold": 0.8, "accuracy": 4 / 6, "f1": 0.5, "precision": 1.0, "recall": 1 / 3},
    }
    b = {
        "auroc": None,  # a single class
        "ece": 0.875 / 6,
        "support": 0,
        "n": 6,
        "review": {"threshold": 0.3, "accuracy": 5 / 6, "f1": 0.0, "precision": 0.0, "recall": 0.0},
        "remove": {"threshold": 0.8, "accuracy": 1.0, "f1": 0.0, "precision": 0.0, "recall": 0.0},
    }
    assert result["categories"] == {"a": a, "b": b}
    assert result["macro"] == {
        "auroc": 7 / 9,
        "ece": (2.25 / 6 + 0.875 / 6) / 2,
        "support": 3,
        "review": {"accuracy": (4 / 6 + 5 / 6) / 2, "f1": 1 / 3, "precision": 1 / 3, "recall": 1 / 3},
        "remove": {"accuracy": (4 / 6 + 1.0) / 2, "f1": 0.25, "precision": 0.5, "recall": 1 / 6},
    }
    assert json.loads(json.dumps(result)) == result


def test_import_is_light_and_never_reaches_the_web_side() -> None:
    watched = ("torch", "django", "celery", "moderation", "workers")
    script = f"import sys, vlm_engine.learning\nprint(sorted(m for m in {watched!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class _NoOpinionOnFirst:
    """A classifier without an opinion on the first post of a batch."""

    categories = ("spam",)
    version = "stub-1"

    def predict(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None = None) -> np.ndarray:
        probs = np.full((len(image), 1), 0.25)
        probs[0, 0] = np.nan
        return probs


@pytest.fixture
def clip_engine(tiny_dir: Path) -> Engine:
    return Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="",
                                                       verifier=""))


def _posts() -> list[PostInput]:
    return [
        PostInput(key="image", image=image_bytes((40, 32), seed=2)),
        PostInput(key="text", image=None, text="buy cheap pills"),
        PostInput(key="both", image=image_bytes((32, 48), seed=3), text="a cat"),
    ]


@pytest.mark.slow
def test_engine_takes_the_heads_probabilities(clip_engine: Engine, policy: Policy) -> None:
    rng = np.random.default_rng(0)
    dim = clip_engine.clip.embedding_dim
    data = LabelledEmbeddings(
        _unit_rows(rng, 40, dim), _unit_rows(rng, 40, dim), rng.integers(0, 2, (40, 2)).astype(np.float32),
        tuple(f"k{row}" for row in range(40)),
    )
    head = head_train(data, data, categories=["violence", "not_in_policy"], config=TrainingConfig(hidden=8, epochs=2))
    zero_shot = clip_engine.analyze(_posts(), policy)
    analyses = clip_engine.analyze(_posts(), policy, classifier=head)
    image, text = embeddings_pair(*(_embeddings(zero_shot, side) for side in ("image_embedding", "text_embedding")))
    expected = head.predict(image, text)[:, 0].tolist()
    assert [analysis.scores["violence"] for analysis in analyses] == expected
    for analysis, reference in zip(analyses, zero_shot):
        assert {slug: analysis.scores[slug] for slug in ("spam", "drugs")} == {
            slug: reference.scores[slug] for slug in ("spam", "drugs")
        }
        assert set(analysis.scores) == {"violence", "spam", "drugs"}
        assert analysis.model_version == f"{clip_engine.model_version}+head:{head.version}"


@pytest.mark.slow
def test_engine_falls_back_to_zero_shot_where_the_classifier_has_no_opinion(
    clip_engine: Engine, policy: Policy
) -> None:
    zero_shot = clip_engine.analyze(_posts(), policy)
    first, *rest = clip_engine.analyze(_posts(), policy, classifier=_NoOpinionOnFirst())
    assert (first.scores, first.model_version) == (zero_shot[0].scores, clip_engine.model_version)
    for analysis, reference in zip(rest, zero_shot[1:]):
        assert analysis.scores == {**reference.scores, "spam": 0.25}
        assert analysis.model_version == f"{clip_engine.model_version}+head:stub-1"


def _embeddings(analyses: list[Analysis], side: str) -> list[np.ndarray | None]:
    return [None if getattr(a, side) is None else np.array(getattr(a, side), np.float32) for a in analyses]


def _sentence_set() -> tuple[LabelledEmbeddings, np.ndarray]:
    """Four anchors whose CLIP views are all alike; only the sentence view tells them apart."""
    clip = np.tile(np.array([[1.0, 0.0]], np.float32), (4, 1))
    sentence = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1]], np.float32)
    labels = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)
    return LabelledEmbeddings(image=clip, text=clip, labels=labels, keys=("a", "b", "c", "d"), sentence=sentence), clip


@pytest.mark.parametrize("make", [
    lambda data: KnnClassifier(data, categories=["hate"], k=4, min_labels=1, sentence_weight=0.5),
    lambda data: AsifClassifier(data, categories=["hate"], k=4, min_labels=1, sentence_weight=0.5),
])
def test_the_sentence_view_decides_where_the_clip_views_cannot(make: Any) -> None:
    data, clip = _sentence_set()
    vote = make(data)
    queries = np.array([[1, 0.05, 0], [0.05, 1, 0], [0, 0, 0]], np.float32)  # the last: no sentence embedding

    with_sentence = vote.predict(clip[:3], clip[:3], queries)[:, 0]
    without = vote.predict(clip[:1], clip[:1])[:, 0]

    assert with_sentence[0] > 0.6 and with_sentence[1] < 0.4
    assert with_sentence[2] == pytest.approx(0.5) and without[0] == pytest.approx(0.5)  # CLIP alone: a tie
    clip_only = make(LabelledEmbeddings(image=clip, text=clip, labels=data.labels, keys=data.keys))
    assert clip_only.predict(clip[:1], clip[:1], queries[:1]).tolist() == vote.predict(clip[:1], clip[:1]).tolist()


def test_sentences_stack_zero_fills_missing_and_foreign_sized_rows() -> None:
    rows = [np.array([1.0, 2.0], np.float32), None, np.array([3.0], np.float32)]

    assert sentences_stack(rows).tolist() == [[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]
    assert sentences_stack([None, None]) is None
    data, _ = _sentence_set()
    assert data.take([2, 0]).sentence.tolist() == data.sentence[[2, 0]].tolist()
    assert dataset_digest(data) != dataset_digest(replace(data, sentence=None))


def test_a_head_trained_with_sentences_uses_them_and_saves_their_projection(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, dim = 120, 8
    clip = np.tile(np.eye(dim, dtype=np.float32)[:1], (n, 1))  # the CLIP views say nothing
    labels = rng.integers(0, 2, (n, 1)).astype(np.float32)
    sentence = (np.where(labels == 1, 1.0, -1.0) * np.ones((n, 4)) + rng.normal(0, 0.3, (n, 4))).astype(np.float32)
    data = LabelledEmbeddings(image=clip, text=clip, labels=labels, keys=tuple(f"k{i}" for i in range(n)),
                              sentence=sentence)
    train, validation = data.take(range(80)), data.take(range(80, 100))
    head = head_train(train, validation, categories=["hate"], config=TrainingConfig(hidden=16, epochs=30))
    test = data.take(range(100, n))

    value = auroc(head.predict(test.image, test.text, test.sentence)[:, 0], test.labels[:, 0])
    head.save(tmp_path / "head.safetensors")
    loaded = TrainedHead.load(tmp_path / "head.safetensors")

    assert value is not None and value > 0.95
    assert loaded.model.sentence_dim == 4
    assert loaded.predict(test.image, test.text, test.sentence).tolist() == \
        head.predict(test.image, test.text, test.sentence).tolist()
    no_sentence = head.predict(test.image, test.text)  # zeros in their place: one answer for all
    assert np.allclose(no_sentence, no_sentence[0])
