"""The change log through the API (/api/changes/): what a provisioning script reads back after its
writes (who, through what, in which request, each field before and after), and what it never
sees (another team's entries, entries of writes that failed or were only planned)."""

from __future__ import annotations

import copy
import datetime
import io
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from ports.models import Deployment, ObjectChange
from ports.tasks import purge_old_changes

from .conftest import FULL_DEPLOYMENT, api_key, create_deployment, make_member, token_client
from .test_schema import Client as SchemaCheckingClient

CHANGES = "/api/changes/"
PIN = {"host": "127.0.4.1", "port": 9443, "pin": "ab" * 32}


def changes(api: APIClient, **query: object) -> list[dict]:
    """The log's entries as the API lists them (one page of up to 1,000), newest first."""
    response = api.get(CHANGES, {"limit": 1000, **query})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def sent(api: APIClient, method: str, url: str, request_id: str, body: object = None, expect: int = 200) -> dict:
    """A script's write under its own request id, which the answer sends back."""
    response = getattr(api, method)(url, body, format="json", headers={"X-Request-ID": request_id})
    assert response.status_code == expect, (method, url, response.content[:500])
    assert response.headers["X-Request-ID"] == request_id
    return response.json() if response.content else {}


def moved_dns(hosts: list[dict], address: str) -> list[dict]:
    """The hosts with the DNS server dns1 at another address."""
    return [{**host, "address": address} if host["name"] == "dns1" else host for host in hosts]


# --- A provisioning script's writes, read back --------------------------------------------


def test_a_provisioning_script_reads_back_who_changed_what_through_what_and_in_which_request(
    catalog, api, full_document
):
    created = sent(api, "post", "/api/deployments/", "prov-1.create", full_document, expect=201)
    pk = created["id"]
    url = f"/api/deployments/{pk}/"
    sent(api, "patch", url, "prov-1.move-dns", {"hosts": moved_dns(created["hosts"], "127.0.4.99")})

    # The same upsert twice: the second changes nothing and writes no entry; a plan writes none.
    upserted = {**copy.deepcopy(full_document), "name": "Upserted"}
    sent(api, "post", "/api/deployments/upsert/", "prov-1.upsert", upserted, expect=201)
    logged = ObjectChange.objects.count()
    assert sent(api, "post", "/api/deployments/upsert/", "prov-1.upsert-again", upserted)["outcome"] == "unchanged"
    plan = sent(api, "post", "/api/deployments/?dry_run=true", "prov-1.plan", {**upserted, "name": "Planned"})
    assert plan["dry_run"] is True
    sent(api, "patch", f"{url}?dry_run=true", "prov-1.plan-patch", {"dlp_base_port": 18000})
    assert ObjectChange.objects.count() == logged
    assert not changes(api, request_id="prov-1.upsert-again") and not changes(api, request_id="prov-1.plan")

    # One rule's status, then two at once; a TLS pin; an alert channel created, changed, removed.
    first, second, third = Deployment.objects.get(pk=pk).checklist.order_by("pk")[:3]
    sent(api, "patch", f"/api/checklist-items/{first.pk}/", "prov-1.rule", {"status": "requested", "comment": "CHG-1"})
    bulk = {"status": "opened", "items": [second.pk, third.pk]}
    sent(api, "post", f"{url}checklist/status/", "prov-1.bulk", bulk)
    sent(api, "post", f"{url}tls-pins/", "prov-1.pin", PIN, expect=201)
    channel = {"name": "Ops", "kind": "email", "target": "ops@example.test"}
    channel_id = sent(api, "post", "/api/alert-channels/", "prov-1.channel", channel, expect=201)["id"]
    sent(api, "patch", f"/api/alert-channels/{channel_id}/", "prov-1.channel-off", {"enabled": False})
    sent(api, "delete", f"/api/alert-channels/{channel_id}/", "prov-1.channel-gone", expect=204)
    sent(api, "delete", url, "prov-1.delete", expect=204)
    assert api.get(url).status_code == 404

    # Every entry: alice, by token, under the request id her script sent.
    entries = changes(api)
    assert {(e["user"], e["source"], e["team"]) for e in entries} == {("alice", "api_token", "Mail team")}
    assert all(e["request_id"].startswith("prov-1.") for e in entries)
    # The deleted deployment's entries are all still there, newest first, its deletion on top.
    ours = changes(api, deployment=pk)
    assert [(e["object_type"], e["action"], e["request_id"]) for e in ours] == [
        ("deployment", "deleted", "prov-1.delete"),
        ("tls_pin", "created", "prov-1.pin"),
        ("rule", "updated", "prov-1.bulk"),
        ("rule", "updated", "prov-1.bulk"),
        ("rule", "updated", "prov-1.rule"),
        ("deployment", "updated", "prov-1.move-dns"),
        ("deployment", "created", "prov-1.create"),
    ]
    assert {e["deployment"] for e in ours} == {pk} and {e["deployment_name"] for e in ours} == {"Mail gateways"}

    # The DNS move's diff is the hosts, before and after: dns1's address and nothing else.
    (move,) = changes(api, request_id="prov-1.move-dns")
    assert list(move["diff"]) == ["hosts"]
    hosts = move["diff"]["hosts"]
    assert hosts["before"] == created["hosts"] and hosts["after"] == moved_dns(created["hosts"], "127.0.4.99")
    assert move["object_id"] == pk and move["object_repr"] == "Mail gateways"

    # The deletion keeps the last document; its creation had none before.
    deleted, *_, creation = ours
    assert deleted["after"] is None and deleted["before"]["name"] == "Mail gateways"
    assert deleted["before"]["hosts"] == moved_dns(created["hosts"], "127.0.4.99")
    assert deleted["before"]["appliances"] == created["appliances"]
    assert creation["before"] is None and creation["after"]["hosts"] == created["hosts"]
    # A creation: every field it set, from null; those left empty ("" for no description) are no change.
    assert set(creation["diff"]) == {name for name, value in creation["after"].items() if value not in ("", [], None)}
    assert "description" not in creation["diff"] and creation["diff"]["name"] == {
        "before": None,
        "after": "Mail gateways",
    }

    # A rule's status with its comment; the bulk change, one entry per rule it changed.
    (rule,) = changes(api, request_id="prov-1.rule")
    assert rule["object_id"] == first.pk and rule["before"] == {"status": "todo"}
    assert rule["diff"] == {
        "status": {"before": "todo", "after": "requested"},
        "comment": {"before": None, "after": "CHG-1"},
    }
    in_bulk = changes(api, request_id="prov-1.bulk")
    assert sorted(e["object_id"] for e in in_bulk) == [second.pk, third.pk]
    assert all(e["diff"] == {"status": {"before": "todo", "after": "opened"}} for e in in_bulk)
    (pin,) = changes(api, object_type="tls_pin")
    assert pin["after"]["host"] == PIN["host"] and pin["after"]["port"] == PIN["port"] and pin["before"] is None

    # The alert channel is the team's, not a deployment's: its three entries and what each changed.
    channel_log = changes(api, object_type="alert_channel", object_id=channel_id)
    assert [e["action"] for e in channel_log] == ["deleted", "updated", "created"]
    assert {e["deployment"] for e in channel_log} == {None}
    assert channel_log[1]["diff"] == {"enabled": {"before": True, "after": False}}
    assert channel_log[0]["before"]["name"] == "Ops" and channel_log[0]["after"] is None
    assert "secret" not in channel_log[2]["after"]

    # One entry in detail is what the list shows of it.
    assert api.get(f"{CHANGES}{move['id']}/").json() == move


