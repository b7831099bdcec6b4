"""Teams, and what decides which of their objects a user sees or changes (TeamScopedQuerySet)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ..choices import (
    ProbeSchedule,
    TeamRole,
)
from ..validators import (
    TEAM_NAME_LENGTH,
    validate_cron,
    validate_name,
)


class TeamScopedQuerySet(models.QuerySet):
    """The one place that decides what a user may see, and change: the objects of the teams they
    belong to (with `role`, of those where their role is at least that: TeamRole)."""

    team_field = "team"  # the lookup from the model to its Team ("" for the teams themselves)

    def for_user(self, user: object, role: str = TeamRole.VIEWER) -> TeamScopedQuerySet:
        to_team = f"{self.team_field}__" if self.team_field else ""
        member = {f"{to_team}memberships__user": user}
        if role != TeamRole.VIEWER:  # in the same filter(): the same membership's role
            member[f"{to_team}memberships__role__in"] = TeamRole.at_least(role)
        return self.filter(**member)

    def with_role(self) -> TeamScopedQuerySet:
        """After for_user(user): each object with the user's role in its team as `role_held`, read
        through the membership that for_user() joined (Django reuses its join), not a query more."""
        to_team = f"{self.team_field}__" if self.team_field else ""
        return self.annotate(role_held=models.F(f"{to_team}memberships__role"))


class TeamQuerySet(TeamScopedQuerySet):
    team_field = ""


class DeploymentPartQuerySet(TeamScopedQuerySet):
    """Objects that belong to a deployment (items, runs, jobs, pins): its team's."""

    team_field = "deployment__team"


class Team(models.Model):
    name = models.CharField(max_length=TEAM_NAME_LENGTH, unique=True, validators=[validate_name])
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams", blank=True)
    # The probe schedule of the team's deployments that do not set their own.
    probe_schedule = models.CharField(max_length=10, choices=ProbeSchedule.choices, default=ProbeSchedule.OFF)
    probe_cron = models.CharField(max_length=100, blank=True, validators=[validate_cron])

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
