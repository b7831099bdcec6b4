"""Roles per team: the members' table (Team.members, until now Django's own) becomes Membership,
with a role; every member before roles could do all that an editor can, and stays an editor."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("ports", "0010_change_log"),
    ]

    operations = [
        # The table Django made for the many-to-many is taken over as it is (same columns, same
        # unique pair), then renamed and given its role.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "team",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="ports.team"
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={"db_table": "ports_team_members", "unique_together": {("team", "user")}},
                ),
                migrations.AlterField(
                    model_name="team",
                    name="members",
                    field=models.ManyToManyField(
                        blank=True, related_name="teams", through="ports.Membership", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
        ),
        migrations.AlterModelTable(name="membership", table=None),
        migrations.AlterModelOptions(name="membership", options={"ordering": ["team", "user"]}),
        migrations.AddField(
            model_name="membership",
            name="role",
            field=models.CharField(
                choices=[("viewer", "Viewer"), ("editor", "Editor"), ("approver", "Approver"), ("admin", "Team admin")],
                default="editor",
                max_length=10,
            ),
        ),
    ]
