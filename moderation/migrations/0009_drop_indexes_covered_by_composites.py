# The single-column foreign-key indexes that a composite index already leads with: each one
# cost a write per row change (a post changes state twice after its insert).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0008_model_version_replaced'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='analysis',
            name='post',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='analyses', to='moderation.post'),
        ),
        migrations.AlterField(
            model_name='post',
            name='client',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='moderation_posts', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='postevent',
            name='post',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='moderation.post'),
        ),
    ]
