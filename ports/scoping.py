"""Who sees what: every object belongs to a team, and only the team's members reach it.

The rule itself is one queryset method (TeamScopedQuerySet.for_user); this module gives
the views their one way to apply it. Another team's objects answer 404, as if absent.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property
from rest_framework import serializers

from .models import Deployment, Team


def team_deployment(user: object, pk: object) -> Deployment:
    """The deployment `pk` if one of the user's teams owns it; 404 otherwise."""
    deployments = Deployment.objects.for_user(user).select_related("team", "catalog_version__product")
    return get_object_or_404(deployments, pk=pk)


class TeamScoped:
    """A view mixin: `get_queryset()` holds only the user's teams' objects of `queryset`, and
    `deployment` is the deployment of a route under /deployments/{pk}/."""

    queryset: QuerySet

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.queryset.none()
        return self.queryset.for_user(self.request.user)

    @cached_property
    def deployment(self) -> Deployment:
        return team_deployment(self.request.user, self.kwargs["pk"])


def owning_team(serializer: serializers.Serializer, attrs: dict) -> Team:
    """The team an object is written for: the one named, the instance's, or the user's only
    team (the `team` field's queryset holds the user's teams); a 400 naming `team` otherwise."""
    team = attrs.get("team") or getattr(serializer.instance, "team", None)
    if team is None:
        teams = list(serializer.fields["team"].queryset[:2])
        if len(teams) != 1:
            raise serializers.ValidationError({"team": "Name the team: you belong to none or to several."})
        team = teams[0]
    return team