def test_another_team_sees_none_of_the_entries(deployment, api, other_api):
    item = deployment.checklist.first()
    api.patch(f"/api/checklist-items/{item.pk}/", {"status": "opened"}, format="json")
    entries = changes(api)
    assert len(entries) == 2  # the fixture's creation (by no user) and the status change
    assert other_api.get(CHANGES).json()["count"] == 0
    # Their own changes they see, and we do not.
    other_api.post("/api/alert-channels/", {"name": "Ops", "kind": "email", "target": "o@example.test"}, format="json")
    assert [(e["team"], e["user"]) for e in changes(other_api)] == [("Other team", "mallory")]
    assert changes(api) == entries
    assert not changes(other_api, deployment=deployment.pk)
    for entry in entries:
        assert other_api.get(f"{CHANGES}{entry['id']}/").status_code == 404
    assert api.get(f"{CHANGES}999999/").status_code == 404


def test_the_log_is_read_only(deployment, api):
    (entry,) = changes(api)
    detail = f"{CHANGES}{entry['id']}/"
    assert api.post(CHANGES, {"action": "deleted"}, format="json").status_code == 405
    for method in ("put", "patch", "delete", "post"):
        assert getattr(api, method)(detail, {"action": "deleted"}, format="json").status_code == 405, method
    assert api.get(detail).json() == entry


# --- Filters ------------------------------------------------------------------------------


