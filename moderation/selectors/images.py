"""Who may see a post's image: its owner (API key) or staff allowed to view posts (admin session)."""
from __future__ import annotations

import uuid
from typing import Any

from moderation.models import Post
from moderation.errors import NotFound

VIEW_PERM = "moderation.view_post"


def post_image_viewable(*, viewer: Any, post_id: uuid.UUID | str, as_staff: bool) -> Post:
    """The post whose image ``viewer`` may see, else ``NotFound`` (never "forbidden": a refusal
    must not tell that the post exists).

    ``as_staff`` is True for an admin session: then any post, given the view permission. With an
    API key (``as_staff`` False) only the client's own posts.
    """
    try:
        pk = post_id if isinstance(post_id, uuid.UUID) else uuid.UUID(str(post_id))
    except ValueError:
        raise NotFound("not_found", "No such image.")
    post = Post.objects.filter(pk=pk).first()
    allowed = post is not None and _may_view(viewer=viewer, post=post, as_staff=as_staff)
    if not allowed or not post.image or post.content_deleted_at:
        raise NotFound("not_found", "No such image.")
    return post


def _may_view(*, viewer: Any, post: Post, as_staff: bool) -> bool:
    if viewer is None or not viewer.is_authenticated or not viewer.is_active:
        return False
    if as_staff:
        return bool(viewer.is_staff and viewer.has_perm(VIEW_PERM))
    return post.client_id == viewer.pk
