"""The reviewer dashboard per role (Django's admin test-client pattern): who may see, decide, edit policy."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from moderation.models import Category, Policy, Post, PostState, ReviewDecision
from moderation.services.policies import policy_active
from tests.factories import UserFactory, post_in_review, staff_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer_client(client, groups):  # type: ignore[no-untyped-def]
    client.force_login(staff_member("rita", "Reviewer"))
    return client


@pytest.fixture
def lead_client(client, groups):  # type: ignore[no-untyped-def]
    client.force_login(staff_member("leo", "Lead"))
    return client


def _policy_snapshot() -> list[tuple]:
    return list(Category.objects.order_by("pk").values_list("pk", "policy__version", "slug", "name",
                                                             "review_threshold", "remove_threshold"))


def _new_version_data(policy: Policy, **change: object) -> dict[str, object]:
    categories = list(policy.categories.order_by("position"))
    data: dict[str, object] = {"note": "stricter hate", "benign_prompts": "\n".join(policy.benign_prompts),
                               "categories-TOTAL_FORMS": len(categories), "categories-INITIAL_FORMS": len(categories)}
    for i, c in enumerate(categories):
        for field in ("slug", "name", "description", "severity", "review_threshold", "remove_threshold"):
            data[f"categories-{i}-{field}"] = getattr(c, field)
        for field in ("prompts", "phrases", "questions"):
            data[f"categories-{i}-{field}"] = "\n".join(getattr(c, field))
    data.update(change)
    return data


def test_setup_groups_is_idempotent_and_exact(groups):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())

    perms = {g.name: sorted(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert perms["Reviewer"] == ["change_appeal", "change_post", "view_analysis", "view_appeal", "view_category",
                                 "view_policy", "view_post", "view_postevent", "view_reviewdecision"]
    assert sorted(set(perms["Lead"]) - set(perms["Reviewer"])) == [
        "add_bank", "add_bankentry", "add_category", "add_policy", "change_bank", "change_bankentry",
        "change_category", "change_modelversion", "change_policy", "delete_bank", "delete_bankentry", "view_bank",
        "view_bankentry", "view_modelversion", "view_statementexport"]


@pytest.mark.parametrize("name", ["queue", "stats", "policy_add"])
def test_anonymous_is_redirected_to_login(client, name):  # type: ignore[no-untyped-def]
    url = {"queue": reverse("admin:moderation_review_queue"), "stats": reverse("admin:moderation_review_stats"),
           "policy_add": reverse("admin:moderation_policy_add")}[name]

    response = client.get(url)

    assert response.status_code == 302 and response["Location"].startswith(f"{reverse('admin:login')}?next=")


def test_anonymous_cannot_see_a_post_or_its_image(client):  # type: ignore[no-untyped-def]
    post = post_in_review(image_size=(64, 48))
    response = client.get(reverse("admin:moderation_review_post", args=[post.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    for name in ("post-image", "post-thumbnail"):
        assert client.get(reverse(f"moderation:{name}", args=[post.pk])).status_code == 404


def test_staff_without_a_group_gets_403_everywhere(client):  # type: ignore[no-untyped-def]
    client.force_login(UserFactory(username="nobody", is_staff=True))
    post = post_in_review()

    assert client.get(reverse("admin:moderation_review_queue")).status_code == 403
    assert client.post(reverse("admin:moderation_review_decide", args=[post.pk]),
                       {"verdict": "not_violating"}).status_code == 403
    assert ReviewDecision.objects.count() == 0


def test_reviewer_gets_403_on_policy_add_and_change_and_nothing_changes(reviewer_client):  # type: ignore[no-untyped-def]
    policy = policy_active()
    before = _policy_snapshot()

    responses = [
        reviewer_client.get(reverse("admin:moderation_policy_add")),
        reviewer_client.post(reverse("admin:moderation_policy_add"), {"note": "x"}),
        reviewer_client.get(reverse("admin:moderation_policy_new_version", args=[policy.pk])),
        reviewer_client.post(reverse("admin:moderation_policy_new_version", args=[policy.pk]),
                             _new_version_data(policy, **{"categories-0-review_threshold": 0.1})),
        reviewer_client.post(reverse("admin:moderation_policy_change", args=[policy.pk]), {"note": "edited"}),
    ]

    assert [r.status_code for r in responses] == [403] * 5
    assert _policy_snapshot() == before and Policy.objects.get().note == policy.note


def test_reviewer_may_view_the_policy_read_only(reviewer_client):  # type: ignore[no-untyped-def]
    response = reviewer_client.get(reverse("admin:moderation_policy_change", args=[policy_active().pk]))

    assert response.status_code == 200
    assert b"New version from this one" not in response.content and b'name="_save"' not in response.content


def test_lead_publishes_a_new_version_and_the_old_one_is_untouched(lead_client):  # type: ignore[no-untyped-def]
    v1 = policy_active()
    before = _policy_snapshot()
    page = lead_client.get(reverse("admin:moderation_policy_change", args=[v1.pk]))
    assert b"New version from this one" in page.content

    response = lead_client.post(reverse("admin:moderation_policy_new_version", args=[v1.pk]),
                                _new_version_data(v1, **{"categories-0-review_threshold": 0.25}))

    v2 = Policy.objects.get(version=v1.version + 1)
    assert response.status_code == 302 and response["Location"] == reverse("admin:moderation_policy_change",
                                                                           args=[v2.pk])
    assert (v2.note, v2.created_by.username) == ("stricter hate", "leo")
    first = v2.categories.order_by("position").first()
    assert (first.slug, first.review_threshold) == (v1.categories.order_by("position").first().slug, 0.25)
    assert v2.categories.count() == v1.categories.count()
    assert _policy_snapshot()[:len(before)] == before


def test_lead_cannot_change_a_published_version_in_place(lead_client):  # type: ignore[no-untyped-def]
    policy = policy_active()
    before = _policy_snapshot()

    response = lead_client.post(reverse("admin:moderation_policy_change", args=[policy.pk]), {"note": "edited"})

    assert response.status_code == 403 and _policy_snapshot() == before


def test_reviewer_sees_queue_post_and_image_but_not_stats(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review(image_size=(640, 480))

    queue = reviewer_client.get(reverse("admin:moderation_review_queue"))
    page = reviewer_client.get(reverse("admin:moderation_review_post", args=[post.pk]))
    image = reviewer_client.get(reverse("moderation:post-image", args=[post.pk]))

    assert queue.status_code == 200 and b'data-testid="waiting">1<' in queue.content
    assert page.status_code == 200
    # The analysis' box [64, 48, 320, 240] on a 640×480 image, in percentages of the displayed image.
    assert b"left:10.0000%;top:10.0000%;width:40.0000%;height:40.0000%" in page.content
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert image["X-Content-Type-Options"] == "nosniff"
    assert b"".join(image.streaming_content)[:2] == b"\xff\xd8"
    assert reviewer_client.get(reverse("admin:moderation_review_stats")).status_code == 403


def test_lead_sees_stats_as_svg(lead_client):  # type: ignore[no-untyped-def]
    post_in_review()

    response = lead_client.get(reverse("admin:moderation_review_stats"))

    assert response.status_code == 200 and response.content.count(b'<figure class="mod-chart">') == 5
    assert b"<title>&lt; 1 h: 1</title>" in response.content  # the one waiting post, in the youngest bucket
    assert b'src="http' not in response.content and b'href="http' not in response.content  # no CDN


@pytest.mark.parametrize(("data", "verdict"), [
    ({"verdict": "not_violating"}, "not_violating"),
    ({"verdict": "escalate"}, "escalate"),
    ({"verdict": "violating", "category": "hate", "reason": "a slur"}, "violating"),
])
def test_every_decision_writes_exactly_one_row_and_opens_the_next(reviewer_client, data, verdict):  # type: ignore[no-untyped-def]
    post, following = post_in_review(priority=0.9), post_in_review(priority=0.1)

    response = reviewer_client.post(reverse("admin:moderation_review_decide", args=[post.pk]), data)

    assert list(ReviewDecision.objects.values_list("post_id", "verdict", "reviewer_username")) == [
        (post.pk, verdict, "rita")]
    # An escalated post rises to the top of the queue, but for others: the next post is a different one.
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:moderation_review_post", args=[following.pk])


def test_an_incomplete_violating_decision_writes_nothing(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review()

    response = reviewer_client.post(reverse("admin:moderation_review_decide", args=[post.pk]),
                                    {"verdict": "violating", "category": "hate"}, follow=True)

    assert ReviewDecision.objects.count() == 0 and Post.objects.get(pk=post.pk).state == PostState.NEEDS_REVIEW
    assert b"needs a category and a reason" in response.content


def test_undo_view_writes_one_undo_row(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review()
    reviewer_client.post(reverse("admin:moderation_review_decide", args=[post.pk]), {"verdict": "not_violating"})

    response = reviewer_client.post(reverse("admin:moderation_review_undo"))

    assert response["Location"] == reverse("admin:moderation_review_post", args=[post.pk])
    assert list(ReviewDecision.objects.order_by("id").values_list("verdict", flat=True)) == ["not_violating", "undo"]


def test_bulk_action_confirms_first_then_writes_one_row_per_post(reviewer_client):  # type: ignore[no-untyped-def]
    posts = [post_in_review(), post_in_review(), post_in_review(state=PostState.ALLOWED)]
    url = reverse("admin:moderation_post_changelist")
    data = {"action": "mark_not_violating", "_selected_action": [str(p.pk) for p in posts]}

    confirm = reviewer_client.post(url, data)
    assert confirm.status_code == 200 and b"will be skipped" in confirm.content
    assert ReviewDecision.objects.count() == 0

    done = reviewer_client.post(url, {**data, "confirm": "yes"})

    assert done.status_code == 302
    assert sorted(ReviewDecision.objects.values_list("post_id", flat=True)) == sorted(p.pk for p in posts[:2])
    assert set(Post.objects.filter(pk__in=[p.pk for p in posts[:2]]).values_list("state", flat=True)) == {"reviewed"}


def test_changelist_shows_the_policy_version_that_judged_each_post(reviewer_client):  # type: ignore[no-untyped-def]
    post_in_review()

    response = reviewer_client.get(reverse("admin:moderation_post_changelist"))

    assert response.status_code == 200 and f"v{policy_active().version}".encode() in response.content


@pytest.mark.parametrize("model", ["post", "policy", "apikey", "webhookendpoint", "webhookdelivery",
                                   "reviewdecision", "statementexport"])
def test_every_registration_still_renders_for_a_superuser(client, model):  # type: ignore[no-untyped-def]
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    assert client.get(reverse(f"admin:moderation_{model}_changelist")).status_code == 200


def test_review_page_says_which_outputs_are_unavailable(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review(image_size=(640, 480))
    analysis = post.current_analysis
    analysis.explanation = {**analysis.explanation, "caption": None,
                            "unavailable": {"caption": "unavailable: no checkpoint for generator"}}
    analysis.save(update_fields=["explanation"])

    page = reviewer_client.get(reverse("admin:moderation_review_post", args=[post.pk])).content.decode()

    assert ('<li><strong>caption</strong>: unavailable: no checkpoint for generator</li>' in page
            and "a red square" not in page)
    assert 'data-testid="unavailable"' not in reviewer_client.get(
        reverse("admin:moderation_review_post", args=[post_in_review().pk])).content.decode()


def test_lead_edits_exemplars_in_a_new_version(lead_client):  # type: ignore[no-untyped-def]
    v1 = policy_active()
    data = _new_version_data(v1, **{"categories-0-exemplars": "they should all leave\nsend them back",
                                    "benign_exemplars": "I hate Mondays\nwelcome, neighbours"})

    response = lead_client.post(reverse("admin:moderation_policy_new_version", args=[v1.pk]), data)

    v2 = Policy.objects.get(version=v1.version + 1)
    assert response.status_code == 302
    assert v2.benign_exemplars == ["I hate Mondays", "welcome, neighbours"]
    assert v2.categories.order_by("position").first().exemplars == ["they should all leave", "send them back"]
    assert v1.categories.order_by("position").first().exemplars != ["they should all leave", "send them back"]


def test_review_page_draws_the_read_words_as_their_own_layer(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review(image_size=(640, 480))
    analysis = post.current_analysis
    analysis.explanation = {**analysis.explanation, "ocr_words": [
        {"text": "HATE", "box": [64.0, 96.0, 192.0, 144.0], "score": 0.99}]}
    analysis.save(update_fields=["explanation"])

    page = reviewer_client.get(reverse("admin:moderation_review_post", args=[post.pk])).content.decode()

    assert ('<div class="mod-word" title="HATE 0.99" style="left:10.0000%;top:20.0000%;width:20.0000%;'
            'height:10.0000%"></div>') in page


def test_queue_says_which_model_roles_are_real(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review()
    queue = reverse("admin:moderation_review_queue")
    assert 'data-testid="models-notice"' not in reviewer_client.get(queue).content.decode()
    analysis = post.current_analysis
    analysis.explanation = {**analysis.explanation,
                            "roles": {"real": ["reader", "text"], "no_checkpoint": ["embedder", "generator"]}}
    analysis.save(update_fields=["explanation"])

    page = reviewer_client.get(queue).content.decode()

    assert ("Models: real checkpoints for reader, text; random weights, output withheld as unavailable, for "
            "embedder, generator.") in page
