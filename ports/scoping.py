"""Who sees what: every object belongs to a team, and only the team's members reach it.

The rule itself is one queryset method (TeamScopedQuerySet.for_user); this module gives
the views their one way to apply it. Another team's objects answer 404, as if absent.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property

from .models import Deployment


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
