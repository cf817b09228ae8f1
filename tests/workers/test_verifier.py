"""The verifier through a real worker: withheld on random weights, a bar on the review page when trained."""
from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from moderation.models import Post, PostState
from moderation.services.analysis import analysis_decide
from moderation.services.model_output import model_scores_clean
from moderation.services.policies import policy_for_engine
from moderation.services.posts import post_submit
from tests.factories import UserFactory, image_bytes, staff_member
from tests.workers.conftest import wait_until
from vlm_engine.checkpoints import RANDOM_WEIGHTS_MARKER
from vlm_engine.types import PostInput

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED}
CATEGORIES = ["hate", "harassment", "extremism", "violence", "sexual"]


def _analysed(start_worker, settings_json: dict) -> Post:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile("meme.png", image_bytes("PNG", size=(96, 64), color=(200, 40, 40)), "image/png")
    post = post_submit(client=UserFactory(username="poster"), text="a meme", image=upload)[0]
    worker = start_worker(MODERATION_SETTINGS_JSON=json.dumps(settings_json))
    wait_until(lambda: Post.objects.get(pk=post.pk).state in FINAL, timeout=180, interval=0.25,
               message=f"a verdict; worker log:\n{worker.log()[-3000:]}")
    return Post.objects.select_related("current_analysis__policy").get(pk=post.pk)


def test_a_random_verifier_is_withheld_and_leaves_the_decision_to_the_other_roles(start_worker, tiny_dir):  # type: ignore[no-untyped-def]
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine

    post = _analysed(start_worker, {"LOOK_CLOSER": 0.0})

    analysis = post.current_analysis
    explanation = analysis.explanation
    assert explanation["verification"] == []
    assert explanation["unavailable"]["verification"] == "unavailable: no checkpoint for verifier"
    assert "verifier" in explanation["roles"]["no_checkpoint"]
    assert "+itm:verifier@" in analysis.model_version and "verify" in analysis.timings_ms
    # The same post through the same engine without a verifier: the same scores, so the same decision.
    engine = Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), look_closer=0.0,
                                                         verifier=""))
    with post.image.open("rb") as handle:
        policy = policy_for_engine(policy=analysis.policy)
        [alone] = engine.analyze([PostInput(key=str(post.pk), image=handle.read(), text=post.text)], policy)
    scores = model_scores_clean(alone.scores)
    assert analysis.scores == pytest.approx(scores, abs=1e-6)
    assert analysis.decision == analysis_decide(scores=scores, policy=policy, post_id=post.pk).decision


@pytest.fixture
def trained_verifier(tiny_dir: Path, tmp_path: Path) -> Path:
    """The tiny verifier without its random-weights marker: the engine then counts its match."""
    path = tmp_path / "trained-verifier"
    shutil.copytree(tiny_dir / "verifier", path)
    (path / RANDOM_WEIGHTS_MARKER).unlink()
    return path


def test_the_review_page_shows_the_verifier_bar_per_flagged_category(start_worker, trained_verifier, client):  # type: ignore[no-untyped-def]
    post = _analysed(start_worker, {"LOOK_CLOSER": 0.0, "MODELS": {"verifier": str(trained_verifier),
                                                                    "verifier_weight": 0.4}})
    call_command("moderation_setup_groups", stdout=StringIO())
    client.force_login(staff_member("vera", "Reviewer"))

    page = client.get(reverse("admin:moderation_review_post", args=[post.pk])).content.decode()

    rows = post.current_analysis.explanation["verification"]
    assert [row["category"] for row in rows] == CATEGORIES  # look_closer 0: every category is flagged
    assert {row["weight"] for row in rows} == {0.4} and all(0.0 <= row["match"] <= 1.0 for row in rows)
    assert "verification" not in post.current_analysis.explanation["unavailable"]
    assert 'data-testid="verification"' in page
    for row in rows:
        assert (f'title="{row["name"]}: P(match) {row["match"]:.3f} with “{row["prompt"]}”"' in page)
        assert f'<span class="mod-score-value">{row["match"]:.2f}</span>' in page
    assert "The verifier's match is 40% of each of these scores." in page
    assert "Image–text match (verifier, weight 0.40 in the score)" in post.current_analysis.explanation["summary"]
