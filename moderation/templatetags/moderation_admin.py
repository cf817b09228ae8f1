"""Template tags of the reviewer dashboard: the queue summary shown on the admin index."""
from __future__ import annotations

from typing import Any

from django import template

from moderation.admin.access import VIEW_PERM, can_review
from moderation.selectors.reviews import QueueSummary, review_queue_summary

register = template.Library()


@register.simple_tag(takes_context=True)
def moderation_queue_start(context: dict[str, Any]) -> dict[str, Any] | None:
    """For staff who may see the queue: its summary and whether they may claim from it; else None."""
    request = context.get("request")  # absent when a site lacks the "request" context processor
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff and user.has_perm(VIEW_PERM)):
        return None
    summary: QueueSummary = review_queue_summary()
    return {"summary": summary, "can_review": can_review(user)}
