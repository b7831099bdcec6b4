"""API tokens that expire: a user makes one (the page, the API signed in, or `create_token`) and
sees its key once; it is kept hashed, named, with its expiry and last use, listed for its user and
for the admins of their teams, who may revoke it. An expired, revoked or deactivated user's token
is refused at once, saying why; DRF's old keys were carried over and keep working until they expire.
Then in Chromium at phone, tablet and desktop widths: a token typed, made, used and revoked."""

from __future__ import annotations

import datetime
import importlib
import io
import re

import pytest
import requests
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ports.choices import TeamRole
from ports.models import LAST_USED_EVERY, ApiToken, Membership, Team

from .conftest import api_key, make_member, signed_in
from .test_browser import log_in
from .test_browser import pytestmark as browser_marks
from .test_hardening import manage
from .test_pages import DESKTOP, PHONE, TABLET, Visits

carried = importlib.import_module("ports.migrations.0015_carry_over_drf_tokens")


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def api_session(user: object) -> APIClient:
    """The API through a browser's session (the API's own login): what makes tokens."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def alice(db):
    return make_member("alice", "Mail team")


# --- Made, shown once, used ---------------------------------------------------------------


def test_a_token_made_through_the_api_shows_its_key_once_and_authenticates(alice, settings):
    before = timezone.now()
    made = api_session(alice).post("/api/tokens/", {"name": "Ansible", "days": 30}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    assert made.headers["Outcome"] == body["outcome"] == "created"
    assert (body["name"], body["user"], body["expired"], body["last_used"]) == ("Ansible", "alice", False, None)
    assert body["key"].startswith(body["token_key"]) and len(body["key"]) == 64
    expiry = datetime.datetime.fromisoformat(body["expiry"])
    assert before + datetime.timedelta(days=30) <= expiry <= timezone.now() + datetime.timedelta(days=30)

    assert with_key(body["key"]).get("/api/me/").json()["username"] == "alice"
    # Kept as its hash only; listed without the key, or the hash, ever again.
    token = ApiToken.objects.get()
    assert token.digest != body["key"] and body["key"] not in str(ApiToken.objects.values().get())
    listed = with_key(body["key"]).get("/api/tokens/").json()["results"]
    assert [entry["name"] for entry in listed] == ["Ansible"]
    assert "key" not in listed[0] and body["key"] not in str(listed) and token.digest not in str(listed)
    assert listed[0]["last_used"] is not None  # the request that listed it used it

    # Without `days`: API_TOKEN_DAYS.
    default = api_session(alice).post("/api/tokens/", {"name": "Default"}, format="json").json()
    days = (datetime.datetime.fromisoformat(default["expiry"]) - timezone.now()).days
    assert days == settings.API_TOKEN_DAYS - 1  # a few microseconds short of the whole days


def test_a_token_cannot_make_tokens(alice):
    """A key that leaks would otherwise make keys that outlive its expiry and its revocation."""
    refused = with_key(api_key(alice)).post("/api/tokens/", {"name": "Child", "days": 365}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("A token cannot make tokens: sign in and make one")
    assert ApiToken.objects.count() == 1


def test_a_lifetime_over_the_ceiling_is_a_400_naming_days(alice, settings):
    settings.API_TOKEN_MAX_DAYS = 30
    session = api_session(alice)
    over = session.post("/api/tokens/", {"name": "Long", "days": 31}, format="json")
    assert over.status_code == 400
    assert over.json() == {"days": ["A token lives at most 30 days (API_TOKEN_MAX_DAYS): ask for fewer."]}
    assert session.post("/api/tokens/", {"name": "None", "days": 0}, format="json").json() == {
        "days": ["A token lives at least 1 day."]
    }
    assert session.post("/api/tokens/", {"days": 3}, format="json").json() == {"name": ["This field is required."]}
    assert set(session.post("/api/tokens/", {"name": "Mine", "owner": "bob"}, format="json").json()) == {"owner"}
    assert not ApiToken.objects.exists()
    assert session.post("/api/tokens/", {"name": "Month", "days": 30}, format="json").status_code == 201


# --- Refused, saying why -------------------------------------------------------------------


def test_an_expired_token_is_refused_saying_when_and_stays_listed_as_expired(alice):
    key = api_key(alice)
    expiry = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC)
    ApiToken.objects.update(expiry=expiry)
    refused = with_key(key).get("/api/me/")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Token"
    detail = refused.json()["detail"]
    assert f"This token ({key[:15]}…, 'Test client') expired at 2026-01-02 03:04 UTC: make a new one" in detail
    (listed,) = api_session(alice).get("/api/tokens/").json()["results"]
    assert listed["expired"] is True and listed["token_key"] == key[:15]


def test_a_revoked_token_is_refused_at_once_and_another_users_is_not_found(alice):
    key, other = api_key(alice), api_key(make_member("bob", "Other team"))
    assert with_key(key).delete(f"/api/tokens/{other[:15]}/").status_code == 404  # bob's: not alice's to see
    assert with_key(key).delete(f"/api/tokens/{key[:15]}/").status_code == 204  # a script revokes itself
    refused = with_key(key).get("/api/me/")
    assert refused.status_code == 401 and refused.json()["detail"].startswith("Invalid token")
    assert with_key(other).get("/api/me/").status_code == 200


def test_a_deactivated_users_tokens_are_refused_at_once(alice):
    key = api_key(alice)
    alice.is_active = False
    alice.save()
    refused = with_key(key).get("/api/me/")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "This token's user is deactivated: their tokens no longer work."


def test_a_member_taken_out_of_a_team_no_longer_reaches_its_objects_with_their_token(deployment, user):
    make_member("ada", "Mail team", TeamRole.ADMIN)
    token = with_key(api_key(user))
    assert token.get(f"/api/deployments/{deployment.pk}/").status_code == 200
    Membership.objects.get(user=user, team__name="Mail team").leave()
    assert token.get(f"/api/deployments/{deployment.pk}/").status_code == 404
    assert token.get("/api/deployments/").json()["count"] == 0
    assert token.get("/api/me/").json()["teams"] == []  # the token itself still works: it is her


# --- Last use, without a write per request ---------------------------------------------------


def token_queries(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if "ports_apitoken" in query["sql"]]


def test_last_use_is_written_at_most_once_a_minute_and_a_request_reads_one_row(alice):
    key = api_key(alice)
    client = with_key(key)
    with CaptureQueriesContext(connection) as first:
        assert client.get("/api/me/").status_code == 200
    reads, writes = token_queries(first), [q for q in token_queries(first) if q.startswith("UPDATE")]
    assert len(reads) == 2 and len(writes) == 1  # the token with its user; its first use
    used = ApiToken.objects.get().last_used
    assert used is not None and timezone.now() - used < datetime.timedelta(seconds=5)

    with CaptureQueriesContext(connection) as again:
        for _ in range(5):
            client.get("/api/me/")
    assert len(token_queries(again)) == 5 and not any(q.startswith("UPDATE") for q in token_queries(again))
    assert ApiToken.objects.get().last_used == used

    ApiToken.objects.update(last_used=used - LAST_USED_EVERY)  # a minute later
    with CaptureQueriesContext(connection) as later:
        client.get("/api/me/")
    assert sum(q.startswith("UPDATE") for q in token_queries(later)) == 1
    assert ApiToken.objects.get().last_used > used


def test_last_use_is_written_once_when_requests_race(db):
    """The UPDATE is conditional: a second request that read the same stale row writes nothing."""
    user = make_member("carol", "Mail team")
    ApiToken.issue(user, "Race")
    first, second = ApiToken.objects.get(), ApiToken.objects.get()
    first.record_use()
    with CaptureQueriesContext(connection) as raced:
        second.record_use()
    assert len(raced) == 1  # it tried, and matched no row
    assert ApiToken.objects.get().last_used == first.last_used


# --- The team's admin ------------------------------------------------------------------------


@pytest.fixture
def team(alice) -> Team:
    make_member("ada", "Mail team", TeamRole.ADMIN)
    make_member("vic", "Mail team", TeamRole.VIEWER)
    make_member("otto", "Other team", TeamRole.ADMIN)
    return Team.objects.get(name="Mail team")


def test_a_team_admin_sees_and_revokes_the_members_tokens(team, alice):
    key = ApiToken.issue(alice, "Terraform", 10)[1]
    ApiToken.issue(make_member("olga", "Other team"), "Not a member")
    admin = with_key(api_key(team.memberships.get(role=TeamRole.ADMIN).user, "Admin's"))
    listed = admin.get(f"/api/teams/{team.pk}/tokens/").json()["results"]
    assert [(entry["user"], entry["name"]) for entry in listed] == [("ada", "Admin's"), ("alice", "Terraform")]
    assert key not in str(listed)

    assert admin.delete(f"/api/teams/{team.pk}/tokens/{key[:15]}/").status_code == 204
    assert with_key(key).get("/api/me/").status_code == 401
    other = ApiToken.objects.get(name="Not a member").token_key
    assert admin.delete(f"/api/teams/{team.pk}/tokens/{other}/").status_code == 404  # not of this team


def test_a_team_admin_cannot_reach_the_tokens_of_a_member_of_teams_they_do_not_administer(team, alice):
    """Anyone can be added to a team, and a token reaches every team of its user: adding bob of
    another team must not give this team's admin his tokens."""
    bob = make_member("bob", "Other team")
    bobs = ApiToken.issue(bob, "Bob's deploys")[1]
    ada = team.memberships.get(role=TeamRole.ADMIN).user
    Membership.objects.create(team=team, user=bob, role=TeamRole.VIEWER)
    admin = with_key(api_key(ada, "Admin's"))
    listed = admin.get(f"/api/teams/{team.pk}/tokens/").json()["results"]
    assert "Bob's deploys" not in str(listed)
    assert admin.delete(f"/api/teams/{team.pk}/tokens/{bobs[:15]}/").status_code == 404
    page = signed_in(ada)
    assert b"Bob&#x27;s deploys" not in page.get(f"/teams/{team.pk}/").content
    assert page.post(f"/teams/{team.pk}/tokens/{bobs[:15]}/revoke/").status_code == 404
    assert with_key(bobs).get("/api/me/").status_code == 200
    # Once ada administers every team of bob's, his tokens are hers to see and revoke.
    Membership.objects.create(team=Team.objects.get(name="Other team"), user=ada, role=TeamRole.ADMIN)
    assert "Bob's deploys" in str(admin.get(f"/api/teams/{team.pk}/tokens/").json()["results"])
    assert admin.delete(f"/api/teams/{team.pk}/tokens/{bobs[:15]}/").status_code == 204
    assert with_key(bobs).get("/api/me/").status_code == 401