def test_filters_select_the_entries_asked_for(catalog, api, full_document):
    first = create_deployment(full_document)  # by no one: the fixtures' own write
    second = sent(api, "post", "/api/deployments/", "second", {**full_document, "name": "Second"}, expect=201)
    item = first.checklist.first()
    sent(api, "patch", f"/api/checklist-items/{item.pk}/", "status", {"status": "waived", "comment": "not used"})
    bob = token_client(make_member("bob", "Mail team"))
    sent(bob, "patch", f"/api/checklist-items/{item.pk}/", "back", {"status": "todo"})

    def requests(**query: object) -> list[str]:
        return [entry["request_id"] for entry in changes(api, **query)]

    assert requests(deployment=first.pk) == ["back", "status", ""]
    assert requests(deployment=second["id"]) == ["second"]
    assert requests(object_type="rule") == ["back", "status"]
    assert requests(object_type="rule", object_id=item.pk) == ["back", "status"]
    assert requests(object_type="deployment", object_id=first.pk) == [""]
    assert requests(action="created") == ["second", ""]
    assert requests(source="api_token") == ["back", "status", "second"]
    assert requests(source="portal") == [""]  # outside any request: the portal's own work
    assert requests(user="bob") == ["back"] and requests(user="alice") == ["status", "second"]
    assert requests(request_id="status") == ["status"] and requests(request_id="nope") == []

    # since and until take ISO 8601 times, with an offset or in UTC; both bounds included.
    status_time = ObjectChange.objects.get(request_id="status").time
    assert requests(since=status_time.isoformat()) == ["back", "status"]
    assert requests(until=status_time.isoformat()) == ["status", "second", ""]
    hour_ahead = status_time.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert requests(since=hour_ahead.isoformat(), until=hour_ahead.isoformat()) == ["status"]
    assert requests(since=(timezone.now() + datetime.timedelta(days=1)).date().isoformat()) == []
    # An offset that Python reads and PostgreSQL would refuse (beyond 15:59) is the same moment in UTC.
    far_west = status_time.astimezone(datetime.timezone(-datetime.timedelta(hours=22, minutes=4)))
    assert requests(since=far_west.isoformat()) == ["back", "status"]


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2025-13-01T00:00:00Z",
        "since=0001-01-01T00:00:00%2B01:00",  # before year 1 in UTC
        "action=exploded",
        "source=telepathy",
        "object_type=planet",
        "deployment=abc",
        "deployment=0",
        "deployment=1e30",
        "object_id=1.5",
        "object_id=99999999999999999999",
    ],
)
def test_a_filter_that_does_not_parse_is_a_400_naming_it(deployment, api, query):
    response = api.get(f"{CHANGES}?{query}")
    assert response.status_code == 400, response.content
    name = query.split("=")[0]
    assert list(response.json()) == [name] and response.json()[name]


# --- What writes no entry, and what the source says ---------------------------------------


def test_writes_that_fail_write_no_entry(deployment, api, full_document, settings):
    logged = ObjectChange.objects.count()
    url = f"/api/deployments/{deployment.pk}/"
    bad_address = {"appliances": [{"hostname": "esa9", "c_address": "not-an-address"}]}
    created = api.post("/api/deployments/", {**full_document, **bad_address, "name": "New"}, format="json")
    assert created.status_code == 400
    assert api.patch(url, bad_address, format="json").status_code == 400
    bad_channel = {"name": "Ops", "kind": "email", "target": "not an address"}
    assert api.post("/api/alert-channels/", bad_channel, format="json").status_code == 400
    items = [deployment.checklist.first().pk, 999999]  # one that is no rule of this deployment
    bulk = api.post(f"{url}checklist/status/", {"status": "opened", "items": items}, format="json")
    assert bulk.status_code == 400 and "items" in bulk.json()
    # A document that validates, whose checklist is then too long: the deployment and its parts were
    # written in the transaction, and went with it; so would the entry.
    settings.MAX_RULES = deployment.checklist.count()
    more = [*full_document["appliances"], {"hostname": "esa4.example.test", "c_address": "127.0.1.4"}]
    assert api.patch(url, {"appliances": more}, format="json").status_code == 400
    assert ObjectChange.objects.count() == logged and deployment.appliances.count() == 3
    assert set(deployment.checklist.values_list("status", flat=True)) == {"todo"}


def test_a_browser_sessions_api_call_is_logged_as_api_session(deployment, user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/api-auth/login/")  # sets the CSRF cookie, as any page does
    item = deployment.checklist.first()
    response = browser.patch(
        f"/api/checklist-items/{item.pk}/",
        {"status": "opened"},
        content_type="application/json",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value, "X-Request-ID": "not a plain token!"},
    )
    assert response.status_code == 200
    # A request id that is not a plain token is replaced by a new one, sent back all the same.
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    (entry,) = changes(token_client(user), object_type="rule")
    assert (entry["user"], entry["source"], entry["request_id"]) == ("alice", "api_session", request_id)
    assert browser.get(f"{CHANGES}{entry['id']}/").json() == entry  # the session reads the log too


