from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import CommandError
from django.db.models.signals import pre_save

from .choices import TeamRole
from .validators import TEAM_NAME_LENGTH, validate_name

# DRF's drf_create_token (its app stays installed for its migrations, which ports' carry-over of
# its tokens follows) would make a plain-text key that never expires and that the API no longer
# takes: it stops, saying what to run instead.
PLAIN_TOKENS_GONE = (
    "DRF's tokens (drf_create_token) are no longer made: API tokens are named, kept hashed and expire. "
    "Run `manage.py create_token <username> --name NAME [--days N]`, or make one on the API tokens page (/tokens/)."
)


def refuse_plain_token(sender: type, **kwargs: object) -> None:
    raise CommandError(PLAIN_TOKENS_GONE)


def check_group_teams(mapping: dict[str, dict[str, str]]) -> None:
    """Stop the portal if DIRECTORY_GROUP_TEAMS names a team that cannot be one, or gives a role
    that is none of TeamRole's: either would fail every sign-in of that group's members, or a typo
    would take them all out of the team at their next one."""
    for group, teams in mapping.items():
        for team, role in teams.items():
            if not team.strip() or len(team) > TEAM_NAME_LENGTH or team != team.strip():
                raise ImproperlyConfigured(
                    f"DIRECTORY_GROUP_TEAMS: group {group!r} names the team {team!r}: a team's name is 1 to "
                    f"{TEAM_NAME_LENGTH} characters, without spaces around it."
                )
            try:
                validate_name(team)
            except ValidationError as invalid:
                raise ImproperlyConfigured(
                    f"DIRECTORY_GROUP_TEAMS: group {group!r} names the team {team!r}: {' '.join(invalid.messages)}"
                ) from None
            if role not in TeamRole.values:
                raise ImproperlyConfigured(
                    f"DIRECTORY_GROUP_TEAMS: group {group!r} gives team {team!r} the role {role!r}, "
                    f"which is none of {', '.join(TeamRole.values)}."
                )


class PortsConfig(AppConfig):
    name = "ports"
    verbose_name = "Port requirements"

    def ready(self) -> None:
        check_group_teams(settings.DIRECTORY_GROUP_TEAMS)
        from rest_framework.authtoken.models import Token

        pre_save.connect(refuse_plain_token, sender=Token, dispatch_uid="ports.refuse_plain_token")