def test_two_tokens_with_the_same_token_key_are_revoked_together_not_a_server_error(alice):
    first, second = ApiToken.issue(alice, "One")[1], ApiToken.issue(alice, "Two")[1]
    ApiToken.objects.filter(name="Two").update(token_key=first[:15])  # a 60-bit collision, forced
    session = api_session(alice)
    assert session.delete(f"/api/tokens/{first[:15]}/").status_code == 204
    assert with_key(first).get("/api/me/").status_code == 401 and with_key(second).get("/api/me/").status_code == 401
    assert session.delete(f"/api/tokens/{first[:15]}/").status_code == 404
    assert session.delete("/api/tokens/a%00b/").status_code == 404


def test_only_the_team_admin_sees_the_members_tokens_and_other_teams_see_nothing(team, alice):
    key = api_key(alice)
    viewer = with_key(api_key(team.members.get(username="vic")))
    refused = viewer.get(f"/api/teams/{team.pk}/tokens/")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This needs the role team admin in team Mail team: you are a viewer."
    assert viewer.delete(f"/api/teams/{team.pk}/tokens/{key[:15]}/").status_code == 403
    outsider = with_key(api_key(Team.objects.get(name="Other team").members.get()))
    assert outsider.get(f"/api/teams/{team.pk}/tokens/").status_code == 404
    assert outsider.delete(f"/api/teams/{team.pk}/tokens/{key[:15]}/").status_code == 404
    assert with_key(key).get("/api/me/").status_code == 200


