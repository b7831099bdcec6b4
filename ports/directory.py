"""Team memberships that follow the company directory (settings.DIRECTORY_GROUP_TEAMS): at each
sign-in through LDAP or OpenID Connect, the user's groups decide their memberships in the teams
the mapping names. The sign-in backends (portal.directory) read the groups; this is what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from .acting import Actor, acting
from .choices import ChangeSource, TeamRole
from .models import Membership, Team


def directory_teams() -> set[str]:
    """The names of the teams whose members the directory decides."""
    return {team for teams in settings.DIRECTORY_GROUP_TEAMS.values() for team in teams}


def granted_roles(groups: Iterable[str]) -> dict[str, str]:
    """Team name -> the highest role that any of `groups` gives in it."""
    roles: dict[str, str] = {}
    for group in groups:
        for team, role in settings.DIRECTORY_GROUP_TEAMS.get(group.casefold(), {}).items():
            if team not in roles or TeamRole.values.index(role) > TeamRole.values.index(roles[team]):
                roles[team] = role
    return roles


def follow_groups(user: object, groups: Iterable[str]) -> None:
    """Make the user's memberships in the directory's teams what `groups` give: a team a group
    gives is created if missing, a role is set, and a membership no group gives any more is
    removed, even a team's last admin's (the directory decides; the change log says so)."""
    roles = granted_roles(groups)
    with acting(Actor(ChangeSource.DIRECTORY, user=user)), transaction.atomic():
        for name, role in roles.items():
            team, _ = Team.objects.get_or_create(name=name)
            found, created = Membership.objects.select_for_update().get_or_create(
                team=team, user=user, defaults={"role": role}
            )
            if not created and found.role != role:
                found.role = role
                found.save(update_fields=["role"])
        lost = Membership.objects.filter(user=user, team__name__in=directory_teams() - roles.keys())
        for membership in lost.select_related("team", "user"):
            membership.delete()
