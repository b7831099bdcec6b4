"""Teams and roles from the company directory's groups, for LDAP and OpenID Connect sign-ins alike.

DIRECTORY_GROUP_TEAMS is a JSON object: a group (an LDAP group's DN, or a value of the OIDC groups
claim) names the teams it makes its members members of, each with a role (ports.choices.TeamRole;
ports checks the names when the portal starts, as settings must not load the ORM that the choices
are made of: a probe site's worker reads these settings too):

    {"cn=mail-admins,ou=groups,dc=corp,dc=example": {"Mail team": "admin"},
     "mail-operators": {"Mail team": "editor", "DNS team": "viewer"}}

The teams it names are the directory's: a user signing in through it is a member of exactly those
of them that their groups give (with the highest role any of their groups gives), and no longer of
the others. Teams it does not name keep the members given on the Teams pages.
"""

import json

from django.core.exceptions import ImproperlyConfigured

from .env import env_str


def parse_group_teams(name: str, text: str) -> dict[str, dict[str, str]]:
    """The mapping of `text` with its groups casefolded (a DN's case does not matter), or
    ImproperlyConfigured naming what is wrong."""
    if not text.strip():
        return {}
    try:
        mapping = json.loads(text)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is not JSON: {error}") from None
    if not isinstance(mapping, dict):
        raise ImproperlyConfigured(f'{name} must be a JSON object: {{"group": {{"team": "role"}}}}.')
    groups: dict[str, dict[str, str]] = {}
    for group, teams in mapping.items():
        if not isinstance(teams, dict) or not teams:
            raise ImproperlyConfigured(f'{name}: group {group!r} must name its teams and roles: {{"team": "role"}}.')
        if not all(isinstance(role, str) for role in teams.values()):
            raise ImproperlyConfigured(f"{name}: group {group!r} must give each team a role by name.")
        if group.casefold() in groups:
            raise ImproperlyConfigured(f"{name}: group {group!r} is named twice (a group's case does not matter).")
        groups[group.casefold()] = dict(teams)
    return groups


DIRECTORY_GROUP_TEAMS = parse_group_teams("DIRECTORY_GROUP_TEAMS", env_str("DIRECTORY_GROUP_TEAMS"))