def test_the_team_page_shows_its_admin_the_members_tokens_to_revoke(team, alice):
    key = ApiToken.issue(alice, "Nightly export")[1]
    page = signed_in(team.members.get(username="ada")).get(f"/teams/{team.pk}/")
    assert b"API tokens of the members" in page.content and b"Nightly export" in page.content
    assert key.encode() not in page.content
    viewer_page = signed_in(team.members.get(username="vic")).get(f"/teams/{team.pk}/")
    assert b"Nightly export" not in viewer_page.content
    refused = signed_in(team.members.get(username="vic")).post(f"/teams/{team.pk}/tokens/{key[:15]}/revoke/")
    assert refused.status_code == 403
    revoked = signed_in(team.members.get(username="ada")).post(f"/teams/{team.pk}/tokens/{key[:15]}/revoke/")
    assert revoked.status_code == 302 and not ApiToken.objects.filter(user=alice).exists()


# --- The page --------------------------------------------------------------------------------


def test_the_page_shows_a_new_key_once_and_revokes(alice):
    browser = signed_in(alice)
    made = browser.post("/tokens/", {"name": "CI", "days": 7})
    assert made.status_code == 302  # then a reload makes no second token
    cookie = made.cookies["new_token"]
    assert cookie["path"] == "/tokens/" and cookie["httponly"] and cookie["samesite"] == "Strict"
    shown = browser.get(made.url)
    assert "no-store" in shown.headers["Cache-Control"]
    key = re.search(rb'<code class="key" id="new-key">(\w+)</code>', shown.content)[1].decode()
    assert b"Copy it now: it is not shown again." in shown.content
    assert shown.cookies["new_token"]["max-age"] == 0  # shown once, then gone
    assert with_key(key).get("/api/me/").status_code == 200
    again = browser.get("/tokens/")
    assert key.encode() not in again.content and key[:15].encode() in again.content and b"CI" in again.content
    assert ApiToken.objects.count() == 1

    # Another user's browser given this cookie shows nothing: it is signed for alice.
    bob = signed_in(make_member("bob", "Mail team"))
    bob.cookies["new_token"] = cookie.value
    assert key.encode() not in bob.get("/tokens/").content
    refused = browser.post("/tokens/", {"name": "Long", "days": 999})
    assert b"A token lives at most 365 days" in refused.content and ApiToken.objects.count() == 1

    other = api_key(make_member("carl", "Other team"))
    assert browser.post(f"/tokens/{other[:15]}/revoke/").status_code == 404
    for odd in ("a%00b", "%C3%A9", "x" * 20):  # no token_key: not found, never a server error
        assert browser.post(f"/tokens/{odd}/revoke/").status_code == 404
    assert browser.post(f"/tokens/{key[:15]}/revoke/").status_code == 302
    assert with_key(key).get("/api/me/").status_code == 401 and with_key(other).get("/api/me/").status_code == 200


