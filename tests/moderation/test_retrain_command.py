"""``moderation_retrain``'s report: label counts, warnings on small splits, rounded figures, the next step."""
from __future__ import annotations

import io
import re
import uuid

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from moderation.models import Analysis, ModelVersion, ReviewDecision
from moderation.services.learning import aurocs_trusted, splits_untrusted
from moderation.services.policies import policy_active
from tests.factories import PostFactory, UserFactory

pytestmark = pytest.mark.django_db
DIM = 16
EPOCH_LINE = re.compile(r"epoch \d+/40 loss \d+\.\d{3}")


def labelled(labels: list[str | None]) -> None:
    """One reviewed post per label (a category slug, or None for not violating), with fixed ids so
    the split is always the same, embeddings that separate the labels, and zero-shot scores."""
    reviewer, policy = UserFactory(username="lead"), policy_active()
    rng = np.random.default_rng(0)
    centres = {label: rng.normal(size=DIM) for label in sorted(set(labels), key=str)}
    for i, label in enumerate(labels):
        post = PostFactory(id=uuid.UUID(int=i + 1))
        vector = (centres[label] + rng.normal(scale=0.1, size=DIM)).astype("<f4")
        analysis = Analysis.objects.create(
            post=post, claim_token=uuid.uuid4(), policy=policy, model_version="clip:test@0+owl:none",
            decision="review", scores={"hate": 0.6 if label == "hate" else 0.4},
            image_embedding=vector.tobytes(), text_embedding=vector.tobytes())
        verdict = {"verdict": "violating", "category": label, "reason": "r"} if label else {"verdict": "not_violating"}
        ReviewDecision.objects.create(post=post, analysis=analysis, reviewer=reviewer, reviewer_username="lead",
                                      **verdict)


