"""Admin of the moderation app: the reviewer dashboard, policy versions, the API side."""
from __future__ import annotations

from moderation.admin import appeals, banks, clients, decisions, models, policies, posts  # noqa: F401  (they register the ModelAdmins)

from django.contrib import admin as _admin  # noqa: E402

# The admin index opens with the review queue (waiting count, "Start reviewing") for those who may
# see it. Only when the site has not chosen its own index template.
if _admin.site.index_template is None:
    _admin.site.index_template = "moderation/admin/index.html"
