"""Notices about posts; the statement-of-reasons mapping of policy categories."""
import json
import uuid
from pathlib import Path

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


POLICY_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "default_policy.json"


def default_mapping_set(apps, schema_editor):  # type: ignore[no-untyped-def]
    """The shipped categories get the database categories the default policy names for them."""
    Category = apps.get_model("moderation", "Category")
    for category in json.loads(POLICY_FILE.read_text())["categories"]:
        Category.objects.using(schema_editor.connection.alias).filter(slug=category["slug"]).update(dsa_category=category["dsa_category"])


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0013_engine_request_origin"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Notice",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("reporter_type", models.CharField(choices=[("user", "User"), ("trusted_flagger", "Trusted Flagger"),
                                                            ("authority", "Authority")], max_length=16)),
                ("reporter_reference", models.CharField(blank=True, max_length=255)),
                ("category", models.CharField(max_length=64)),
                ("explanation", models.TextField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("outcome", models.CharField(blank=True, choices=[("restricted", "Restricted"),
                                                                  ("no_action", "No Action")], max_length=16)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("client", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                             related_name="+", to=settings.AUTH_USER_MODEL)),
                ("decision", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                               related_name="+", to="moderation.reviewdecision")),
                ("post", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                           related_name="notices", to="moderation.post")),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [models.Index(fields=["post", "created_at"], name="moderation_notice_post")],
            },
        ),
        migrations.AddField(
            model_name="category", name="dsa_category",
            field=models.CharField(default="STATEMENT_CATEGORY_OTHER_VIOLATION_TC", max_length=64)),
        migrations.AddField(
            model_name="category", name="dsa_ground",
            field=models.CharField(choices=[("DECISION_GROUND_INCOMPATIBLE_CONTENT", "incompatible with the terms"),
                                            ("DECISION_GROUND_ILLEGAL_CONTENT", "illegal content")],
                                   default="DECISION_GROUND_INCOMPATIBLE_CONTENT", max_length=40)),
        migrations.AddField(model_name="category", name="legal_ground",
                            field=models.CharField(blank=True, max_length=500)),
        migrations.RunPython(default_mapping_set, migrations.RunPython.noop),
    ]
