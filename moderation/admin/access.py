"""Who may do what in the reviewer dashboard: the permissions each view and action checks."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

# Reviewing (claim, decide, undo, ask) uses the post's change permission; leading (policy
# versions, stats) uses the policy's add permission. See `moderation_setup_groups`.
REVIEW_PERM = "moderation.change_post"
VIEW_PERM = "moderation.view_post"
LEAD_PERM = "moderation.add_policy"


def can_review(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(REVIEW_PERM))


def can_lead(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(LEAD_PERM))


def permission_require(user: Any, perm: str) -> None:
    """403 unless the staff user holds ``perm`` (anonymous users never get here: admin_view redirects)."""
    if not (user.is_active and user.is_staff and user.has_perm(perm)):
        raise PermissionDenied