# --- DRF's tokens, the command, the demo ------------------------------------------------------


def test_a_drf_key_is_carried_over_and_keeps_working_until_it_expires(alice, settings):
    made = timezone.now() - datetime.timedelta(days=400)
    old = Token(key=Token.generate_key(), user=alice, created=made)
    Token.objects.bulk_create([old])  # as DRF stored it (its save() is refused now: see below)
    Token.objects.filter(pk=old.pk).update(created=made)
    assert re.fullmatch(r"[0-9a-f]{40}", old.key)

    carried.carry_over(apps, None)

    assert not Token.objects.exists()  # no plain-text key is kept
    token = ApiToken.objects.get()
    assert (token.name, token.user, token.token_key, token.created) == (carried.CARRIED_OVER, alice, old.key[:15], made)
    expected = timezone.now() + datetime.timedelta(days=settings.API_TOKEN_DAYS)
    assert abs(token.expiry - expected) < datetime.timedelta(minutes=1)
    assert with_key(old.key).get("/api/me/").json()["username"] == "alice"
    ApiToken.objects.update(expiry=timezone.now() - datetime.timedelta(seconds=1))
    assert "expired at" in with_key(old.key).get("/api/me/").json()["detail"]


def test_drf_create_token_says_what_to_run_instead(alice):
    with pytest.raises(CommandError, match=r"Run `manage.py create_token <username> --name NAME"):
        call_command("drf_create_token", "alice")
    assert not Token.objects.exists() and not ApiToken.objects.exists()


def test_create_token_prints_a_key_that_works_and_refuses_clearly(alice, settings):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_token", "alice", "--name", "Backup job", "--days", "5", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)  # alone on stdout: TOKEN=$(manage.py create_token ...)
    assert "shown this once" in err.getvalue()
    token = ApiToken.objects.get()
    assert token.name == "Backup job" and round((token.expiry - token.created) / datetime.timedelta(days=1)) == 5
    assert with_key(key).get("/api/me/").status_code == 200

    with pytest.raises(CommandError, match="No user is named 'nobody': nothing was made"):
        call_command("create_token", "nobody", "--name", "x")
    with pytest.raises(CommandError, match=r"at most 365 days \(API_TOKEN_MAX_DAYS\)"):
        call_command("create_token", "alice", "--name", "x", "--days", "400")
    with pytest.raises(CommandError, match="--name"):
        call_command("create_token", "alice")
    alice.is_active = False
    alice.save()
    with pytest.raises(CommandError, match="alice is deactivated"):
        call_command("create_token", "alice", "--name", "x")
    assert ApiToken.objects.count() == 1


