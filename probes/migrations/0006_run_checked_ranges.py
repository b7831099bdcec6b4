# A result that changes nothing writes no row of its item: its run keeps what it probed (id
# ranges) and when, and an item's last check is derived from both (LatestProbe.last_checked).
# Runs recorded before have no ranges: their items' own rows hold their last check already.
# A batch's raw results are kept as written (json on PostgreSQL, not jsonb: WrittenJSONField).

from django.db import migrations, models

import probes.models


class Migration(migrations.Migration):
    dependencies = [
        ("probes", "0005_delivery_next_attempt"),
    ]

    operations = [
        migrations.AddField(
            model_name="proberun",
            name="checked",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="proberun",
            name="probed",
            field=models.JSONField(default=list),
        ),
        migrations.AddIndex(
            model_name="proberun",
            index=models.Index(fields=["deployment", "-checked"], name="proberun_checked"),
        ),
        migrations.AlterField(
            model_name="probebatch",
            name="results",
            field=probes.models.WrittenJSONField(),
        ),
    ]
