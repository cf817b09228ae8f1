"""``manage.py moderation_setup_groups``: create or update the Reviewer and Lead groups (idempotent)."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError

# Reviewers see posts, analyses, events and policies, and decide (the post's change permission) and
# appeals (the appeal's change permission).
REVIEWER_PERMISSIONS = ("view_post", "change_post", "view_analysis", "view_postevent", "view_reviewdecision",
                        "view_policy", "view_category", "view_appeal", "change_appeal")
# Leads also publish policy versions (add; published versions are never changed in place) and see stats.
# and promote or roll back classifier versions, manage the hash banks, and see the statements of reasons
# sent to the DSA Transparency Database.
LEAD_PERMISSIONS = REVIEWER_PERMISSIONS + ("add_policy", "change_policy", "add_category", "change_category",
                                          "view_modelversion", "change_modelversion", "view_statementexport",
                                          *(f"{verb}_{model}" for model in ("bank", "bankentry")
                                            for verb in ("view", "add", "change", "delete")))
GROUPS = {"Reviewer": REVIEWER_PERMISSIONS, "Lead": LEAD_PERMISSIONS}


def _permissions(codenames: tuple[str, ...]) -> list[Permission]:
    found = list(Permission.objects.filter(content_type__app_label="moderation", codename__in=codenames))
    missing = set(codenames) - {p.codename for p in found}
    if missing:
        raise CommandError(f"Missing permissions {sorted(missing)}: run `manage.py migrate` first.")
    return found


class Command(BaseCommand):
    help = "Create the Reviewer and Lead groups with exactly their permissions; safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, codenames in GROUPS.items():
            group, created = Group.objects.get_or_create(name=name)
            group.permissions.set(_permissions(codenames))
            self.stdout.write(f"{'Created' if created else 'Updated'} group {name!r} ({len(codenames)} permissions).")
        self.stdout.write("Members also need is_staff=True to open the admin.")
