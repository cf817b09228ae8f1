"""The reviewer dashboard in a real browser: Debian's Chromium, driven by Playwright, against a live server."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from moderation.models import ReviewDecision
from tests.conftest import ROOT
from tests.factories import UserFactory, post_in_review

SCREENSHOT = ROOT / "artifacts" / "dashboard-post.png"
IMAGE_SIZE = (1600, 1200)  # larger than the page's column, so the browser scales it down
BOX = (64.0, 48.0, 320.0, 240.0)  # AnalysisFactory's grounding, in original-image pixels


@pytest.fixture
def reviewer(transactional_db, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("moderation_setup_groups", stdout=StringIO())
    user = UserFactory(username="rita", is_staff=True)
    user.set_password("correct horse")
    user.save()
    user.groups.add(Group.objects.get(name="Reviewer"))
    return user


def _box_expected(img: dict[str, float]) -> dict[str, float]:
    scale_x, scale_y = img["width"] / IMAGE_SIZE[0], img["height"] / IMAGE_SIZE[1]
    return {"x": img["x"] + BOX[0] * scale_x, "y": img["y"] + BOX[1] * scale_y,
            "width": (BOX[2] - BOX[0]) * scale_x, "height": (BOX[3] - BOX[1]) * scale_y}


def test_reviewer_claims_sees_boxes_and_decides_with_the_keyboard(live_server, browser,
                                                                   reviewer):  # type: ignore[no-untyped-def]
    first = post_in_review(priority=0.9, image_size=IMAGE_SIZE, text="first post")
    second = post_in_review(priority=0.3, image_size=IMAGE_SIZE, text="second post")
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/admin/login/?next=/admin/moderation/post/queue/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/moderation/post/queue/")
    assert page.inner_text("[data-testid=waiting]") == "2"

    page.click("#claim-next")
    page.wait_for_url(f"**/admin/moderation/post/{first.pk}/review/")
    page.click("#mod-figure")  # blurred until clicked
    page.wait_for_function("() => { const i = document.getElementById('mod-image'); "
                           "return i.complete && i.naturalWidth > 0; }")
    img = page.locator("#mod-image").bounding_box()
    box = page.locator('.mod-box[data-phrase="racist symbol"]').bounding_box()
    assert img["width"] < IMAGE_SIZE[0]  # really scaled
    for key, value in _box_expected(img).items():
        assert abs(box[key] - value) <= 2, (key, box[key], value)
    assert "racist symbol 0.81" in page.inner_text(".mod-box-label")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.keyboard.press("n")
    page.wait_for_url(f"**/admin/moderation/post/{second.pk}/review/")

    assert list(ReviewDecision.objects.values_list("post_id", "verdict", "reviewer_username")) == [
        (first.pk, "not_violating", "rita")]
    assert "first post" not in page.inner_text("#content") and "second post" in page.inner_text("#content")


def test_crowded_box_labels_never_overlap_nor_leave_the_image(live_server, browser,
                                                              reviewer):  # type: ignore[no-untyped-def]
    from tests.browser.test_real_posts import LABELS_JS

    post = post_in_review(priority=0.9, image_size=(434, 488), text="crowded")
    # Twelve boxes of four phrases piled into one corner: every label wants the same spot.
    groundings = [{"phrase": phrase, "box": [10.0 + 6 * i, 12.0 + 5 * i, 160.0 + 6 * i, 200.0 + 5 * i],
                   "score": round(0.9 - 0.05 * i, 2)}
                  for i, phrase in enumerate(["noose", "swastika", "weapon", "blood"] * 3)]
    analysis = post.current_analysis
    analysis.explanation = {**analysis.explanation, "groundings": groundings}
    analysis.save(update_fields=["explanation"])
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/moderation/post/{post.pk}/review/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_url(f"**/admin/moderation/post/{post.pk}/review/")
    page.click("#mod-figure")  # blurred until clicked
    page.wait_for_function("() => { const i = document.getElementById('mod-image'); "
                           "return i.complete && i.naturalWidth > 0; }")

    found = page.evaluate(LABELS_JS)
    assert (found["boxes"], found["problems"]) == (12, [])
    assert 1 <= found["shown"] < 12  # the rest appear on hover
