import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_deployments(apps, schema_editor):
    """Each current state's deployment, its item's."""
    LatestProbe = apps.get_model("probes", "LatestProbe")
    ChecklistItem = apps.get_model("ports", "ChecklistItem")
    items = ChecklistItem.objects.filter(pk=OuterRef("item_id")).values("deployment_id")[:1]
    LatestProbe.objects.update(deployment_id=Subquery(items))


class Migration(migrations.Migration):
    dependencies = [
        ("ports", "0017_items_changed_in"),
        ("probes", "0008_channels_choose_their_alerts"),
    ]

    operations = [
        migrations.AddField(
            model_name="latestprobe",
            name="changed_in",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="latestprobe",
            name="deployment",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="ports.deployment",
            ),
        ),
        migrations.RunPython(fill_deployments, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="latestprobe",
            name="deployment",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="ports.deployment",
            ),
        ),
        migrations.AddIndex(
            model_name="latestprobe",
            index=models.Index(fields=["deployment", "changed_in"], name="latestprobe_changed_in"),
        ),
    ]
