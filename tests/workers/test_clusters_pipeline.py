"""Near-duplicate clusters on posts made the real way: a drawn meme and its re-encoded, resized copy
submitted over HTTP, hashed and analysed by a real worker process, then seen by a reviewer."""
from __future__ import annotations

import json
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse

from moderation.models import Post, PostState, ReviewDecision
from moderation.services.apikeys import apikey_create
from tests.factories import UserFactory, drawn_meme, staff_member
from tests.factories import jpeg_bytes as jpeg
from tests.workers.conftest import thresholds, wait_until
from vlm_engine.pdq import pdq_distance

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED, PostState.FAILED}


class Api:
    def __init__(self, base: str, username: str) -> None:
        _, key = apikey_create(user=UserFactory(username=username))
        self.base, self.headers = base, {"Authorization": f"Api-Key {key}"}

    def submit(self, image: bytes, text: str) -> str:
        response = requests.post(f"{self.base}/api/v1/posts/", headers=self.headers, timeout=60,
                                 files={"image": ("meme.jpg", image, "image/jpeg")}, data={"text": text})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


def settled(ids: list[str], worker) -> dict[str, str]:  # type: ignore[no-untyped-def]
    def states() -> dict[str, str]:
        return {str(pk): state for pk, state in Post.objects.filter(pk__in=ids).values_list("pk", "state")}

    wait_until(lambda: set(states().values()) <= FINAL and len(states()) == len(ids), timeout=300, interval=0.25,
               message=f"verdicts; worker log:\n{worker.log()[-3000:]}")
    return states()


def test_copies_submitted_through_the_api_are_listed_folded_and_decided_together(
        live_server, start_worker, client):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    acme, globex = Api(live_server.url, "acme"), Api(live_server.url, "globex")
    thresholds(review=0.0, remove=1.0)  # every analysed post goes to review
    worker = start_worker(MODERATION_SETTINGS_JSON=json.dumps({"LOOK_CLOSER": 0, "MAX_NEW_TOKENS": 8}))
    ids = {"meme": acme.submit(jpeg(drawn_meme(1)), "lol"),
           "copy": acme.submit(jpeg(drawn_meme(1).resize((320, 240)), quality=60), "lol again"),
           "other": acme.submit(jpeg(drawn_meme(2)), "another one"),
           "elsewhere": globex.submit(jpeg(drawn_meme(1)), "lol")}
    assert set(settled(list(ids.values()), worker).values()) == {PostState.NEEDS_REVIEW}
    posts = {name: Post.objects.select_related("current_analysis").get(pk=pk) for name, pk in ids.items()}
    distance = pdq_distance(posts["meme"].pdq_hash, posts["copy"].pdq_hash)
    assert 0 < distance <= 31 and pdq_distance(posts["meme"].pdq_hash, posts["other"].pdq_hash) > 31
    assert pdq_distance(posts["meme"].pdq_hash, posts["elsewhere"].pdq_hash) <= 31  # but another client's

    client.force_login(staff_member("rita", "Reviewer"))
    page = client.get(reverse("admin:moderation_review_post", args=[ids["meme"]])).content.decode()
    near = page.split('data-testid="near-duplicates"')[1].split("</table>")[0]
    assert near.count('<tr data-post="') == 1 and f'<tr data-post="{ids["copy"]}"' in near
    assert ids["elsewhere"] not in near and ids["other"] not in near
    cells = [c.split(">", 1)[1].split("<", 1)[0] for c in near.split('data-testid="near-')[1:]]
    # The worker's embedder runs on random weights offline: their cosine is noise, withheld.
    assert "embedder" in posts["copy"].current_analysis.explanation["roles"]["no_checkpoint"]
    assert posts["meme"].current_analysis.image_embedding and posts["copy"].current_analysis.image_embedding
    assert cells == [str(distance), "—", "needs_review", f"engine: {posts['copy'].current_analysis.decision}"]

    queue = client.get(reverse("admin:moderation_review_queue")).content.decode().split("<tbody>")[1]
    assert queue.count('data-testid="cluster-size"') == 1 and ">×2</span>" in queue
    leader = min((posts["meme"], posts["copy"]), key=lambda p: (-p.review_priority, p.created_at))
    follower = posts["copy"] if leader is posts["meme"] else posts["meme"]
    assert f'<span class="mod-id" title="{leader.pk}">' in queue
    assert f'<span class="mod-id" title="{follower.pk}">' not in queue
    assert f'data-testid="folded" href="{reverse("admin:moderation_review_post", args=[follower.pk])}"' in queue
    assert all(f'<span class="mod-id" title="{ids[name]}">' in queue for name in ("other", "elsewhere"))

    cluster_url = reverse("admin:moderation_review_cluster", args=[ids["meme"]])
    decision = {"verdict": "violating", "category": "hate", "reason": "the same hateful meme"}
    confirm = client.post(cluster_url, decision).content.decode()
    assert confirm.count('data-testid="member-outcome">will be decided<') == 2
    assert ReviewDecision.objects.count() == 0
    client.post(cluster_url, {**decision, "confirm": "yes", "member": [ids["meme"], ids["copy"]]})

    decided = ReviewDecision.objects.order_by("id")
    assert sorted(str(d.post_id) for d in decided) == sorted([ids["meme"], ids["copy"]])
    assert set(Post.objects.filter(pk__in=[ids["meme"], ids["copy"]]).values_list("state", flat=True)) == {
        PostState.REVIEWED}
    # Each copy's hash went into the reviewed bank on its own: a re-upload of either is removed at once.
    again = acme.submit(jpeg(drawn_meme(1).resize((400, 300)), quality=75), "lol once more")
    assert settled([again], worker) == {again: PostState.REMOVED}
    match = Post.objects.get(pk=again).current_analysis.explanation["bank_match"]
    assert match["review_decision"]["id"] in {d.pk for d in decided}
    assert Post.objects.get(pk=ids["elsewhere"]).state == PostState.NEEDS_REVIEW
