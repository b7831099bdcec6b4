"""The directory's groups as teams and roles (DIRECTORY_GROUP_TEAMS, ports.directory), whichever
sign-in (LDAP, OpenID Connect) read them: tests/test_ldap.py and tests/test_oidc.py sign in for real."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.client import sign_in_name
from portal.directory.oidc import Refused, groups_of
from portal.directory.unavailable import not_counted
from portal.settings import parse_group_teams
from ports.apps import check_group_teams
from ports.choices import ChangeSource, TeamRole
from ports.directory import follow_groups
from ports.models import Membership, ObjectChange, Team
from tests.conftest import make_member

ROOT = Path(__file__).resolve().parent.parent
ADMINS = "cn=Mail-Admins,ou=groups,dc=corp,dc=example"
GROUPS = {
    ADMINS.casefold(): {"Mail team": TeamRole.ADMIN},
    "mail-operators": {"Mail team": TeamRole.EDITOR, "DNS team": TeamRole.VIEWER},
}


@pytest.fixture
def mapped(settings) -> None:
    settings.DIRECTORY_GROUP_TEAMS = GROUPS


def roles(user) -> dict[str, str]:
    return dict(Membership.objects.filter(user=user).values_list("team__name", "role"))


def test_a_group_makes_its_teams_with_the_highest_role_any_group_gives(db, mapped):
    user = make_member("carol", "Lab team", TeamRole.VIEWER)  # a team the directory does not name
    follow_groups(user, ["mail-operators", ADMINS.upper(), "cn=unmapped,dc=corp,dc=example"])
    assert roles(user) == {"Mail team": "admin", "DNS team": "viewer", "Lab team": "viewer"}
    assert Team.objects.filter(name="DNS team").exists()


def test_a_group_left_takes_its_teams_away_at_the_next_sign_in_and_leaves_other_teams(db, mapped):
    user = make_member("carol", "Lab team", TeamRole.VIEWER)
    follow_groups(user, ["mail-operators"])
    follow_groups(user, [])
    assert roles(user) == {"Lab team": "viewer"}


def test_the_directory_decides_even_for_a_teams_last_admin(db, mapped):
    user = make_member("carol", "Mail team", TeamRole.ADMIN)
    follow_groups(user, [])
    assert roles(user) == {}


def test_each_change_is_in_the_change_log_as_the_directorys_and_a_sign_in_that_changes_nothing_writes_none(db, mapped):
    user = make_member("carol", "Lab team")
    follow_groups(user, ["mail-operators"])
    follow_groups(user, [ADMINS])
    follow_groups(user, [ADMINS])
    entries = ObjectChange.objects.filter(source=ChangeSource.DIRECTORY).order_by("pk")
    assert [(entry.action, entry.object_repr, entry.user) for entry in entries] == [
        ("created", "carol in Mail team", user),
        ("created", "carol in DNS team", user),
        ("updated", "carol in Mail team", user),
        ("deleted", "carol in DNS team", user),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "is not JSON"),
        ('["Mail team"]', "must be a JSON object"),
        ('{"g": "Mail team"}', "must name its teams and roles"),
        ('{"g": {"Mail team": 3}}', "must give each team a role by name"),
        ('{"g": {"Mail team": "owner"}}', "the role 'owner', which is none of viewer, editor, approver, admin"),
        ('{"g": {"Mail team": "admin"}, "G": {"DNS team": "viewer"}}', "group 'G' is named twice"),
        ('{"g": {"%s": "admin"}}' % ("x" * 101), "a team's name is 1 to 100 characters"),
        ('{"g": {" Mail team": "admin"}}', "without spaces around it"),
        ('{"g": {"Mail\\tteam": "admin"}}', "may not contain control characters"),
    ],
)
def test_a_mapping_that_is_wrong_stops_the_portal_saying_what(text, says):
    with pytest.raises(ImproperlyConfigured, match=says):
        check_group_teams(parse_group_teams("DIRECTORY_GROUP_TEAMS", text))


def test_the_portal_does_not_start_with_a_role_it_does_not_know():
    started = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=os.environ | {"DIRECTORY_GROUP_TEAMS": '{"mail-admins": {"Mail team": "owner"}}'},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "gives team 'Mail team' the role 'owner', which is none of viewer, editor, approver, admin" in started.stderr


def test_no_mapping_is_no_directory_teams():
    assert parse_group_teams("DIRECTORY_GROUP_TEAMS", "") == {}


def test_a_provider_that_sends_no_groups_refuses_the_sign_in_rather_than_empty_the_teams(settings, mapped):
    """Entra ID sends `_claim_names` instead of the groups past 200 of them; a client not set up for
    groups sends none: either would otherwise take the user out of every directory team."""
    settings.OIDC_GROUPS_CLAIM = "groups"
    assert groups_of({"groups": ["mail-operators", 3]}) == ["mail-operators"]
    assert groups_of({"groups": "mail-operators"}) == ["mail-operators"]
    for claims in ({}, {"_claim_names": {"groups": "src1"}}, {"groups": {"a": 1}}):
        with pytest.raises(Refused, match="the provider did not send your groups"):
            groups_of(claims)
    settings.DIRECTORY_GROUP_TEAMS = {}
    assert groups_of({}) == []  # without a mapping, groups decide nothing


def test_the_lockout_counts_names_as_the_directory_compares_them_and_not_oidc_callbacks(rf):
    request = rf.post("/accounts/login/", {"username": " Heidi "})
    assert sign_in_name(request) == sign_in_name(request, {"username": "HEIDI"}) == "heidi"
    assert not_counted(request, {"username": "heidi"}) is False
    assert not_counted(rf.get("/oidc/callback/"), {"nonce": "n", "code_verifier": "v"}) is True
