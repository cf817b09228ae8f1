"""Every admin page a reviewer and a lead can reach, in Chromium, on posts made the way users make them.

Posts are submitted over HTTP to the live server and analysed by a real Celery worker on the
tiny checkpoints; two of them are a meme and its resized, re-encoded copy, decided as a cluster. Policy thresholds steer the random models' verdicts into each final state;
a damaged stored image fails at analysis; a stopped worker leaves a post queued and a claim
held by the test leaves one analyzing. Any HTTP 5xx, browser console error, uncaught script
error or request to another host fails the test. Screenshots land in var/screenshots/.
"""
from __future__ import annotations

import io
import json
import signal
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth.models import Group
from django.core.management import call_command
from PIL import Image

from moderation.models import ModelVersion, Post, PostState
from moderation.services.analysis import post_claim_batch
from moderation.services.apikeys import apikey_create
from moderation.services.learning import model_promote, model_train
from moderation.services.reviews import review_decide
from tests.conftest import ROOT
from tests.factories import UserFactory, drawn_meme, jpeg_bytes
from tests.workers.conftest import thresholds, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "correct horse"
LABELLED = 30  # reviewed through the service: enough labels to train two heads
WIDTHS = (1440, 1024)
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED, PostState.FAILED}


def jpeg(seed: int, size: tuple[int, int] = (434, 488)) -> bytes:
    image = Image.effect_noise(size, 40 + seed % 50).convert("RGB")
    image.paste((seed * 37 % 255, 90, 160), (20, 20, size[0] // 2, size[1] // 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


class Api:
    """The site's API client, over HTTP to the live server."""

    def __init__(self, base: str) -> None:
        _, key = apikey_create(user=UserFactory(username="acme"))
        self.base, self.headers = base, {"Authorization": f"Api-Key {key}"}

    def submit(self, seed: int, image: bytes | None = None) -> str:
        response = requests.post(f"{self.base}/api/v1/posts/", headers=self.headers, timeout=60,
                                 files={"image": ("p.jpg", image or jpeg(seed), "image/jpeg")},
                                 data={"text": f"post {seed}"})
        assert response.status_code == 202, response.text
        return response.json()["id"]


def states(ids: list[str]) -> list[str]:
    found = {str(pk): state for pk, state in Post.objects.filter(pk__in=ids).values_list("pk", "state")}
    return [found[pk] for pk in ids]


def settle(ids: list[str], worker: Any, expected: set[str]) -> None:
    wait_until(lambda: set(states(ids)) <= FINAL, timeout=400, interval=0.25,
               message=f"verdicts; worker log:\n{worker.log()[-3000:]}")
    assert set(states(ids)) == expected, (states(ids), worker.log()[-3000:])


def staff(username: str, group: str):  # type: ignore[no-untyped-def]
    user = UserFactory(username=username, is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def made(live_server, start_worker):  # type: ignore[no-untyped-def]
    """Posts in every state, each reached through the real pipeline and the real services."""
    call_command("moderation_setup_groups", stdout=StringIO())
    lead = staff("leo", "Lead")
    staff("rita", "Reviewer")
    staff("remy", "Reviewer")
    api = Api(live_server.url)

    failing = api.submit(0)  # its stored file is damaged before any worker sees it
    with open(Post.objects.get(pk=failing).image.path, "wb") as handle:
        handle.write(b"\xff\xd8 damaged on disk")
    thresholds(review=1.0, remove=1.0)  # nothing reaches 1.0: allowed
    worker = start_worker(MODERATION_SETTINGS_JSON=json.dumps({"LOOK_CLOSER": 0, "MAX_NEW_TOKENS": 8,
                                                               "KNN_MIN_LABELS": 100_000}))
    allowed = api.submit(1)
    settle([failing, allowed], worker, {PostState.FAILED, PostState.ALLOWED})

    thresholds(review=0.0, remove=1.0)  # everything reaches review, nothing removal
    in_review = [api.submit(seed) for seed in range(2, 2 + LABELLED + 6)]
    # A drawn meme and its resized, re-encoded copy: near-duplicates, so one queue row.
    twins = [api.submit(500, jpeg_bytes(drawn_meme(1))),
             api.submit(501, jpeg_bytes(drawn_meme(1).resize((320, 240)), quality=60))]
    settle(in_review + twins, worker, {PostState.NEEDS_REVIEW})
    thresholds(review=0.0, remove=0.0)
    removed = api.submit(99)
    settle([removed], worker, {PostState.REMOVED})

    for i, pk in enumerate(in_review[:LABELLED]):
        verdict = {"verdict": "violating", "category": "hate", "reason": "a slur"} if i % 2 else {
            "verdict": "not_violating"}
        review_decide(post=Post.objects.get(pk=pk), reviewer=lead, **verdict)
    model_promote(version=model_train(created_by=lead), by=lead)
    model_train(created_by=lead)  # a candidate, evaluated against the active head

    worker.kill(signal.SIGTERM)
    analyzing = api.submit(100)
    post_claim_batch(limit=1, worker="held-by-the-test")
    queued = api.submit(101)
    posts = {"queued": queued, "analyzing": analyzing, "allowed": allowed, "removed": removed, "failed": failing,
             "needs_review": in_review[-1], "reviewed": in_review[0]}
    assert {state: Post.objects.get(pk=pk).state for state, pk in posts.items()} == {s: s for s in posts}
    return posts, twins


class Watch:
    """What a page must never do: answer 5xx, log a console error, throw, or call another host."""

    def __init__(self, page: Any, origin: str) -> None:
        self.problems: list[str] = []
        self.host = urlsplit(origin).netloc
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"script error: {e} @ {page.url}"))
        page.on("response", lambda r: r.status >= 500 and self.problems.append(f"{r.status} {r.url}"))
        page.on("request", self._request)

    def _console(self, message: Any) -> None:
        # The browser's own favicon probe is not the page's doing (the admin declares no icon).
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.problems.append(f"console: {message.text} at {message.location.get('url')}")

    def _request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "blob") and parts.netloc != self.host:
            self.problems.append(f"request to another host: {request.url}")


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def visit(page: Any, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    page.wait_for_load_state("load")


def links(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => [...new Set(els.map(e => e.href))]")


LAYOUT_JS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width + 1) problems.push('page wider than the window');
  document.querySelectorAll('.results, .mod-queue, #content-main').forEach(el => {
    if (el.scrollWidth > el.clientWidth + 1) problems.push('clipped: ' + (el.id || el.className));
  });
  document.querySelectorAll('.mod-id').forEach(el => {
    if (el.getClientRects().length > 1 || el.textContent.length > 8) problems.push('id wrapped or long: ' + el.textContent);
  });
  const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
  document.querySelectorAll('#result_list td, #result_list th, .mod-queue-table td, h1').forEach(el => {
    if (uuid.test(el.textContent)) problems.push('full uuid shown: ' + el.textContent.trim());
  });
  return problems;
}"""

LABELS_JS = """() => {
  const figure = document.getElementById('mod-figure');
  if (!figure) return {boxes: 0, shown: 0, problems: []};
  const frame = figure.getBoundingClientRect();
  const shown = [...figure.querySelectorAll('.mod-box-label')].filter(l => getComputedStyle(l).display !== 'none')
    .map(l => l.getBoundingClientRect());
  const problems = [];
  shown.forEach((a, i) => {
    if (a.left < frame.left - 0.5 || a.top < frame.top - 0.5 || a.right > frame.right + 0.5
        || a.bottom > frame.bottom + 0.5) problems.push('label outside the image');
    shown.slice(i + 1).forEach(b => {
      if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
        problems.push('labels overlap');
    });
  });
  return {boxes: figure.querySelectorAll('.mod-box').length, shown: shown.length, problems};
}"""


def check_layout(page: Any, name: str) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        assert page.evaluate(LAYOUT_JS) == [], (name, width, page.url)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def review_with_the_keyboard(page: Any) -> None:
    """Lands one click from work; u with nothing to undo stays; a checkbox click keeps the keys; e
    hands a different post; u takes the last decision back."""
    page.click("#start-reviewing")
    page.wait_for_url("**/review/")
    first = page.url
    page.keyboard.press("u")
    page.wait_for_load_state("load")
    assert page.url == first and "Nothing to undo" in page.inner_text(".messagelist")
    page.click("#mod-unblur-all")  # a checkbox has focus now
    page.keyboard.press("e")
    page.wait_for_url(lambda url: url != first and url.endswith("/review/"))
    second = page.url
    page.keyboard.press("n")
    page.wait_for_url(lambda url: url not in (first, second))
    page.keyboard.press("u")
    page.wait_for_url(second)
    assert "back in review" in page.inner_text(".messagelist")


def crawl(page: Any, base: str, posts: dict[str, str], *, lead: bool) -> dict[str, Any]:
    """Opens every page the role can reach from the admin index, and the post pages of every state."""
    visit(page, f"{base}/admin/")
    check_layout(page, f"index-{'lead' if lead else 'reviewer'}")
    seen: dict[str, Any] = {"labels": []}
    for other in links(page, "#content-main .app-moderation a.addlink, #user-tools a[href*=password]"):
        visit(page, other)
    visit(page, f"{base}/admin/")
    for changelist in links(page, "#content-main .app-moderation th a"):
        visit(page, changelist)
        for change in links(page, "#result_list tbody tr th a")[:1]:
            visit(page, change)
            for tool in links(page, ".object-tools a"):
                visit(page, tool)
                visit(page, change)
    visit(page, f"{base}/admin/moderation/post/queue/")
    check_layout(page, "queue")
    for state, pk in posts.items():
        visit(page, f"{base}/admin/moderation/post/{pk}/change/")
        visit(page, f"{base}/admin/moderation/post/{pk}/review/")
        if page.locator("#mod-figure").count():
            page.click("#mod-figure")
            page.mouse.move(0, 0)  # a hovered box shows its label whatever the layout
        seen["labels"].append((state, page.evaluate(LABELS_JS)))
        page.set_viewport_size({"width": 1024, "height": 900})
        seen["labels"].append((state, page.evaluate(LABELS_JS)))
        page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    visit(page, f"{base}/admin/moderation/post/{posts['needs_review']}/review/")
    page.click("#mod-figure")
    check_layout(page, "post")
    visit(page, f"{base}/admin/moderation/post/")
    check_layout(page, "posts")
    if lead:
        visit(page, f"{base}/admin/moderation/post/stats/")
        check_layout(page, "stats")
        visit(page, f"{base}/admin/moderation/post/transparency/")
        check_layout(page, "transparency")
        visit(page, f"{base}/admin/moderation/modelversion/")
        check_layout(page, "model-versions")
    return seen


def promote_from_the_version_page(page: Any, base: str) -> None:
    candidate = ModelVersion.objects.get(status="candidate")
    visit(page, f"{base}/admin/moderation/modelversion/{candidate.pk}/change/")
    check_layout(page, "model-version")
    page.click("#promote-version")
    page.wait_for_url(f"**/modelversion/{candidate.pk}/promote/")
    assert page.locator("[data-testid=comparison] tbody tr").count() == 3
    check_layout(page, "model-version-promote")
    page.click("#confirm-promote")
    page.wait_for_url(f"**/modelversion/{candidate.pk}/change/")
    candidate.refresh_from_db()
    assert (candidate.status, candidate.promoted_by) == ("active", "leo")


def decide_the_twins(page: Any, base: str, twins: list[str]) -> None:
    """The two copies share one queue row (×2, the other folded under it); the leader's page lists
    the copy; one decision for the cluster, confirmed, reaches both."""
    visit(page, f"{base}/admin/moderation/post/queue/")
    row = page.locator(".mod-queue-table tbody tr", has=page.locator("[data-testid=cluster-size]"))
    assert row.count() == 1 and row.locator("[data-testid=cluster-size]").inner_text() == "×2"
    row.locator("summary").click()
    folded = row.locator("[data-testid=folded]")
    assert folded.count() == 1 and folded.is_visible()
    check_layout(page, "queue-cluster")
    leader = row.locator("a", has_text="open").get_attribute("href")
    assert {urlsplit(leader).path.split("/")[-3], urlsplit(folded.get_attribute("href")).path.split("/")[-3]} == set(
        twins)
    visit(page, f"{base}{leader}")
    near = page.locator("[data-testid=near-duplicates] tbody tr")
    assert near.count() == 1 and near.locator("[data-testid=near-state]").inner_text() == "needs_review"
    check_layout(page, "post-cluster")
    page.select_option("#cluster-verdict", "not_violating")
    page.click("#cluster-decide-button")
    page.wait_for_url("**/review/cluster/")
    assert page.locator("[data-testid=member-outcome]").all_inner_texts() == ["will be decided"] * 2
    check_layout(page, "cluster-confirm")
    page.click("#confirm-cluster")
    page.wait_for_url(lambda url: not url.endswith("/cluster/"))
    assert "Recorded “Not Violating” for 2 post(s) of the cluster" in page.inner_text(".messagelist")
    assert states(twins) == [PostState.REVIEWED] * 2


def test_every_page_for_posts_in_every_state(live_server, browser, made):  # type: ignore[no-untyped-def]
    base = live_server.url
    posts, twins = made
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
    watch = Watch(page, base)
    login(page, base, "remy")  # a reviewer of their own: rita's keyboard test starts with nothing to undo
    decide_the_twins(page, base, twins)
    assert watch.problems == [], watch.problems
    page.close()
    labels = []
    for username, lead in (("rita", False), ("leo", True)):
        page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
        watch = Watch(page, base)
        login(page, base, username)
        assert page.locator("#mod-start").is_visible()
        if not lead:
            review_with_the_keyboard(page)
        labels += crawl(page, base, posts, lead=lead)["labels"]
        if lead:
            promote_from_the_version_page(page, base)
        assert watch.problems == [], watch.problems
        page.close()
    assert [(state, found["problems"]) for state, found in labels if found["problems"]] == []
    # Offline the grounder has random weights: its boxes are withheld, never drawn as findings
    # (crowded labels are checked on drawn boxes in test_dashboard).
    assert max(found["boxes"] for _, found in labels) == 0
