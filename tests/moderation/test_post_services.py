"""post_submit's insert: both rows or neither, and a lost external_id race answers with the winner."""
from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from moderation.models import Post, PostEvent, PostState
from moderation.services import posts as post_services
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def test_submit_stores_the_post_and_its_queued_event(client_user):  # type: ignore[no-untyped-def]
    post, created = post_services.post_submit(client=client_user, text="hello",
                                              image=SimpleUploadedFile("a.png", image_bytes(), "image/png"))
    assert created and not post._state.adding
    stored = Post.objects.get(pk=post.pk)
    assert (stored.text, stored.state, stored.image_width) == ("hello", PostState.QUEUED, 64)
    assert stored.created_at == post.created_at and stored.updated_at is not None
    event = PostEvent.objects.get(post=post)
    assert (event.to_state, event.actor) == (PostState.QUEUED, f"client:{client_user.pk}")


@pytest.mark.parametrize("in_transaction", [False, True])
def test_lost_external_id_race_returns_the_winner_and_keeps_nothing(client_user, in_transaction):  # type: ignore[no-untyped-def]
    winner, _ = post_services.post_submit(client=client_user, text="first", external_id="dup")
    # A second submit that passed the existence check before the winner committed.
    loser = Post(client=client_user, external_id="dup", text="second")
    loser.image.save("upload.jpg", SimpleUploadedFile("b.png", image_bytes()), save=False)
    stored_file = loser.image.path

    if in_transaction:
        with transaction.atomic():
            result = post_services._post_insert(post=loser)
            assert Post.objects.count() == 1  # the caller's transaction is still usable
    else:
        result = post_services._post_insert(post=loser)

    assert result == (winner, False)
    assert Post.objects.count() == 1 and PostEvent.objects.count() == 1
    assert not os.path.exists(stored_file)