def retrain(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("moderation_retrain", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


def without_epochs(lines: list[str]) -> list[str]:
    """The lines other than the plain progress lines, which must count the epochs from 1 without a gap."""
    epochs = [line for line in lines if EPOCH_LINE.fullmatch(line)]
    assert [int(line.split()[1].split("/")[0]) for line in epochs] == list(range(1, len(epochs) + 1))
    assert len(epochs) >= 1
    return [line for line in lines if not EPOCH_LINE.fullmatch(line)]


def test_small_splits_warn_and_withhold_the_figures(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "SITE_URL": "https://mod.example.com/"}
    labelled(["hate", None] * 20)

    lines = retrain()

    version = ModelVersion.objects.get()
    assert without_epochs(lines) == [
        "Labelled posts: 40 (train 31, validation 6, test 3)",
        "label           train validation   test",
        "hate               17          2      1",
        "harassment          0          0      0",
        "extremism           0          0      0",
        "violence            0          0      0",
        "sexual              0          0      0",
        "not violating      14          4      2",
        "Warning: the validation split has 6 posts (fewer than 30); early stopping and calibration rest on "
        "a handful of posts. Label more posts.",
        "Warning: the test split has 3 posts (fewer than 30); its figures mean nothing, so none is shown. "
        "Label more posts.",
        f"Candidate v{version.version} stored.",
        "Held-out figures withheld: the test split has 3 posts.",
        f"Next: promote it in the admin: https://mod.example.com/admin/moderation/modelversion/{version.pk}/change/",
    ]
    # Training ran and stored its figures all the same (the admin shows them).
    assert version.dataset_sizes == {"train": 31, "validation": 6, "test": 3}
    assert version.metrics["macro"]["auroc"] == 1.0


def test_a_large_enough_test_split_prints_rounded_figures_beside_the_baseline():  # type: ignore[no-untyped-def]
    labelled(["hate", None, None, "violence"] * 60)

    lines = without_epochs(retrain())

    pk = ModelVersion.objects.get().pk
    assert lines == [
        "Labelled posts: 240 (train 176, validation 32, test 32)",
        "label           train validation   test",
        "hate               46          6      8",
        "harassment          0          0      0",
        "extremism           0          0      0",
        "violence           42         12      6",
        "sexual              0          0      0",
        "not violating      88         14     18",
        "Candidate v1 stored.",
        "Held-out test split, 32 posts: candidate | baseline (zero_shot)",
        "  macro          AUROC 1.000 | 0.750  F1 0.000 | 0.200  ECE 0.245 | 0.117",
        "  hate           AUROC 1.000 | 1.000  F1 0.000 | 1.000  ECE 0.084 | 0.400",
        "  harassment     AUROC n/a (0 of 32 violating; 5 of each class needed)  F1 0.000 | 0.000  ECE 0.326 | 0.000",
        "  extremism      AUROC n/a (0 of 32 violating; 5 of each class needed)  F1 0.000 | 0.000  ECE 0.333 | 0.000",
        "  violence       AUROC 1.000 | 0.500  F1 0.000 | 0.000  ECE 0.149 | 0.188",
        "  sexual         AUROC n/a (0 of 32 violating; 5 of each class needed)  F1 0.000 | 0.000  ECE 0.332 | 0.000",
        f"Next: promote it in the admin: /admin/moderation/modelversion/{pk}/change/",
    ]


def test_a_category_with_few_test_posts_gets_no_auroc_nor_does_the_average():  # type: ignore[no-untyped-def]
    labelled(["hate", None, None, "violence"] * 60 + ["sexual"] * 12)

    lines = without_epochs(retrain())

    assert lines[6] == "sexual              8          0      4"
    assert lines[10] == "  macro          AUROC n/a (it would average categories too small to trust)  " \
                        "F1 0.000 | 0.200  ECE 0.231 | 0.136"
    assert lines[11] == "  hate           AUROC 0.857 | 1.000  F1 0.000 | 1.000  ECE 0.100 | 0.400"
    assert lines[15] == "  sexual         AUROC n/a (4 of 36 violating; 5 of each class needed)  " \
                        "F1 0.000 | 0.000  ECE 0.225 | 0.111"
    # The stored average is still there for the admin; only the report declines to show it.
    assert round(ModelVersion.objects.get().metrics["macro"]["auroc"], 3) == 0.908


def test_the_path_alone_without_a_site_url_and_a_bad_site_url_is_refused():  # type: ignore[no-untyped-def]
    labelled(["hate", None] * 12)

    with pytest.raises(CommandError, match=re.escape(
            "the site URL (--site-url or MODERATION['SITE_URL']) must look like https://moderation.example.com, "
            "not 'mod.org'")):
        retrain("--site-url", "mod.org")
    assert ModelVersion.objects.count() == 0
    lines = retrain()
    path = f"/admin/moderation/modelversion/{ModelVersion.objects.get().pk}/change/"
    assert lines[-1] == f"Next: promote it in the admin: {path}"
    lines = retrain("--site-url", "http://127.0.0.1:8000")
    assert lines[-1] == ("Next: promote it in the admin: http://127.0.0.1:8000/admin/moderation/modelversion/"
                         f"{ModelVersion.objects.get(version=2).pk}/change/")


def test_a_terminal_gets_one_progress_bar_redrawn_in_place():  # type: ignore[no-untyped-def]
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    labelled(["hate", None] * 12)
    out = Terminal()
    call_command("moderation_retrain", stdout=out, stderr=io.StringIO())

    text = out.getvalue()
    bar = text[text.index("\r"):text.index("\nCandidate v1 stored.")]
    frames = bar.split("\r")[1:]
    assert "\n" not in bar and not EPOCH_LINE.search(text.replace(bar, ""))
    for epoch, frame in enumerate(frames, start=1):
        done = 30 * epoch // 40
        assert re.fullmatch(rf"\[{'#' * done}{'.' * (30 - done)}\] epoch {epoch}/40 loss \d+\.\d{{3}}", frame)


def test_a_small_test_split_is_never_promoted_automatically(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "AUTO_PROMOTE_MARGIN": 0.0}
    labelled(["hate", None] * 20)

    retrain()

    assert ModelVersion.objects.get().status == "candidate"


def test_which_splits_and_aurocs_are_trusted():  # type: ignore[no-untyped-def]
    assert splits_untrusted(sizes={"train": 10, "validation": 29, "test": 30}) == ["validation"]
    assert splits_untrusted(sizes={"train": 10, "validation": 30, "test": 0}) == ["test"]
    assert splits_untrusted(sizes={"train": 1, "validation": 30, "test": 30}) == []
    both = {"auroc": 0.9, "support": 5, "n": 10}
    assert aurocs_trusted(metrics={"categories": {"a": both, "b": {"auroc": None, "support": 0, "n": 10}}}) == {
        "a": True, "b": False, "macro": True}
    assert aurocs_trusted(metrics={"categories": {"a": both, "b": {"auroc": 0.9, "support": 4, "n": 40}}}) == {
        "a": True, "b": False, "macro": False}
    assert aurocs_trusted(metrics={"categories": {"a": {"auroc": 0.9, "support": 36, "n": 40}}}) == {
        "a": False, "macro": False}
    assert aurocs_trusted(metrics={"categories": {}}) == {"macro": False}
