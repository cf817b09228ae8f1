"""Learning from reviewers: dataset, training runs, promotion and rollback of classifier heads."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import ModelVersion, Policy, Post, ReviewDecision
from moderation.selectors.learning import (clip_version_current, embedding_from_bytes, labelled_rows,
                                           model_version_active, text_role_version_current)
from moderation.errors import ServiceError
from moderation.selectors.reviews import models_roles_latest
from moderation.services.policies import policy_active

Progress = Callable[[int, int, float], None]
MIN_TRAINING_LABELS = 20
# Below this many posts a validation or test split says little: figures from it are not to be trusted.
MIN_TRUSTED_SPLIT = 30
# A category's held-out AUROC needs at least this many violating and not-violating test posts.
MIN_TRUSTED_CLASS = 5
SPLITS = ("train", "validation", "test")
NOT_VIOLATING = "not violating"


@dataclass(frozen=True)
class DatasetSplits:
    """What a training run learns from: posts per split, and per label (each category, then
    NOT_VIOLATING) the posts of each split that carry it."""

    sizes: dict[str, int]
    labels: dict[str, dict[str, int]]


def splits_untrusted(*, sizes: dict[str, int]) -> list[str]:
    """The validation and test splits with fewer than MIN_TRUSTED_SPLIT posts, in SPLITS order."""
    return [split for split in SPLITS[1:] if sizes.get(split, 0) < MIN_TRUSTED_SPLIT]


def aurocs_trusted(*, metrics: dict[str, Any]) -> dict[str, bool]:
    """Per category of ``metrics`` (as ``metrics_evaluate`` returns them) whether its held-out AUROC
    rests on at least MIN_TRUSTED_CLASS posts of each class; under "macro" whether the average does
    (at least one category, and every category it averages, trusted)."""
    categories: dict[str, dict[str, Any]] = metrics.get("categories", {})
    trusted = {slug: _auroc_trusted(figures) for slug, figures in categories.items()}
    averaged = [slug for slug, figures in categories.items() if figures.get("auroc") is not None]
    return trusted | {"macro": bool(averaged) and all(trusted[slug] for slug in averaged)}


def _auroc_trusted(figures: dict[str, Any]) -> bool:
    positives = int(figures.get("support") or 0)
    negatives = int(figures.get("n") or 0) - positives
    return figures.get("auroc") is not None and min(positives, negatives) >= MIN_TRUSTED_CLASS


def dataset_build(*, categories: list[str]) -> Any | None:
    """The labelled set: reviewers' standing decisions × the embeddings they reviewed (None: empty).

    Its sentence embeddings are those of the text role the workers run now; a post analysed
    without one (before they were stored, or by another text role) has a zero row there, and
    without any (the text role is off) the set has none: the classifiers then use CLIP's alone.
    """
    from vlm_engine.learning import LabelledEmbeddings, embeddings_pair, sentences_stack

    clip = clip_version_current()
    rows = labelled_rows(clip=clip, text_role=text_role_version_current()) if clip else []
    if not rows:
        return None
    labels = np.zeros((len(rows), len(categories)), dtype=np.float32)
    index = {slug: i for i, slug in enumerate(categories)}
    for r, row in enumerate(rows):
        if row.category in index:
            labels[r, index[row.category]] = 1.0
    image, text = embeddings_pair([embedding_from_bytes(r.image) for r in rows],
                                  [embedding_from_bytes(r.text) for r in rows])
    sentence = sentences_stack([embedding_from_bytes(r.sentence) for r in rows])
    return LabelledEmbeddings(image=image, text=text, labels=labels, keys=tuple(r.post_id for r in rows),
                              sentence=sentence)


def _thresholds(policy: Policy) -> dict[str, tuple[float, float]]:
    return {c.slug: (c.review_threshold, c.remove_threshold) for c in policy.categories.all()}


def model_train(*, created_by: Any = None, seed: int = 0, progress: Progress | None = None,
                on_dataset: Callable[[DatasetSplits], None] | None = None) -> ModelVersion:
    """Train a fusion head on the labelled set, evaluate it on the held-out split, store a candidate.

    ``on_dataset`` is told the split sizes and label counts before training starts; ``progress``
    after each epoch (epoch, most epochs, mean training loss). A candidate whose test split is
    too small to trust (``splits_untrusted``) is never promoted automatically.

    Raises:
        ServiceError: too few labels to train on.
    """
    from vlm_engine.learning import TrainingConfig, dataset_digest, head_train, split_by_key

    policy = policy_active()
    categories = list(policy.categories.order_by("position", "slug").values_list("slug", flat=True))
    data = dataset_build(categories=categories)
    count = len(data.keys) if data is not None else 0
    if data is None or count < MIN_TRAINING_LABELS:
        raise ServiceError("too_few_labels", f"{count} labelled posts; at least {MIN_TRAINING_LABELS} needed.")
    train_idx, val_idx, test_idx = split_by_key(list(data.keys))
    if on_dataset is not None:
        on_dataset(_dataset_splits(data.labels, categories, dict(zip(SPLITS, (train_idx, val_idx, test_idx)))))
    config = TrainingConfig(seed=seed)
    head = head_train(data.take(train_idx), data.take(val_idx), categories=categories, config=config,
                      progress=progress)
    test = data.take(test_idx)
    metrics = _evaluate(head.predict(test.image, test.text, test.sentence), test, categories, policy)
    active = model_version_active()
    baseline = _baseline_metrics(active, test, categories, policy)
    return _candidate_store(head=head, metrics=metrics, baseline=baseline, parent=active, created_by=created_by,
                            digest=dataset_digest(data), config=config,
                            sizes={"train": len(train_idx), "validation": len(val_idx), "test": len(test_idx)})


def _dataset_splits(labels: np.ndarray, categories: list[str], rows: dict[str, list[int]]) -> DatasetSplits:
    counts = {split: labels[indices].sum(axis=0).astype(int).tolist() for split, indices in rows.items()}
    none = {split: int((labels[indices].sum(axis=1) == 0).sum()) for split, indices in rows.items()}
    per_label = {slug: {split: counts[split][column] for split in rows} for column, slug in enumerate(categories)}
    return DatasetSplits(sizes={split: len(indices) for split, indices in rows.items()},
                         labels=per_label | {NOT_VIOLATING: none})


def _evaluate(probs: np.ndarray, test: Any, categories: list[str], policy: Policy) -> dict[str, Any]:
    from vlm_engine.learning import metrics_evaluate

    return metrics_evaluate(probs, test.labels, categories=categories, thresholds=_thresholds(policy))


def _baseline_metrics(active: ModelVersion | None, test: Any, categories: list[str], policy: Policy) -> dict[str, Any]:
    """The active version's metrics on the same held-out split; without one, the stored zero-shot
    scores of the analyses the reviewers saw."""
    if active is not None:
        head = model_head_load(version=active)
        if list(head.categories) == categories:
            probs = head.predict(test.image, test.text, test.sentence)
            return _evaluate(probs, test, categories, policy) | {"source": f"v{active.version}"}
    scores = dict(ReviewDecision.objects.filter(post_id__in=list(test.keys), analysis__isnull=False)
                  .values_list("post_id", "analysis__scores"))
    probs = np.array([[scores.get(_uuid(k), {}).get(c, 0.0) for c in categories] for k in test.keys], np.float32)
    return _evaluate(probs.reshape(len(test.keys), len(categories)), test, categories, policy) | {"source": "zero_shot"}


def _uuid(key: str) -> Any:
    import uuid

    return uuid.UUID(key)


@transaction.atomic
def _candidate_store(*, head: Any, metrics: dict[str, Any], baseline: dict[str, Any], parent: ModelVersion | None,
                     created_by: Any, digest: str, config: Any, sizes: dict[str, int]) -> ModelVersion:
    version = (ModelVersion.objects.select_for_update().aggregate(v=Max("version"))["v"] or 0) + 1
    candidate = ModelVersion(version=version, digest=head.digest, categories=list(head.categories), metrics=metrics,
                             baseline_metrics=baseline, dataset_digest=digest, dataset_sizes=sizes,
                             training_config=asdict(config), parent=parent, created_by=created_by)
    candidate.artifact.save("head.safetensors", ContentFile(_head_bytes(head)), save=False)
    candidate.save()
    margin = moderation_settings.AUTO_PROMOTE_MARGIN
    trusted = "test" not in splits_untrusted(sizes=sizes)
    if margin is not None and trusted and _beats(metrics, baseline, margin):
        model_promote(version=candidate, by=None)  # recorded as "auto"
    return candidate


def _head_bytes(head: Any) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "head.safetensors"
        head.save(path)
        return path.read_bytes()


def _beats(metrics: dict[str, Any], baseline: dict[str, Any], margin: float) -> bool:
    new, old = _macro_auroc(metrics), _macro_auroc(baseline)
    return new is not None and (old is None or new >= old + margin)


def _macro_auroc(metrics: dict[str, Any]) -> float | None:
    value = (metrics.get("macro") or {}).get("auroc")
    return float(value) if value is not None else None


_HEADS: dict[tuple[int, str], Any] = {}


def model_head_load(*, version: ModelVersion) -> Any:
    """The head of ``version``, loaded once per process (artifacts are immutable)."""
    from vlm_engine.learning import TrainedHead

    key = (version.pk, version.digest)
    if key not in _HEADS:
        with version.artifact.open("rb") as handle, tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
            tmp.write(handle.read())
            tmp.flush()
            head = TrainedHead.load(tmp.name)
        head.version = f"v{version.version}@{version.digest}"
        _HEADS[key] = head
    return _HEADS[key]


AUTO_ACTOR = "auto"


def _actor(by: Any) -> str:
    """Who acted, as stored: the username (it outlives the account), or "auto" for the margin rule."""
    return AUTO_ACTOR if by is None else by.get_username()


@transaction.atomic
def model_promote(*, version: ModelVersion, by: Any) -> ModelVersion:
    """Make ``version`` the active head; the active one is retired (kept, never deleted) and
    remembered as the version a rollback returns to. ``by`` (a user; None: automatic promotion)
    is recorded on both."""
    current = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.ACTIVE).first()
    if current is not None and current.pk != version.pk:
        ModelVersion.objects.filter(pk=version.pk).update(replaced=current)
    return _activate(version=version, retiring=current, actor=_actor(by))


def _activate(*, version: ModelVersion, retiring: ModelVersion | None, actor: str) -> ModelVersion:
    now = timezone.now()
    if retiring is not None and retiring.pk != version.pk:
        ModelVersion.objects.filter(pk=retiring.pk).update(status=ModelVersion.Status.RETIRED, retired_at=now,
                                                           retired_by=actor)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE, promoted_at=now,
                                                      promoted_by=actor, retired_at=None, retired_by="")
    version.refresh_from_db()
    return version


@transaction.atomic
def model_rollback(*, by: Any) -> ModelVersion | None:
    """Retire the active head and reactivate the one it replaced (None: back to zero-shot/kNN).
    ``by`` is recorded as who retired the one and reactivated the other."""
    active = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.ACTIVE).first()
    if active is None:
        raise ServiceError("nothing_to_roll_back", "No head is active.")
    if active.replaced is None:
        ModelVersion.objects.filter(pk=active.pk).update(status=ModelVersion.Status.RETIRED,
                                                         retired_at=timezone.now(), retired_by=_actor(by))
        return None
    return _activate(version=active.replaced, retiring=active, actor=_actor(by))


def retrain_due() -> bool:
    """Enough new labels since the newest version's training run to train again."""
    latest = ModelVersion.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    new = ReviewDecision.objects.exclude(verdict=ReviewDecision.Verdict.UNDO)
    if latest is not None:
        new = new.filter(created_at__gt=latest)
    return new.count() >= moderation_settings.RETRAIN_MIN_NEW_LABELS


