"""Thumbnails of post images for the queue; who promoted and who retired a model version."""

import moderation.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0010_webhook_event_key'),
    ]

    operations = [
        migrations.AddField(
            model_name='modelversion',
            name='promoted_by',
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name='modelversion',
            name='retired_by',
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name='post',
            name='image_thumbnail',
            field=models.FileField(blank=True, max_length=255, upload_to=moderation.models.post_thumbnail_path),
        ),
    ]