def test_setup_demo_logs_its_deployment_as_a_command(catalog):
    call_command("setup_demo")
    printed = io.StringIO()
    call_command("setup_demo", stdout=printed)  # the second leaves the demo as it is: no second entry
    key = re.search(r"API token (\w+)", printed.getvalue())[1]  # each run prints a new one
    demo = APIClient()
    demo.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    (entry,) = changes(demo, object_type="deployment")
    deployment = Deployment.objects.get()
    assert (entry["source"], entry["action"], entry["deployment"]) == ("command", "created", deployment.pk)
    assert entry["user"] == "" and entry["team"] == "Demo" and entry["after"]["name"] == deployment.name


# --- Order, pages, queries, retention -----------------------------------------------------


def test_entries_come_newest_first_in_pages(deployment, api):
    items = list(deployment.checklist.order_by("pk")[:5])
    for n, item in enumerate(items):
        sent(api, "patch", f"/api/checklist-items/{item.pk}/", f"step-{n}", {"status": "opened"})
    # An entry's time orders it, not its id: the oldest written may be the newest change.
    ObjectChange.objects.filter(request_id="step-0").update(time=timezone.now() + datetime.timedelta(minutes=1))

    page = api.get(CHANGES, {"limit": 2}).json()
    assert page["count"] == 6 and page["previous"] is None
    assert [e["request_id"] for e in page["results"]] == ["step-0", "step-4"]
    following = api.get(page["next"]).json()
    assert [e["request_id"] for e in following["results"]] == ["step-3", "step-2"]
    last = api.get(following["next"]).json()
    assert [e["request_id"] for e in last["results"]] == ["step-1", ""] and last["next"] is None
    times = [e["time"] for e in changes(api)]
    assert times == sorted(times, reverse=True)


def list_queries(api: APIClient) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert api.get(CHANGES).status_code == 200
    return len(queries)


def test_the_lists_query_count_does_not_grow_with_its_entries(deployment, api, full_document):
    api.get("/api/me/")  # its first use is written once (ApiToken.record_use): not counted below
    few = list_queries(api)
    # Entries of several objects, deployments and users, each user and team named in every entry.
    second = sent(api, "post", "/api/deployments/", "second", {**full_document, "name": "Second"}, expect=201)
    bob = token_client(make_member("bob", "Mail team"))
    for n, item in enumerate(deployment.checklist.order_by("pk")[:10]):
        sent(bob if n % 2 else api, "patch", f"/api/checklist-items/{item.pk}/", f"r{n}", {"status": "opened"})
    sent(api, "post", f"/api/deployments/{second['id']}/tls-pins/", "pin", PIN, expect=201)
    channel = {"name": "Ops", "kind": "email", "target": "o@example.test"}
    sent(api, "post", "/api/alert-channels/", "channel", channel, expect=201)
    assert len(changes(api)) == 14
    # The token, the count and the page (with each entry's team).
    assert list_queries(api) == few <= 4


@override_settings(CHANGE_LOG_RETENTION_DAYS=30)
def test_entries_older_than_the_retention_are_purged(deployment, api):
    items = list(deployment.checklist.order_by("pk")[:3])
    for n, item in enumerate(items):
        sent(api, "patch", f"/api/checklist-items/{item.pk}/", f"age-{n}", {"status": "opened"})
    now = timezone.now()
    ObjectChange.objects.filter(request_id="age-0").update(time=now - datetime.timedelta(days=31))
    ObjectChange.objects.filter(request_id="age-1").update(time=now - datetime.timedelta(days=29))
    assert purge_old_changes() == 1
    # The deployment's creation (by the fixture) is younger than the entry made 29 days old.
    assert [e["request_id"] for e in changes(api)] == ["age-2", "", "age-1"]
    assert purge_old_changes() == 0


# --- The schema -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_logs_answers_match_the_schema(live_server):
    call_command("load_catalog", verbosity=0)
    user = make_member("provisioner", "Mail team")
    api = SchemaCheckingClient(live_server.url, api_key(user))
    document = {**copy.deepcopy(FULL_DEPLOYMENT), "name": "Schema"}
    pk = api.call("POST", "/api/deployments/", 201, json=document).json()["id"]
    api.call("PATCH", f"/api/deployments/{pk}/", 200, json={"dlp_base_port": 18000})
    api.call("POST", "/api/alert-channels/", 201, json={"name": "Ops", "kind": "email", "target": "o@example.test"})
    api.call("DELETE", f"/api/deployments/{pk}/", 204)
    listed = api.call("GET", f"{CHANGES}?limit=2", 200).json()
    assert listed["count"] == 4 and listed["next"]
    for entry in api.call("GET", CHANGES, 200).json()["results"]:  # a null before, a null after, a null deployment
        api.call("GET", f"{CHANGES}{entry['id']}/", 200)
    api.call("GET", f"{CHANGES}?deployment={pk}&action=updated&since=2020-01-01T00:00:00Z", 200)
    api.call("GET", f"{CHANGES}?action=exploded", 400)
    api.call("GET", f"{CHANGES}999999/", 404)
