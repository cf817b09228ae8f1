"""Policy exemplars for the text role: new fields, filled in on the shipped default policy."""
from __future__ import annotations

import json
from pathlib import Path

from django.db import migrations, models

POLICY_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "default_policy.json"


def default_exemplars_fill(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Give the shipped default policy's versions the default exemplars.

    The fields are new, so no version had any exemplars to keep; a lead's own categories
    (a slug the default does not have) and versions with a note of their own stay empty.
    """
    Policy = apps.get_model("moderation", "Policy")
    Category = apps.get_model("moderation", "Category")
    data = json.loads(POLICY_FILE.read_text())
    by_slug = {c["slug"]: c["exemplars"] for c in data["categories"]}
    db = schema_editor.connection.alias
    shipped = Policy.objects.using(db).filter(note=data["note"], benign_exemplars=[])
    shipped.update(benign_exemplars=data["benign_exemplars"])
    for category in Category.objects.using(db).filter(policy__note=data["note"], slug__in=list(by_slug)):
        if not category.exemplars:
            category.exemplars = by_slug[category.slug]
            category.save(update_fields=["exemplars"])


class Migration(migrations.Migration):
    dependencies = [("moderation", "0016_due_process")]
    operations = [
        migrations.AddField(model_name="policy", name="benign_exemplars",
                            field=models.JSONField(blank=True, default=list)),
        migrations.AddField(model_name="category", name="exemplars",
                            field=models.JSONField(blank=True, default=list)),
        migrations.RunPython(default_exemplars_fill, migrations.RunPython.noop),
    ]
