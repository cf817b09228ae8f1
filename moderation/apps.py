"""App configuration: registers system checks and the settings reloader."""
from __future__ import annotations

from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from moderation import checks  # noqa: F401  (registers the checks)
        from moderation import conf  # noqa: F401  (connects setting_changed)
