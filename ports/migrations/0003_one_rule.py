"""One rule type: items keyed by the rule's identity (without the interface label), every
checklist's rule set kept under its fingerprint, names unique without regard to case."""

import hashlib
import json

import django.core.validators
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


IDENTITY = ["requirement", "source", "destination", "protocol", "port_start", "port_end"]


def identity(item) -> tuple:
    return (item.requirement.uid, item.source, item.destination, item.protocol, item.port_start, item.port_end)


def rekey_and_fingerprint(apps, schema_editor) -> None:
    """Items get Rule.key; each deployment its checklist's fingerprint, kept as an export."""
    Deployment = apps.get_model("ports", "Deployment")
    ChecklistItem = apps.get_model("ports", "ChecklistItem")
    ChecklistExport = apps.get_model("ports", "ChecklistExport")
    seen = set()
    for export in ChecklistExport.objects.order_by("created", "pk"):
        if (export.deployment_id, export.fingerprint) in seen:
            export.delete()  # the same rule set exported again: one row keeps it
        seen.add((export.deployment_id, export.fingerprint))
    for deployment in Deployment.objects.all():
        items = list(ChecklistItem.objects.filter(deployment=deployment).select_related("requirement"))
        for item in items:
            item.key = hashlib.sha256("|".join(map(str, identity(item))).encode()).hexdigest()
        ChecklistItem.objects.bulk_update(items, ["key"])
        canonical = json.dumps(sorted(identity(item) for item in items), separators=(",", ":"))
        deployment.checklist_fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        deployment.save(update_fields=["checklist_fingerprint"])
        if (deployment.pk, deployment.checklist_fingerprint) not in seen:
            rules = [dict(zip(IDENTITY, identity(item))) for item in items]
            ChecklistExport.objects.create(
                deployment=deployment, fingerprint=deployment.checklist_fingerprint, kind="checklist", rules=rules
            )


class Migration(migrations.Migration):

    dependencies = [
        ('ports', '0002_exports'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='appliance',
            name='appliance_unique_hostname',
        ),
        migrations.RemoveConstraint(
            model_name='host',
            name='host_unique_name',
        ),
        migrations.RemoveConstraint(
            model_name='peernetwork',
            name='peernetwork_unique_name',
        ),
        migrations.RemoveIndex(
            model_name='checklistexport',
            name='checklistexport_fingerprint',
        ),
        migrations.AddField(
            model_name='deployment',
            name='checklist_revision',
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name='deployment',
            name='checklist_fingerprint',
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name='checklistexport',
            name='rules',
            field=models.JSONField(help_text="The rules' identities: [{requirement, source, destination, protocol, ...}]."),
        ),
        migrations.AlterField(
            model_name='deployment',
            name='dlp_base_port',
            field=models.PositiveIntegerField(default=17500, help_text="Start of the configurable DLP range; the range's ports move with it.", validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(65535)]),
        ),
        migrations.RunPython(rekey_and_fingerprint, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='appliance',
            constraint=models.UniqueConstraint(models.F('deployment'), django.db.models.functions.text.Lower('hostname'), name='appliance_unique_hostname'),
        ),
        migrations.AddConstraint(
            model_name='checklistexport',
            constraint=models.UniqueConstraint(fields=('deployment', 'fingerprint'), name='checklistexport_unique_fingerprint'),
        ),
        migrations.AddConstraint(
            model_name='host',
            constraint=models.UniqueConstraint(models.F('deployment'), models.F('role'), django.db.models.functions.text.Lower('name'), name='host_unique_name'),
        ),
        migrations.AddConstraint(
            model_name='peernetwork',
            constraint=models.UniqueConstraint(models.F('deployment'), models.F('role'), django.db.models.functions.text.Lower('name'), name='peernetwork_unique_name'),
        ),
    ]
