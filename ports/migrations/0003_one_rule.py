"""One rule type: items keyed by the rule's identity (without the interface label), every
checklist's rule set kept under its fingerprint, names unique without regard to case."""

import hashlib
import json

import django.core.validators
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Cast, Concat


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
        items, keys = [], set()
        for item in ChecklistItem.objects.filter(deployment=deployment).select_related("requirement").order_by("pk"):
            item.key = hashlib.sha256("|".join(map(str, identity(item))).encode()).hexdigest()
            if item.key in keys:
                # The same firewall rule on two interfaces that shared an address (the old admin let
                # that be saved): one item stays; the next regeneration settles the interface.
                item.delete()
                continue
            keys.add(item.key)
            items.append(item)
        # Through a key no item has, so that no two items share a key midway.
        ChecklistItem.objects.filter(deployment=deployment).update(
            key=Concat(models.Value("old-"), Cast("pk", models.CharField()))
        )
        ChecklistItem.objects.bulk_update(items, ["key"])
        canonical = json.dumps(sorted(identity(item) for item in items), separators=(",", ":"))
        deployment.checklist_fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        deployment.save(update_fields=["checklist_fingerprint"])
        if (deployment.pk, deployment.checklist_fingerprint) not in seen:
            rules = [dict(zip(IDENTITY, identity(item))) for item in items]
            ChecklistExport.objects.create(
                deployment=deployment, fingerprint=deployment.checklist_fingerprint, kind="checklist", rules=rules
            )


def rename_case_duplicates(apps, schema_editor) -> None:
    """Names that differ only in case were allowed before; they are one name now. The later
    rows get a suffix, so that the new constraints hold and the admin can see and fix them."""
    for model, scope, name in [
        ("Appliance", ["deployment_id"], "hostname"),
        ("Host", ["deployment_id", "role"], "name"),
        ("PeerNetwork", ["deployment_id", "role"], "name"),
    ]:
        seen = set()
        for row in apps.get_model("ports", model).objects.order_by("pk"):
            base, number = getattr(row, name), 1
            while (*[getattr(row, field) for field in scope], getattr(row, name).casefold()) in seen:
                number += 1
                setattr(row, name, f"{base}-duplicate-{number}")
            if number > 1:
                row.save(update_fields=[name])
            seen.add((*[getattr(row, field) for field in scope], getattr(row, name).casefold()))


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
        migrations.RunPython(rename_case_duplicates, migrations.RunPython.noop),
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