def test_setup_demo_prints_a_new_working_key_each_run_and_revokes_the_last(catalog):
    keys = []
    for _ in range(2):
        printed = io.StringIO()
        call_command("setup_demo", stdout=printed)
        keys.append(re.search(r"API token (\w+)", printed.getvalue())[1])
    first, second = keys
    assert with_key(first).get("/api/me/").status_code == 401
    assert with_key(second).get("/api/me/").json()["username"] == "demo"
    assert ApiToken.objects.count() == 1


def test_a_default_lifetime_over_the_ceiling_stops_the_portal_saying_so():
    stopped = manage({"DJANGO_DEBUG": "1", "API_TOKEN_DAYS": "400", "API_TOKEN_MAX_DAYS": "365"}, "check")
    assert stopped.returncode != 0
    assert "API_TOKEN_DAYS (400) must be at least 1 and at most API_TOKEN_MAX_DAYS (365)." in stopped.stderr
    past_the_calendar = manage({"DJANGO_DEBUG": "1", "API_TOKEN_MAX_DAYS": "5000000"}, "check")
    assert "API_TOKEN_MAX_DAYS (5000000) must be 1 to 3650 (ten years)." in past_the_calendar.stderr
    assert manage({"DJANGO_DEBUG": "1"}, "check").returncode == 0  # nothing to set: 90 and 365


# --- In Chromium ---------------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])
def test_a_token_is_made_used_and_revoked_in_the_browser(lab, browser, viewport):
    _, base = lab
    visits = Visits(browser, base, viewport)
    page = visits.page
    log_in(page, base, "alice")
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_url(f"{base}/tokens/")
    visits.check("tokens-empty")

    making = page.get_by_role("form", name="Make a token")
    making.get_by_label("Name").fill("Provisioning laptop")
    making.get_by_label("Lifetime (days)").fill("14")
    making.get_by_role("button", name="Make token").click()
    page.get_by_text("Copy it now: it is not shown again.").wait_for()
    key = page.locator("#new-key").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    visits.check("tokens-made")

    me = requests.get(f"{base}/api/me/", headers={"Authorization": f"Token {key}"}, timeout=30)
    assert me.status_code == 200 and me.json()["username"] == "alice"

    page.reload()  # shown once: not again, and no second token made
    assert key not in page.content()
    assert ApiToken.objects.filter(name="Provisioning laptop").count() == 1
    row = page.get_by_role("row", name=re.compile("Provisioning laptop"))
    assert key[:15] in row.inner_text() and "Never" not in row.inner_text()  # used, just now
    row.get_by_text("Revoke", exact=True).click()
    row.get_by_role("button", name="Revoke Provisioning laptop").click()
    page.get_by_text(f"Token Provisioning laptop ({key[:15]}…) revoked: it no longer works.").wait_for()
    visits.check("tokens-revoked")
    refused = requests.get(f"{base}/api/me/", headers={"Authorization": f"Token {key}"}, timeout=30)
    assert refused.status_code == 401
    page.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_team_admin_revokes_a_members_token_in_the_browser(lab, browser, viewport):
    _, base = lab
    Membership.objects.filter(user__username="alice").update(role=TeamRole.ADMIN)
    key = ApiToken.issue(make_member("bob", "Mail team"), "Bob's cron job")[1]
    team = Team.objects.get(name="Mail team")
    visits = Visits(browser, base, viewport)
    page = visits.page
    log_in(page, base, "alice")
    visits.visit(f"/teams/{team.pk}/", "team-tokens")
    row = page.locator("#member-tokens").get_by_role("row", name=re.compile("Bob's cron job"))
    assert "bob" in row.inner_text() and key[:15] in row.inner_text() and key not in page.content()
    row.get_by_text("Revoke", exact=True).click()
    row.get_by_role("button", name="Revoke Bob's cron job").click()
    page.get_by_text(f"bob's token Bob's cron job ({key[:15]}…) revoked: it no longer works.").wait_for()
    assert page.get_by_text("No token of a member that you may revoke.").is_visible()
    visits.check("team-tokens-revoked")
    assert requests.get(f"{base}/api/me/", headers={"Authorization": f"Token {key}"}, timeout=30).status_code == 401
    page.close()


for _mark in browser_marks:
    test_a_token_is_made_used_and_revoked_in_the_browser = _mark(test_a_token_is_made_used_and_revoked_in_the_browser)
    test_a_team_admin_revokes_a_members_token_in_the_browser = _mark(
        test_a_team_admin_revokes_a_members_token_in_the_browser
    )
