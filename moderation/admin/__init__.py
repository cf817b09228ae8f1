"""Admin of the moderation app: the reviewer dashboard, policy versions, the API side."""
from __future__ import annotations

from moderation.admin import banks, clients, decisions, models, policies, posts  # noqa: F401  (they register the ModelAdmins)
