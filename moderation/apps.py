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

        _opclass_index_expressions_allow()


def _opclass_index_expressions_allow() -> None:
    """Let ``OpClass`` wrap an index expression (the pgvector search index casts its column), as
    ``django.contrib.postgres`` does when installed; that app cannot be required here, since it
    imports psycopg and sites on SQLite have none."""
    from django.contrib.postgres.indexes import OpClass
    from django.db.models import OrderBy
    from django.db.models.functions import Collate
    from django.db.models.indexes import IndexExpression

    IndexExpression.register_wrappers(OrderBy, OpClass, Collate)
