"""Fixtures of the app's tests: uploads land in a temporary media root; the role groups exist."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def groups(db):  # type: ignore[no-untyped-def]
    """The Reviewer and Lead groups, as `moderation_setup_groups` makes them."""
    call_command("moderation_setup_groups", stdout=StringIO())


@pytest.fixture
def reviewer(groups):  # type: ignore[no-untyped-def]
    """A staff member of the Reviewer group."""
    from tests.factories import staff_member

    return staff_member("rita", "Reviewer")


@pytest.fixture
def reviewer_client(client, reviewer):  # type: ignore[no-untyped-def]
    """The test client, logged in as `reviewer`."""
    client.force_login(reviewer)
    return client
