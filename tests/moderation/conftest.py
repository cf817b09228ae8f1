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
