"""How the admin shows ids and times compactly: short, with the full value on hover."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

SHORT_ID = 8  # characters of a UUID shown in titles and tables


def short_id(value: Any) -> str:
    return str(value)[:SHORT_ID]


def short_id_html(value: Any) -> SafeString:
    """The first 8 characters of an id; the whole id on hover; never wrapped (``.mod-id``)."""
    return format_html('<span class="mod-id" title="{}">{}</span>', value, short_id(value))


def compact_time(value: datetime | None, *, suffix: str = "") -> SafeString | str:
    """``2026-11-29 15:43`` in the site's time zone (about half the width of Django's default)."""
    if value is None:
        return "—"
    shown = timezone.localtime(value).strftime("%Y-%m-%d %H:%M") + suffix
    return format_html('<span title="{}">{}</span>', value.isoformat(), shown)
