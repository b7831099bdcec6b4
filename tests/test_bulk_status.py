"""One request changes the status of many rules: POST /api/deployments/{id}/checklist/status/."""

from __future__ import annotations

import json
import threading
import time

import pytest
import yaml
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import RequestBodyValidationError
from rest_framework.test import APIClient

from ports.models import ChecklistItem, Deployment, StatusChange

from .conftest import create_deployment, make_member, recorded_run


def url_of(deployment: Deployment) -> str:
    return f"/api/deployments/{deployment.pk}/checklist/status/"


def bulk(api: APIClient, deployment: Deployment, body: dict, expect: int = 200) -> dict:
    response = api.post(url_of(deployment), body, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def state(deployment: Deployment) -> dict[int, tuple[str, int]]:
    """Every item's status and revision, to show what a request changed (or did not)."""
    return {
        pk: (status, revision) for pk, status, revision in deployment.checklist.values_list("pk", "status", "revision")
    }


def revision(deployment: Deployment) -> int:
    return Deployment.objects.values_list("checklist_revision", flat=True).get(pk=deployment.pk)


def test_listed_items_change_with_their_history(deployment, api, django_capture_on_commit_callbacks):
    items = list(deployment.checklist.order_by("pk")[:3])
    before = revision(deployment)
    with django_capture_on_commit_callbacks(execute=True):
        body = bulk(api, deployment, {"status": "requested", "comment": "CHG-7", "items": [i.pk for i in items]})
    assert body == {
        "matched": 3,
        "changed": 3,
        "unchanged": 0,
        "overwrites": {"waived": 0, "verified": 0},
        "dry_run": False,
        "outcome": "updated",
        "items": [i.pk for i in items],
    }
    for item in items:
        item.refresh_from_db()
        assert (item.status, item.revision) == ("requested", 2) and item.status_changed_at is not None
        change = item.history.get()
        assert (change.from_status, change.to_status, change.user.username, change.comment) == (
            "todo",
            "requested",
            "alice",
            "CHG-7",
        )
    assert deployment.checklist.exclude(pk__in=[i.pk for i in items]).filter(status="todo").count() == 81 - 3
    assert revision(deployment) == before + 1  # once for the whole change: the checklist's ETag moves


def test_the_checklist_shows_the_change_at_once(deployment, api, django_capture_on_commit_callbacks):
    url = f"/api/deployments/{deployment.pk}/checklist/"
    first = api.get(url)
    etag = first.headers["ETag"]
    ids = [item["id"] for item in first.json()["items"][:2]]
    with django_capture_on_commit_callbacks(execute=True):  # as when the request's transaction commits
        bulk(api, deployment, {"status": "opened", "items": ids})
    again = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 200 and again.headers["ETag"] != etag
    shown = {item["id"]: (item["status"], item["etag"]) for item in again.json()["items"]}
    assert [shown[pk] for pk in ids] == [("opened", f'"{pk}-2"') for pk in ids]


def test_a_filter_selects_what_the_checklist_shows_with_it(deployment, api):
    items = list(deployment.checklist.order_by("pk"))
    recorded_run(deployment, [(items[0], "refused"), (items[1], "open")] + [(i, "refused") for i in items[5:9]])
    ChecklistItem.objects.filter(pk=items[5].pk).update(status="opened")
    query = {"status": ["todo", "requested"], "result": "refused"}
    shown = api.get(f"/api/deployments/{deployment.pk}/checklist/", query).json()["items"]
    assert len(shown) == 4  # refused, and to do (items[5] is opened)

    body = bulk(api, deployment, {"status": "opened", "comment": "CHG-8", "filter": query})
    assert body["matched"] == body["changed"] == 4 and sorted(body["items"]) == sorted(i["id"] for i in shown)
    assert StatusChange.objects.filter(comment="CHG-8").count() == 4

    # Text, port and role as the GET takes them, a port as a number or its digits.
    for port in (53, "53"):
        selected = bulk(
            api, deployment, {"status": "requested", "filter": {"port": port, "role": "dns"}, "dry_run": True}
        )
        dns = api.get(f"/api/deployments/{deployment.pk}/checklist/", {"port": 53, "role": "dns"}).json()["items"]
        assert selected["matched"] == len(dns) > 0
    assert bulk(api, deployment, {"status": "todo", "filter": {"q": "127.0.4.9"}, "dry_run": True})["matched"] == len(
        api.get(f"/api/deployments/{deployment.pk}/checklist/", {"q": "127.0.4.9"}).json()["items"]
    )


def test_an_empty_filter_is_every_rule(deployment, api):
    body = bulk(api, deployment, {"status": "requested", "filter": {}})
    assert body["matched"] == body["changed"] == 81 == len(body["items"])
    assert set(deployment.checklist.values_list("status", flat=True)) == {"requested"}


def test_a_dry_run_answers_and_changes_nothing(deployment, api, user, django_capture_on_commit_callbacks):
    first, second = deployment.checklist.order_by("pk")[:2]
    first.change_status("waived", user, "no DLP here")
    second.change_status("verified", user)
    before, history, checklist = state(deployment), StatusChange.objects.count(), revision(deployment)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        body = bulk(api, deployment, {"status": "opened", "filter": {}, "dry_run": True})
    assert body["dry_run"] is True and not callbacks
    assert (body["matched"], body["changed"], body["unchanged"]) == (81, 81, 0)
    assert body["overwrites"] == {"waived": 1, "verified": 1}
    assert state(deployment) == before and StatusChange.objects.count() == history
    assert revision(deployment) == checklist


def test_rules_at_the_status_are_left_alone_and_twice_changes_nothing(deployment, api, user):
    first, second, third = deployment.checklist.order_by("pk")[:3]
    first.change_status("waived", user, "no DLP here")
    second.change_status("verified", user)
    ids = [first.pk, second.pk, third.pk]
    waive = {"status": "waived", "comment": "not in this phase", "items": ids}
    body = bulk(api, deployment, waive)
    assert (body["matched"], body["changed"], body["unchanged"]) == (3, 2, 1)
    assert body["overwrites"] == {"waived": 0, "verified": 1} and body["items"] == [second.pk, third.pk]
    first.refresh_from_db()
    assert first.revision == 2 and first.history.count() == 1  # its own waiver, not this one

    before, history = state(deployment), StatusChange.objects.count()
    again = bulk(api, deployment, waive)
    assert (again["changed"], again["unchanged"], again["items"]) == (0, 3, [])
    assert state(deployment) == before and StatusChange.objects.count() == history


def test_a_waiver_needs_its_reason_and_a_comment_its_limit(deployment, api):
    ids = list(deployment.checklist.values_list("pk", flat=True)[:2])
    before = state(deployment)
    for body in [{"status": "waived", "items": ids}, {"status": "waived", "comment": "  ", "filter": {}}]:
        assert "a waiver needs a reason" in bulk(api, deployment, body, 400)["comment"][0]
    assert "comment" in bulk(api, deployment, {"status": "opened", "comment": "x" * 2001, "items": ids}, 400)
    assert "status" in bulk(api, deployment, {"status": "done", "items": ids}, 400)
    assert state(deployment) == before and not StatusChange.objects.exists()


def test_ids_not_of_this_checklist_are_named_and_nothing_changes(catalog, deployment, api, full_document):
    other = create_deployment({**full_document, "name": "Other"})
    ours = list(deployment.checklist.values_list("pk", flat=True)[:2])
    theirs = other.checklist.values_list("pk", flat=True).first()
    before = state(deployment)
    body = bulk(api, deployment, {"status": "opened", "items": [*ours, theirs, 999999]}, 400)
    assert body == {"items": [f"Not items of this deployment's checklist: {theirs}, 999999."]}
    body = bulk(api, deployment, {"status": "opened", "items": [*ours, theirs], "dry_run": True}, 400)
    assert str(theirs) in body["items"][0]
    assert state(deployment) == before and state(other)[theirs] == ("todo", 1)
    assert not StatusChange.objects.exists()


def test_a_selection_is_one_of_items_or_filter_within_limits(deployment, api, settings):
    ids = list(deployment.checklist.values_list("pk", flat=True)[:4])
    assert "non_field_errors" in bulk(api, deployment, {"status": "opened"}, 400)
    assert "non_field_errors" in bulk(api, deployment, {"status": "opened", "items": ids, "filter": {}}, 400)
    assert "items" in bulk(api, deployment, {"status": "opened", "items": []}, 400)
    assert "items" in bulk(api, deployment, {"status": "opened", "items": ["one"]}, 400)
    assert "selected" in bulk(api, deployment, {"status": "opened", "filter": {}, "selected": ids}, 400)
    settings.MAX_RULES = 3
    body = bulk(api, deployment, {"status": "opened", "items": ids}, 400)
    assert body["items"] == ["At most 3 items at once (MAX_RULES); this names 4. Use `filter`."]
    assert not StatusChange.objects.exists()


UNKNOWN = "Unknown filter; known: status, protocol, interface, role, port, q, result, flag, stops_at."


@pytest.mark.parametrize(
    ("selection", "errors"),
    [
        ({"port": "abc"}, {"port": ["Enter a whole number."]}),
        ({"port": 70000}, {"port": ["Ensure this value is less than or equal to 65535."]}),
        (
            {"status": ["todo", "done"]},
            {"status": ["Select a valid choice. done is not one of the available choices."]},
        ),
        ({"result": "maybe"}, {"result": ["Select a valid choice. maybe is not one of the available choices."]}),
        ({"stauts": "todo"}, {"stauts": [UNKNOWN]}),  # ignored, it would select every rule
        ({"deployment": 1}, {"deployment": [UNKNOWN]}),  # the path's
        ({"port": [25, 53]}, {"port": ["One value, not a list."]}),
        ({"q": {"contains": "dns"}}, {"q": ["A string or a whole number."]}),
        ({"q": None}, {"q": ["A string or a whole number."]}),
    ],
)
def test_a_filter_that_does_not_parse_is_a_400_under_filter(deployment, api, selection, errors):
    assert bulk(api, deployment, {"status": "opened", "filter": selection}, 400) == {"filter": errors}
    assert not StatusChange.objects.exists()


def test_a_filter_is_an_object(deployment, api):
    assert "filter" in bulk(api, deployment, {"status": "opened", "filter": ["port", 25]}, 400)


def test_another_team_gets_404_and_changes_nothing(deployment, other_api):
    ids = list(deployment.checklist.values_list("pk", flat=True)[:2])
    for body in [{"status": "opened", "items": ids}, {"status": "opened", "filter": {}}]:
        assert other_api.post(url_of(deployment), body, format="json").status_code == 404
    assert set(deployment.checklist.values_list("status", flat=True)) == {"todo"}


def test_anonymous_gets_401_and_a_session_needs_csrf(deployment, user):
    body = {"status": "opened", "filter": {}}
    response = APIClient().post(url_of(deployment), body, format="json")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Token"

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/api-auth/login/")  # sets the CSRF cookie, as any page does
    refused = browser.post(url_of(deployment), body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert set(deployment.checklist.values_list("status", flat=True)) == {"todo"}
    token = browser.cookies["csrftoken"].value
    accepted = browser.post(url_of(deployment), body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200 and accepted.json()["changed"] == 81
    assert StatusChange.objects.filter(user=user).count() == 81


def test_the_query_count_does_not_grow_with_the_rules(catalog, api, full_document):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite takes bulk inserts in batches of its parameter limit, as Django sends them")
    full_document["appliances"] = [
        {"hostname": f"esa{n}.example.test", "c_address": f"127.1.{n}.1", "p1_address": f"127.1.{n}.2"}
        for n in range(20)
    ]
    large = create_deployment(full_document)
    ids = list(large.checklist.order_by("pk").values_list("pk", flat=True))
    assert len(ids) > 600
    api.get("/api/me/")  # its first use is written once (ApiToken.record_use): not counted below

    def queries(body: dict, changed: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert bulk(api, large, body)["changed"] == changed
        return len(captured)

    port_25 = large.checklist.filter(pk__in=ids[:550], port_start__lte=25, port_end__gte=25).count()
    counts = [
        queries({"status": "requested", "comment": "CHG-1", "items": ids[:50]}, 50),
        queries({"status": "requested", "comment": "CHG-1", "items": ids[50:550]}, 500),
        queries({"status": "opened", "filter": {"status": "requested", "port": "25"}}, port_25),
        queries({"status": "opened", "filter": {}}, len(ids) - port_25),
    ]
    assert len(set(counts)) == 1 and counts[0] <= 12, counts
    assert StatusChange.objects.filter(item__deployment=large).count() == 550 + len(ids)
    # Above 500 changed, the answer counts them without listing them.
    body = bulk(api, large, {"status": "todo", "filter": {}, "dry_run": True})
    assert body["changed"] == len(ids) and body["items"] is None


def test_the_single_item_patch_still_works_after_a_bulk_change(deployment, api):
    item = deployment.checklist.order_by("pk").first()
    bulk(api, deployment, {"status": "requested", "items": [item.pk]})
    url = f"/api/checklist-items/{item.pk}/"
    tag = api.get(url).headers["ETag"]
    assert tag == f'"{item.pk}-2"'
    response = api.patch(url, {"status": "opened", "comment": "CHG-9"}, format="json", HTTP_IF_MATCH=tag)
    assert response.status_code == 200 and response.headers["ETag"] == f'"{item.pk}-3"'
    assert [(h["from_status"], h["to_status"]) for h in response.json()["history"]] == [
        ("todo", "requested"),
        ("requested", "opened"),
    ]
    stale = api.patch(url, {"status": "verified"}, format="json", HTTP_IF_MATCH=tag)
    assert stale.status_code == 412


def test_the_answer_is_what_the_schema_says(deployment, user, api):
    schema_client = APIClient()
    schema_client.force_authenticate(make_member("schema", "Mail team"))
    schema = yaml.safe_load(schema_client.get("/api/schema/").content)
    operation = schema["paths"]["/api/deployments/{id}/checklist/status/"]["post"]
    assert operation["operationId"] and "200" in operation["responses"]
    request = schema["components"]["schemas"]["BulkStatusRequest"]
    assert {"status", "comment", "items", "filter", "dry_run"} <= request["properties"].keys()
    assert request["properties"]["filter"]["additionalProperties"] is False
    openapi = OpenAPI.from_dict(schema)
    ids = list(deployment.checklist.values_list("pk", flat=True)[:2])
    bodies = [
        {"status": "opened", "comment": "CHG-3", "items": ids},
        {"status": "todo", "filter": {"status": ["opened"], "port": 25, "q": "127"}, "dry_run": True},
        {"status": "todo", "filter": {}, "dry_run": True},
    ]

    def request(body: dict) -> MockRequest:
        data = json.dumps(body).encode()
        return MockRequest("http://testserver", "post", url_of(deployment), headers={"Authorization": "T"}, data=data)

    for body in bodies:
        sent = request(body)
        openapi.validate_request(sent)  # the schema takes what the API takes
        response = api.post(url_of(deployment), body, format="json")
        assert response.status_code == 200
        openapi.validate_response(sent, MockResponse(response.content, response.status_code))
    # ... and says what it refuses: a filter it does not know.
    with pytest.raises(RequestBodyValidationError):
        openapi.validate_request(request({"status": "todo", "filter": {"stauts": "todo"}}))


@pytest.mark.django_db(transaction=True)
def test_a_change_waits_for_a_rule_being_changed_and_reads_it_again(catalog, user, api, full_document):
    """The items are locked before they are read: a rule another request is changing is waited
    for, then read as that request left it (here, no longer one the filter selects)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    deployment = create_deployment(full_document)
    first = deployment.checklist.order_by("pk").first()
    locked, problems = threading.Event(), []

    def other_request() -> None:
        try:
            with transaction.atomic():
                first.change_status("opened", user, "meanwhile")  # its row lock is held until the commit
                locked.set()
                with connection.cursor() as cursor:  # commit once the bulk change waits for the lock
                    deadline = time.monotonic() + 10
                    cursor.execute("select count(*) from pg_locks where not granted")
                    while not cursor.fetchone()[0]:
                        if time.monotonic() > deadline:
                            problems.append("the bulk change never waited for the lock")
                            break
                        time.sleep(0.02)
                        cursor.execute("select count(*) from pg_locks where not granted")
        finally:
            connection.close()

    thread = threading.Thread(target=other_request)
    thread.start()
    assert locked.wait(10)
    body = bulk(api, deployment, {"status": "requested", "comment": "CHG-5", "filter": {"status": "todo"}})
    thread.join(10)
    assert not problems
    assert body["matched"] == body["changed"] == 80 and first.pk not in body["items"]
    first.refresh_from_db()
    assert first.status == "opened" and [h.comment for h in first.history.all()] == ["meanwhile"]
