"""Notices about posts."""
import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


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
    ]