_PRECEDENTS: dict[tuple[Any, ...], Precedents | None] = {}


@dataclass(frozen=True)
class Precedents:
    """The labelled posts as they stand: the vote that scores (None below KNN_MIN_LABELS labels) and
    the ASIF index that names each post's nearest labelled examples, with each anchor's client."""

    scorer: Any | None
    index: Any
    scoring: str
    client_keys: dict[Any, frozenset[str]]

    def nearest_examples(self, *, post_id: str, client_id: Any, image: np.ndarray | None,
                         text: np.ndarray | None, sentence: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The post's heaviest anchors among its own client's labelled posts (never another client's,
        never itself): post id, label, similarity and vote weight."""
        from vlm_engine.learning import embeddings_pair

        allowed = self.client_keys.get(client_id, frozenset())
        if not allowed or (image is None and text is None):
            return []
        queries = embeddings_pair([image], [text])
        count = moderation_settings.NEAREST_EXAMPLES
        try:  # one more than shown, in case the post itself is among them (re-analysed after review)
            found = [p for p in self.index.nearest(*queries, count=count + 1, allowed=allowed,
                                                   sentence=None if sentence is None else sentence[None])[0]
                     if p.key != post_id]
        except ValueError:  # embeddings of another size than the anchors' (the CLIP changed meanwhile)
            return []
        return [{"post_id": p.key, "label": p.label, "similarity": p.similarity, "weight": p.weight}
                for p in found[:count]]


def scoring_classifier(*, categories: list[str]) -> tuple[Any | None, ModelVersion | None, str]:
    """What scores the next batch: the active head; else the precedent vote (PRECEDENTS: ASIF or
    kNN) once enough labels exist (rebuilt whenever a decision arrives, so a new label counts at
    once); else zero-shot."""
    active = model_version_active()
    if active is not None:
        return model_head_load(version=active), active, "head"
    current = precedents_current(categories=categories)
    if current is None or current.scorer is None:
        return None, None, "zero_shot"
    return current.scorer, None, current.scoring


def precedents_current(*, categories: list[str]) -> Precedents | None:
    """The precedents of the labelled set as it stands now (None: no labels yet); cached until the
    next decision."""
    s = moderation_settings
    # The newest decision and the count: a new decision or undo raises the one, a post erased by
    # retention lowers the other.
    marker = ReviewDecision.objects.aggregate(last=Max("id"), count=Count("id"))
    key = (marker["last"], marker["count"], tuple(categories), s.KNN_K, s.KNN_MIN_LABELS, s.PRECEDENTS,
           s.ASIF_EXPONENT)
    if key not in _PRECEDENTS:
        _PRECEDENTS.clear()
        data = dataset_build(categories=categories) if marker["last"] is not None else None
        _PRECEDENTS[key] = _precedents_build(data, categories) if data is not None else None
    return _PRECEDENTS[key]


# The sentence view's share of the precedents' similarity: half beside CLIP's image and text views;
# all of it while the embedder runs on random weights (its views are then noise: bench.quality).
SENTENCE_WEIGHT = 0.5
SENTENCE_WEIGHT_RANDOM_EMBEDDER = 1.0


def _sentence_weight() -> float:
    random_embedder = "embedder" in models_roles_latest()["no_checkpoint"]
    return SENTENCE_WEIGHT_RANDOM_EMBEDDER if random_embedder else SENTENCE_WEIGHT


def precedents_forget() -> None:
    """Drop the cached precedents (tests, whose rolled-back decisions may reuse ids)."""
    _PRECEDENTS.clear()


def _precedents_build(data: Any, categories: list[str]) -> Precedents:
    """The votes over ``data``: each leaves PRECEDENT_ZERO_SHOT_SHARE of a post's score to its
    zero-shot score, and weighs the sentence view by ``_sentence_weight``."""
    from vlm_engine.learning import PRECEDENT_ZERO_SHOT_SHARE, AsifClassifier, KnnClassifier

    s = moderation_settings
    shared = {"k": s.KNN_K, "min_labels": s.KNN_MIN_LABELS, "sentence_weight": _sentence_weight(),
              "zero_shot_share": PRECEDENT_ZERO_SHOT_SHARE}
    index = AsifClassifier(data, categories=categories, exponent=s.ASIF_EXPONENT, **shared)
    scorer: Any | None = None
    if len(data.keys) >= s.KNN_MIN_LABELS:
        scorer = index if s.PRECEDENTS == "asif" else KnnClassifier(data, categories=categories, **shared)
    clients: dict[Any, set[str]] = {}
    for post_id, client_id in Post.objects.filter(pk__in=data.keys).values_list("pk", "client_id"):
        clients.setdefault(client_id, set()).add(str(post_id))
    return Precedents(scorer=scorer, index=index, scoring=s.PRECEDENTS,
                      client_keys={c: frozenset(keys) for c, keys in clients.items()})
