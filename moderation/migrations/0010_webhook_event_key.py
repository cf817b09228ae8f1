# Webhook deliveries are now unique per (post, event): the final state the engine set, as
# before, or a reviewer's decision ("review:<id>"), so a decision taken back and replaced
# is told too. Existing deliveries keep their state as their event.
from django.db import migrations, models


def event_keys_from_states(apps, schema_editor):
    WebhookDelivery = apps.get_model("moderation", "WebhookDelivery")
    WebhookDelivery.objects.using(schema_editor.connection.alias).update(event_key=models.F("post_state"))


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0009_drop_indexes_covered_by_composites"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="event_key",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(event_keys_from_states, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="webhookdelivery",
            name="moderation_webhook_once_per_state",
        ),
        migrations.AddConstraint(
            model_name="webhookdelivery",
            constraint=models.UniqueConstraint(fields=("post", "event_key"), name="moderation_webhook_once_per_event"),
        ),
    ]
