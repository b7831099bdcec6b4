"""Who sees what, and who changes it: every object belongs to a team, and only the team's members
reach it; what a member may change is their role's (TeamRole).

The rule itself is one queryset method (TeamScopedQuerySet.for_user); this module gives
the views their one way to apply it. Another team's objects answer 404, as if absent; a change
that the member's role does not allow answers 403, saying which role it needs.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

from .choices import TeamRole
from .models import Deployment, Membership, Team


def team_deployment(user: object, pk: object, role: str = TeamRole.VIEWER) -> Deployment:
    """The deployment `pk` if one of the user's teams owns it (404 otherwise), and the user's
    role in that team allows `role`'s work (403 otherwise); with that role as `role_held`
    (TeamScopedQuerySet.with_role), read with it."""
    deployments = Deployment.objects.for_user(user).with_role().select_related("team", "catalog_version__product")
    deployment = get_object_or_404(deployments, pk=pk)
    require_role(user, deployment.team, role, held=deployment.role_held)
    return deployment


def require_role(user: object, team: Team, role: str, held: str | None = None) -> None:
    """PermissionDenied (403), saying why, unless the user's role in `team` (`held`, if the caller
    read it) allows `role`'s work."""
    if role == TeamRole.VIEWER:
        return  # every member reads: the team's objects were found through the membership
    held = held or role_of(user, team)
    if held not in TeamRole.at_least(role):
        raise PermissionDenied(
            f"This needs the role {TeamRole(role).label.lower()} in team {team}: {TeamRole.held(held)}."
        )


def role_of(user: object, team: Team) -> str | None:
    """The user's role in `team` (a TeamRole), None for a user who is not its member."""
    return Membership.role_of(user, team.pk)


class TeamScoped:
    """A view mixin: `get_queryset()` holds only the user's teams' objects of `queryset`, and
    `deployment` is the deployment of a route under /deployments/{pk}/. A request that writes
    (any method but GET, HEAD and OPTIONS) needs `write_role` in the object's team."""

    queryset: QuerySet
    write_role: str = TeamRole.EDITOR

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.queryset.none()
        return self.queryset.for_user(self.request.user)

    @property
    def needed_role(self) -> str:
        return TeamRole.VIEWER if self.request.method in SAFE_METHODS else self.write_role

    @cached_property
    def deployment(self) -> Deployment:
        return team_deployment(self.request.user, self.kwargs["pk"], self.needed_role)

    def get_object(self) -> Model:
        found = super().get_object()
        require_role(self.request.user, team_of(found), self.needed_role)
        return found


def team_of(found: Model) -> Team:
    """The team an object belongs to, along its queryset's `team_field` (team, deployment__team)."""
    for name in type(found).objects.all().team_field.split("__"):
        found = getattr(found, name)
    return found


def owning_team(serializer: serializers.Serializer, attrs: dict) -> Team:
    """The team an object is written for: the one named, the instance's, or the only team where
    the user may write (the `team` field's queryset holds the user's teams); a 400 naming `team`
    if that is none or several, and a 403 if the user's role there does not write."""
    team = attrs.get("team") or getattr(serializer.instance, "team", None)
    request = serializer.context.get("request")
    user = serializer.context.get("user") or (request.user if request is not None else None)
    if team is None:
        teams = serializer.fields["team"].queryset
        if user is not None:
            teams = teams.for_user(user, TeamRole.EDITOR)
        teams = list(teams[:2])
        if not teams and user is not None and Team.objects.for_user(user).exists():
            raise PermissionDenied("This needs the role editor in one of your teams: you are a viewer in each.")
        if len(teams) != 1:
            raise serializers.ValidationError({"team": "Name the team: you may write in none or in several."})
        team = teams[0]
    if user is not None:  # None: the admin site or a command, which may write any team
        require_role(user, team, TeamRole.EDITOR)
    return team
