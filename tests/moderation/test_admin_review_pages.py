"""The reviewer's pages on posts made by the real services (submit, claim), not only by factories."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from moderation.models import Post, PostState, ReviewDecision
from moderation.services.analysis import post_claim_batch
from moderation.services.posts import post_submit
from moderation.services.reviews import review_claim_next, review_decide
from tests.factories import UserFactory, image_bytes, post_in_review, staff_member

pytestmark = pytest.mark.django_db


def _submitted(client_user, size=(640, 480)) -> Post:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile("p.png", image_bytes("PNG", size=size), "image/png")
    return post_submit(client=client_user, text="a post", image=upload)[0]


def test_post_page_renders_for_submitted_and_claimed_posts(reviewer_client, client_user):  # type: ignore[no-untyped-def]
    queued = _submitted(client_user)
    claimed = _submitted(client_user)
    post_claim_batch(limit=1, worker="gpu0@test")  # the oldest: ``queued`` stays queued

    pages = {post.pk: reviewer_client.get(reverse("admin:moderation_review_post", args=[post.pk]))
             for post in (queued, claimed)}

    assert Post.objects.get(pk=queued.pk).state == PostState.ANALYZING
    assert {pk: r.status_code for pk, r in pages.items()} == {queued.pk: 200, claimed.pk: 200}
    assert "queued → analyzing" in pages[queued.pk].content.decode()
    assert f'title="{queued.pk}">Post {str(queued.pk)[:8]}<' in pages[queued.pk].content.decode()


def test_queue_shows_the_top_category_score_beside_the_priority_and_a_thumbnail(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review(priority=0.9, image_size=(1600, 1200))  # analysis: hate 0.72 on top, risk 0.9

    page = reviewer_client.get(reverse("admin:moderation_review_queue")).content.decode()

    assert 'data-testid="score">0.72<' in page
    assert 'data-testid="priority">0.90<' in page
    assert f'src="{reverse("moderation:post-thumbnail", args=[post.pk])}"' in page
    assert f'<span class="mod-id" title="{post.pk}">{str(post.pk)[:8]}</span>' in page


def test_undo_with_nothing_to_undo_says_so_and_stays_on_the_page(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review()
    here = reverse("admin:moderation_review_post", args=[post.pk])

    response = reviewer_client.post(reverse("admin:moderation_review_undo"), {"next": here}, follow=True)

    assert response.redirect_chain == [(here, 302)]
    assert "Nothing to undo: your last decision is older than 30 seconds" in response.content.decode()
    assert ReviewDecision.objects.count() == 0


def test_undo_never_redirects_off_site(reviewer_client):  # type: ignore[no-untyped-def]
    response = reviewer_client.post(reverse("admin:moderation_review_undo"), {"next": "https://evil.example/"})

    assert response["Location"] == reverse("admin:moderation_review_queue")


@override_settings(MODERATION={"REVIEW_UNDO_SECONDS": 45})
def test_key_help_and_messages_give_the_configured_undo_window(reviewer_client):  # type: ignore[no-untyped-def]
    post, _ = post_in_review(priority=0.9), post_in_review(priority=0.1)

    page = reviewer_client.get(reverse("admin:moderation_review_post", args=[post.pk])).content.decode()
    decided = reviewer_client.post(reverse("admin:moderation_review_decide", args=[post.pk]),
                                   {"verdict": "not_violating"}, follow=True).content.decode()

    assert "undo your last decision (45 s)" in page and "REVIEW_UNDO_SECONDS" not in page
    assert "Press u within 45 seconds to undo." in decided


def test_reviewer_post_record_is_titled_for_review_without_save_buttons(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review(image_size=(64, 48))

    page = reviewer_client.get(reverse("admin:moderation_post_change", args=[post.pk])).content.decode()

    assert f"<h1>Review record of post {str(post.pk)[:8]}</h1>" in page
    assert "Change post" not in page and 'name="_save"' not in page and 'name="_continue"' not in page
    assert f'href="{reverse("admin:moderation_review_post", args=[post.pk])}" id="open-review"' in page
    assert f'href="{reverse("moderation:post-image", args=[post.pk])}">64×48 JPEG</a>' in page
    assert "/media/" not in page


def test_changelist_shows_short_ids_with_the_full_id_on_hover(reviewer_client):  # type: ignore[no-untyped-def]
    post = post_in_review()

    page = reviewer_client.get(reverse("admin:moderation_post_changelist")).content.decode()

    assert f'<span class="mod-id" title="{post.pk}">{str(post.pk)[:8]}</span>' in page
    assert f">{post.pk}<" not in page


def test_admin_index_leads_reviewers_to_the_queue(reviewer_client):  # type: ignore[no-untyped-def]
    post_in_review(), post_in_review()

    page = reviewer_client.get(reverse("admin:index")).content.decode()

    assert page.index('id="mod-start"') < page.index('id="content-main"')
    assert '<strong data-testid="index-waiting">2</strong> posts waiting for review' in page
    assert f'action="{reverse("admin:moderation_review_claim")}"' in page and 'id="start-reviewing"' in page


def test_admin_index_shows_no_queue_to_staff_without_the_permission(client, groups):  # type: ignore[no-untyped-def]
    client.force_login(UserFactory(username="nobody", is_staff=True))

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="mod-start"' not in page


def test_start_reviewing_from_the_index_opens_the_top_post(reviewer_client):  # type: ignore[no-untyped-def]
    top, _ = post_in_review(priority=0.9), post_in_review(priority=0.1)

    response = reviewer_client.post(reverse("admin:moderation_review_claim"))

    assert response["Location"] == reverse("admin:moderation_review_post", args=[top.pk])


def test_escalating_hands_the_next_different_post_and_leaves_the_escalation_to_others(reviewer, groups):  # type: ignore[no-untyped-def]
    first, second = post_in_review(priority=0.9), post_in_review(priority=0.5)
    other = staff_member("otto", "Reviewer")

    assert review_claim_next(reviewer=reviewer).pk == first.pk
    review_decide(post=first, reviewer=reviewer, verdict="escalate")
    assert review_claim_next(reviewer=reviewer).pk == second.pk
    review_decide(post=second, reviewer=reviewer, verdict="not_violating")

    assert review_claim_next(reviewer=reviewer) is None
    assert review_claim_next(reviewer=other).pk == first.pk
