from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0020_statement_exports"),
    ]

    operations = [
        migrations.AlterField(
            model_name="appeal",
            name="decision",
            field=models.CharField(blank=True, choices=[("uphold", "Uphold"), ("overturn", "Overturn"),
                                                        ("moot", "Moot")], max_length=16),
        ),
    ]
