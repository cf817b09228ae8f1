# The text role's sentence embedding joins the stored analysis, for the precedents and the trained head.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0021_appeal_moot'),
    ]

    operations = [
        migrations.AddField(
            model_name='analysis',
            name='sentence_embedding',
            field=models.BinaryField(blank=True, null=True),
        ),
    ]
