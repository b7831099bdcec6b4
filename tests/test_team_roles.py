"""Roles per team: a viewer reads and changes nothing (403, saying which role it needs), an editor
writes, the team's admin gives roles on the team's page, and a team keeps an admin. Then in
Chromium at three widths: an admin types a user's name, gives a role and takes it back."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from ports.choices import ChangedObject, TeamRole
from ports.models import Membership, ObjectChange, Team

from .conftest import create_deployment, make_member, signed_in, token_client
from .test_browser import log_in
from .test_browser import pytestmark as browser_marks
from .test_pages import DESKTOP, PHONE, TABLET, Visits


@pytest.fixture
def team(catalog) -> Team:
    make_member("ada", "Mail team", TeamRole.ADMIN)
    return Team.objects.get(name="Mail team")


def test_a_member_added_without_a_role_is_an_editor(team):
    ed = make_member("ed", "Mail team")
    assert Membership.objects.get(user=ed).role == TeamRole.EDITOR


def test_a_viewer_reads_everything_and_changes_nothing(team, full_document):
    deployment = create_deployment(full_document)
    viewer = token_client(make_member("vic", "Mail team", TeamRole.VIEWER))
    assert viewer.get(f"/api/deployments/{deployment.pk}/").status_code == 200
    assert viewer.get(f"/api/deployments/{deployment.pk}/checklist/").status_code == 200
    item = deployment.checklist.first()
    refused = viewer.patch(f"/api/checklist-items/{item.pk}/", {"status": "requested"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This needs the role editor in team Mail team: you are a viewer."
    assert viewer.patch(f"/api/deployments/{deployment.pk}/", {"description": "x"}, format="json").status_code == 403
    assert viewer.delete(f"/api/deployments/{deployment.pk}/").status_code == 403
    created = viewer.post("/api/deployments/", {**full_document, "name": "Mine"}, format="json")
    assert created.status_code == 403
    item.refresh_from_db()
    deployment.refresh_from_db()
    assert (item.status, deployment.description) == ("todo", full_document.get("description", ""))
    assert not ObjectChange.objects.filter(user__username="vic").exists()


def test_an_editor_writes_and_a_create_defaults_to_the_team_it_may_write_in(team, full_document):
    ed = make_member("ed", "Mail team", TeamRole.EDITOR)
    Membership.objects.create(team=Team.objects.create(name="Watchers"), user=ed, role=TeamRole.VIEWER)
    document = {key: value for key, value in full_document.items() if key != "team"}
    created = token_client(ed).post("/api/deployments/", {**document, "name": "Ed's"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["team"] == "Mail team"  # the one team where ed may write


def test_the_team_admin_gives_roles_on_the_team_page_and_the_log_says_so(team):
    make_member("vic", "Mail team", TeamRole.VIEWER)
    get_user_model().objects.create_user("newcomer", password="x")
    admin = signed_in(get_user_model().objects.get(username="ada"))
    page = admin.get(f"/teams/{team.pk}/")
    assert page.status_code == 200 and b"Give role" in page.content
    admin.post(f"/teams/{team.pk}/", {"username": "newcomer", "role": TeamRole.APPROVER})
    newcomer = Membership.objects.get(team=team, user__username="newcomer")
    assert newcomer.role == TeamRole.APPROVER
    vic = get_user_model().objects.get(username="vic")
    admin.post(f"/teams/{team.pk}/members/{vic.pk}/", {"role": TeamRole.EDITOR})
    assert Membership.objects.get(team=team, user=vic).role == TeamRole.EDITOR
    admin.post(f"/teams/{team.pk}/members/{vic.pk}/", {"remove": "1"})
    assert not Membership.objects.filter(team=team, user=vic).exists()
    logged = ObjectChange.objects.filter(object_type=ChangedObject.MEMBERSHIP).order_by("pk")
    assert [(e.object_repr, e.action, e.diff) for e in logged] == [
        ("newcomer in Mail team", "created", {"role": {"before": None, "after": "approver"}}),
        ("vic in Mail team", "updated", {"role": {"before": "viewer", "after": "editor"}}),
        ("vic in Mail team", "deleted", {"role": {"before": "editor", "after": None}}),
    ]
    assert {e.user_name for e in logged} == {"ada"} and {e.source for e in logged} == {"page"}


def test_an_unknown_user_is_a_form_error_and_adds_nobody(team):
    admin = signed_in(get_user_model().objects.get(username="ada"))
    page = admin.post(f"/teams/{team.pk}/", {"username": "nobody", "role": TeamRole.VIEWER})
    assert page.status_code == 200
    assert b"No user is named &#x27;nobody&#x27;" in page.content
    assert team.memberships.count() == 1


def test_only_the_team_admin_gives_roles_and_the_last_admin_stays(team):
    ed = make_member("ed", "Mail team", TeamRole.EDITOR)
    ada = get_user_model().objects.get(username="ada")
    as_editor = signed_in(ed)
    assert b"Give role" not in as_editor.get(f"/teams/{team.pk}/").content  # read, not changed
    assert as_editor.post(f"/teams/{team.pk}/members/{ed.pk}/", {"role": TeamRole.ADMIN}).status_code == 403
    assert as_editor.post(f"/teams/{team.pk}/", {"username": "ed", "role": TeamRole.ADMIN}).status_code == 403
    assert Membership.objects.get(user=ed).role == TeamRole.EDITOR
    as_admin = signed_in(ada)
    answer = as_admin.post(f"/teams/{team.pk}/members/{ada.pk}/", {"role": TeamRole.VIEWER}, follow=True)
    assert b"ada is the last admin of team Mail team" in answer.content
    as_admin.post(f"/teams/{team.pk}/members/{ada.pk}/", {"remove": "1"})
    assert Membership.objects.get(user=ada).role == TeamRole.ADMIN
    outsider = signed_in(make_member("mallory", "Other team"))
    assert outsider.get(f"/teams/{team.pk}/").status_code == 404


def test_a_viewer_gets_no_deployment_form_and_no_channel(team, full_document):
    deployment = create_deployment(full_document)
    vic = make_member("vic", "Mail team", TeamRole.VIEWER)
    viewer = signed_in(vic)
    page = viewer.get(f"/deployments/{deployment.pk}/").content.decode()
    assert "You are a viewer in team Mail team" in page
    assert '<fieldset class="plain" disabled>' in page and f'href="/deployments/{deployment.pk}/edit/"' not in page
    assert (
        '<fieldset class="plain" disabled>'
        not in signed_in(User.objects.get(username="ada")).get(f"/deployments/{deployment.pk}/").content.decode()
    )
    assert token_client(vic).get("/api/me/").json() == {
        "username": "vic",
        "teams": ["Mail team"],
        "roles": {"Mail team": "viewer"},
    }
    assert viewer.get(f"/deployments/{deployment.pk}/edit/").status_code == 403
    assert viewer.get("/deployments/new/").status_code == 403
    assert viewer.post(f"/deployments/{deployment.pk}/delete/").status_code == 403
    added = viewer.post("/alerts/", {"team": team.pk, "name": "Ops", "kind": "email", "target": "ops@example.test"})
    assert added.status_code == 403
    assert Team.objects.get(pk=team.pk).alert_channels.count() == 0


@pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])
def test_an_admin_gives_a_role_in_the_browser(lab, browser, viewport):
    _, base = lab
    Membership.objects.filter(user__username="alice").update(role=TeamRole.ADMIN)
    get_user_model().objects.create_user("newcomer", password="not-used-in-tests")
    team = Team.objects.get(name="Mail team")
    visits = Visits(browser, base, viewport)
    page = visits.page
    log_in(page, base, "alice")
    page.get_by_role("link", name="Teams").click()
    page.get_by_role("link", name="Mail team").click()
    visits.check("team")
    adding = page.get_by_role("form", name="Add a member")
    adding.get_by_label("User name").fill("newcomer")
    adding.locator("select[name=role]").select_option(label="Approver")
    adding.get_by_role("button", name="Add member").click()
    page.get_by_text("newcomer added as approver.").wait_for()
    assert Membership.objects.get(team=team, user__username="newcomer").role == TeamRole.APPROVER
    page.get_by_label("Role of newcomer").select_option(label="Viewer")
    page.get_by_role("row", name="newcomer").get_by_role("button", name="Give role").click()
    page.get_by_text("newcomer is now viewer.").wait_for()
    assert Membership.objects.get(team=team, user__username="newcomer").role == TeamRole.VIEWER
    visits.check("team-after")
    page.close()
    # The viewer's checklist: read, exported, and no control that would change it.
    deployment, _ = lab
    viewing = Visits(browser, base, viewport)
    log_in(viewing.page, base, "newcomer")
    viewing.visit(f"/deployments/{deployment.pk}/", "checklist-viewer")
    assert viewing.page.get_by_text("You are a viewer in team Mail team").is_visible()
    assert viewing.page.locator("#rows select").first.is_disabled()
    assert viewing.page.get_by_role("button", name="Probe all").is_disabled()
    assert viewing.page.get_by_role("button", name="Export / change request").is_enabled()
    viewing.page.close()


for _mark in browser_marks:
    test_an_admin_gives_a_role_in_the_browser = _mark(test_an_admin_gives_a_role_in_the_browser)
