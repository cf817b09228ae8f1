"""Ship the default hate-speech policy as version 1."""
from __future__ import annotations

import json
from pathlib import Path

from django.db import migrations

POLICY_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "default_policy.json"
CATEGORY_FIELDS = ("slug", "name", "description", "severity", "prompts", "phrases", "questions",
                   "review_threshold", "remove_threshold")


def default_policy_create(apps, schema_editor):  # type: ignore[no-untyped-def]
    # The database being migrated, which need not be the default one.
    db = schema_editor.connection.alias
    Policy = apps.get_model("moderation", "Policy")
    Category = apps.get_model("moderation", "Category")
    if Policy.objects.using(db).exists():
        return
    data = json.loads(POLICY_FILE.read_text())
    policy = Policy.objects.using(db).create(version=1, benign_prompts=data["benign_prompts"], note=data["note"])
    Category.objects.using(db).bulk_create(
        Category(policy=policy, position=i, **{f: c[f] for f in CATEGORY_FIELDS})
        for i, c in enumerate(data["categories"])
    )


def default_policy_delete(apps, schema_editor):  # type: ignore[no-untyped-def]
    db = schema_editor.connection.alias
    apps.get_model("moderation", "Category").objects.using(db).filter(policy__version=1).delete()
    apps.get_model("moderation", "Policy").objects.using(db).filter(version=1).delete()


class Migration(migrations.Migration):
    dependencies = [("moderation", "0001_initial")]
    operations = [migrations.RunPython(default_policy_create, default_policy_delete)]
