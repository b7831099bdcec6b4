"""Where failing rules stop, shown where it helps (issue 23, item 3): the devices that stop a
checklist's failing rules counted per device (probes.stops), the checklist's `stops_at` filter,
the regression alert's words and webhook payload, and the change request's rule table and test
plan. The evidence is what a site worker sends (as tests/test_where_it_stops.py's lab finds it),
recorded by ProbeRun.record: no network."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ports.choices import Stop
from ports.models import ChecklistItem, Deployment
from ports.ranges import number_runs
from probes.alerts.delivery import deliver
from probes.choices import AlertKind
from probes.engine import Check, State
from probes.engine.checks import PortResult
from probes.engine.core import summarise
from probes.models import Alert, AlertChannel, AlertDelivery, ProbeRun
from probes.stops import StopPoint, stopping_devices

from .conftest import create_deployment, recorded_run
from .test_exports import flat, pdf_text

ROUTER, FIREWALL, FIREWALL6 = "10.0.1.1", "10.0.2.1", "fd00:2::1"
PROHIBITED = {"type": 3, "code": 13, "name": "communication administratively prohibited"}


def silent_after(item: ChecklistItem, hop: str) -> dict:
    """A filtered rule's evidence with its trace: the hops that answered, the last one `hop`."""
    path = ["10.0.0.1", hop]
    return {
        "destination": item.destination,
        "port": item.port_start,
        "protocol": item.protocol,
        "timeout": 1,
        "tries": 1,
        "path": path,
        "stopped_after": hop,
        "stopped_hop": len(path),
        "traced_hops": 8,
    }


def rejected_by(item: ChecklistItem, device: str, icmp: dict = PROHIBITED) -> dict:
    """An unreachable rule's evidence: the device that sent the ICMP error, and the error."""
    return {
        "destination": item.destination,
        "port": item.port_start,
        "protocol": item.protocol,
        "rejected_by": device,
        "icmp": icmp,
    }


def single_flows(deployment: Deployment) -> list[ChecklistItem]:
    """Items that are each a firewall rule of their own (no other item shares their number), so
    that a rule's words are its one item's."""
    items = list(deployment.checklist.order_by("number"))
    shared = Counter(item.number for item in items)
    return [item for item in items if shared[item.number] == 1]


def fail(deployment: Deployment, items: list[ChecklistItem]) -> dict[str, list[ChecklistItem]]:
    """Record a run in which items 0-2 are dropped after ROUTER, 3-4 rejected by FIREWALL, 5 rejected
    by FIREWALL6, 6 filtered without an answering hop, 7 open; the items by where they stop."""
    states = [(item, "filtered") for item in items[:3]] + [(item, "unreachable") for item in items[3:6]]
    states += [(items[6], "filtered"), (items[7], "open")]
    evidence = {item: silent_after(item, ROUTER) for item in items[:3]}
    evidence |= {item: rejected_by(item, FIREWALL) for item in items[3:5]}
    evidence[items[5]] = rejected_by(items[5], FIREWALL6, {"type": 1, "code": 1, "name": "administratively prohibited"})
    evidence[items[6]] = {"destination": items[6].destination, "path": [], "traced_hops": 8}
    recorded_run(deployment, states, summary="{state} (test)", evidence=evidence)
    return {ROUTER: items[:3], FIREWALL: items[3:5], FIREWALL6: items[5:6]}


def test_the_devices_that_stop_failing_rules_are_counted_most_first_in_one_query(
    deployment, full_document, django_assert_num_queries
):
    fail(deployment, single_flows(deployment))
    # Another deployment's rules stopping at the same device are not this checklist's.
    full_document["name"] = "Other gateways"
    other = create_deployment(full_document)
    fail(other, single_flows(other)[:8])
    with django_assert_num_queries(1):
        found = stopping_devices(deployment.checklist.all())
    assert found == [
        StopPoint(ROUTER, Stop.STOPPED_AFTER, 3),
        StopPoint(FIREWALL, Stop.REJECTED_BY, 2),
        StopPoint(FIREWALL6, Stop.REJECTED_BY, 1),
    ]
    assert [point.words for point in found] == [
        "3 rules stop after 10.0.1.1",
        "2 rules are rejected by 10.0.2.1",
        "1 rule is rejected by fd00:2::1",
    ]
    # Of a selection only: the items given.
    assert stopping_devices(deployment.checklist.filter(protocol="none")) == []


def test_a_rule_that_works_again_stops_nowhere(deployment):
    items = single_flows(deployment)
    where = fail(deployment, items)
    recorded_run(deployment, [(item, "open") for item in where[ROUTER]])
    assert [point.address for point in stopping_devices(deployment.checklist.all())] == [FIREWALL, FIREWALL6]


def test_a_rejection_names_the_device_before_a_trace_does(deployment):
    """The database's reading (with_stop) and the alert's (Stop.of) take the keys in one order."""
    item = single_flows(deployment)[0]
    both = silent_after(item, ROUTER) | rejected_by(item, FIREWALL)
    assert Stop.of(both) == (FIREWALL, Stop.REJECTED_BY)
    assert Stop.of({"traced_hops": 8}) is None and Stop.of("not a dict") is None
    recorded_run(deployment, [(item, "unreachable")], evidence={item: both})
    assert stopping_devices(deployment.checklist.all()) == [StopPoint(FIREWALL, Stop.REJECTED_BY, 1)]


def ids(response: object) -> set[int]:
    assert response.status_code == 200, response.content
    body = response.json()
    return {item["id"] for item in (body["items"] if "items" in body else body["results"])}


def test_the_checklist_filters_the_rules_that_stop_at_a_device(deployment, api):
    where = fail(deployment, single_flows(deployment))
    url = f"/api/deployments/{deployment.pk}/checklist/"
    for device, items in where.items():
        assert ids(api.get(url, {"stops_at": device})) == {item.pk for item in items}, device
    # IPv6 as anyone writes it: compared in the compressed form a probe writes.
    assert ids(api.get(url, {"stops_at": "FD00:2:0:0:0:0:0:1"})) == {where[FIREWALL6][0].pk}
    assert ids(api.get(url, {"stops_at": "10.0.0.1"})) == set()  # on the path, but not where it stops
    # With the other filters.
    tcp = {item.pk for item in where[ROUTER] if item.protocol == "tcp"}
    assert ids(api.get(url, {"stops_at": ROUTER, "protocol": "tcp"})) == tcp
    # The CSV is filtered alike.
    csv = api.get(url, {"stops_at": FIREWALL, "format": "csv"})
    assert csv.status_code == 200 and csv.content.decode().count("\n") == 1 + 2


@pytest.mark.parametrize("value", ["10.0.1", "router-1", "10.0.1.1/24", "fd00::2::1"])
def test_a_stops_at_that_is_no_address_is_a_400(deployment, api, value):
    for url in [f"/api/deployments/{deployment.pk}/checklist/", "/api/checklist-items/"]:
        response = api.get(url, {"stops_at": value})
        assert response.status_code == 400, (url, value)
        (message,) = response.json()["stops_at"]
        assert message in ("Enter a valid IPv4 or IPv6 address.", "This is not a valid IPv6 address.")


def test_a_team_sees_only_its_own_rules_that_stop_at_a_device(deployment, api, other_api, full_document):
    mine = fail(deployment, single_flows(deployment))
    theirs = create_deployment(full_document, team="Other team")
    theirs_stop = fail(theirs, single_flows(theirs))
    assert ids(api.get("/api/checklist-items/", {"stops_at": ROUTER})) == {item.pk for item in mine[ROUTER]}
    assert ids(other_api.get("/api/checklist-items/", {"stops_at": ROUTER})) == {
        item.pk for item in theirs_stop[ROUTER]
    }
    response = other_api.get(f"/api/deployments/{deployment.pk}/checklist/", {"stops_at": ROUTER})
    assert response.status_code == 404


def test_a_bulk_status_change_selects_the_rules_that_stop_at_a_device(deployment, api):
    where = fail(deployment, single_flows(deployment))
    url = f"/api/deployments/{deployment.pk}/checklist/status/"
    body = {"status": "requested", "comment": "CHG-10", "filter": {"stops_at": FIREWALL}}
    response = api.post(url, body, format="json")
    assert response.status_code == 200 and response.json()["matched"] == 2
    requested = set(deployment.checklist.filter(status="requested").values_list("pk", flat=True))
    assert requested == {item.pk for item in where[FIREWALL]}
    response = api.post(url, body | {"filter": {"stops_at": "nowhere"}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"filter": {"stops_at": ["Enter a valid IPv4 or IPv6 address."]}}


def test_the_schema_declares_the_filter(deployment, api):
    schema = api.get("/api/schema/?format=json").json()
    checklist = schema["paths"]["/api/deployments/{id}/checklist/"]["get"]
    (parameter,) = [p for p in checklist["parameters"] if p["name"] == "stops_at"]
    assert parameter["schema"]["type"] == "string" and "rejected" in parameter["description"]
    bulk = next(s for name, s in schema["components"]["schemas"].items() if name.startswith("BulkStatus"))
    stops_at = bulk["properties"]["filter"]["properties"]["stops_at"]
    assert stops_at["type"] == "string" and "rejected" in stops_at["description"]


def test_the_alert_says_where_the_rules_that_broke_now_stop(deployment):
    items = single_flows(deployment)[:8]
    channel = AlertChannel.objects.create(team=deployment.team, name="ops", kind="email", target="ops@example.com")
    recorded_run(deployment, [(item, "open") for item in items])
    where = fail(deployment, items)
    (alert,) = Alert.objects.filter(kind=AlertKind.REGRESSION)
    stops = [
        "3 rules of site default now stop after 10.0.1.1.",
        "2 rules of site default are now rejected by 10.0.2.1: communication administratively prohibited.",
        "1 rule of site default is now rejected by fd00:2::1: administratively prohibited.",
    ]
    lines = alert.body.splitlines()
    assert lines[2:5] == stops and lines[5] == "" and lines[6].startswith("Probe run ")
    assert alert.subject == f"{deployment.name}: 7 rules stopped working"  # as before: 7 of 8 broke
    # The webhook's payload: a field of the alert's details, beside those it had.
    payload = Alert.objects.get(pk=alert.pk).payload()
    assert set(payload["details"]) == {"run", "changes", "stops"} and len(payload["details"]["changes"]) == 7
    assert payload["details"]["stops"] == [
        {
            "site": "default",
            "address": device,
            "how": how,
            "icmp": icmp,
            "items": [item.pk for item in where[device]],
            "rules": sorted(item.number for item in where[device]),
        }
        for device, how, icmp in [
            (ROUTER, "stopped_after", []),
            (FIREWALL, "rejected_by", ["communication administratively prohibited"]),
            (FIREWALL6, "rejected_by", ["administratively prohibited"]),
        ]
    ]
    # The email says it too (Django's test mail backend).
    deliver(AlertDelivery.objects.get(alert=alert, channel=channel))
    (message,) = mail.outbox
    assert all(stop in message.body for stop in stops)


def test_an_alert_of_rules_that_stop_nowhere_says_no_stop(deployment):
    item = single_flows(deployment)[0]
    recorded_run(deployment, [(item, "open")])
    run = recorded_run(deployment, [(item, "refused")])
    (alert,) = Alert.objects.filter(kind=AlertKind.REGRESSION)
    assert alert.details["stops"] == [] and alert.body.splitlines()[1:3] == [
        "",
        f"Probe run {run.pk}, from site default:",
    ]


def test_the_change_request_names_the_device_to_ask_in_the_rule_table_and_the_test_plan(deployment, api):
    where = fail(deployment, single_flows(deployment))
    text = flat(pdf_text(api.get(f"/api/deployments/{deployment.pk}/change-request.pdf").content))
    # The rule table: each failing rule's last probe, with where it stops.
    assert text.count("stops after 10.0.1.1: ask its owner") == 3
    assert text.count("rejected by 10.0.2.1: ask its owner") == 2
    assert text.count("rejected by fd00:2::1: ask its owner") == 1
    # The test plan: the rules by device, most first, and whom to ask.
    router, firewall = (number_runs(item.number for item in where[device]) for device in (ROUTER, FIREWALL))
    plan = text[text.index("Where the rules that fail now stop") :]
    assert plan.index(f"Rules {router} stop after 10.0.1.1: ask the owner of 10.0.1.1.") < plan.index(
        f"Rules {firewall} are rejected by 10.0.2.1: ask the owner of 10.0.2.1."
    )
    assert f"Rule {where[FIREWALL6][0].number} is rejected by fd00:2::1: ask the owner of fd00:2::1." in plan


def test_a_change_request_of_rules_that_pass_names_no_device(deployment, api):
    text = flat(pdf_text(api.get(f"/api/deployments/{deployment.pk}/change-request.pdf").content))
    assert "ask its owner" not in text and "Where the rules that fail now stop" not in text


def test_the_change_request_reads_where_rules_stop_in_queries_that_do_not_grow_with_them(deployment, api):
    items = single_flows(deployment)
    url = f"/api/deployments/{deployment.pk}/change-request.pdf"
    api.get("/api/me/")  # its first use is written once (ApiToken.record_use): not counted below
    counts = []
    for failing in (items[:1], items[:30]):
        evidence = {item: silent_after(item, ROUTER) for item in failing}
        recorded_run(deployment, [(item, "filtered") for item in failing], evidence=evidence)
        with CaptureQueriesContext(connection) as queries:
            response = api.get(url)
        assert response.status_code == 200
        assert flat(pdf_text(response.content)).count("stops after 10.0.1.1: ask its owner") == len(failing)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("small", [True, False], ids=["small run", "sweep"])
def test_a_result_not_traced_keeps_where_the_rule_stops(deployment, monkeypatch, small):
    """A run past its limit of traces finds the rule filtered, untraced: that is no news of where
    it stops, and the rule keeps the device a trace found before (no rewrite, no flicker)."""
    monkeypatch.setattr(ProbeRun, "SMALL", 64 if small else 0)
    item = single_flows(deployment)[0]
    # Each summary names the device, as the engine's do ("no answer after 10.0.1.1, hop 2 ...").
    after = "{state}: no answer after %s"
    recorded_run(deployment, [(item, "filtered")], summary=after % ROUTER, evidence={item: silent_after(item, ROUTER)})
    untraced = {"destination": item.destination, "not_traced": "the run reached its limit of 100 traces"}
    recorded_run(deployment, [(item, "filtered")], summary="{state}: no SYN-ACK", evidence={item: untraced})
    assert stopping_devices(deployment.checklist.all()) == [StopPoint(ROUTER, Stop.STOPPED_AFTER, 1)]
    # Traced again, to another device: that is news.
    recorded_run(
        deployment, [(item, "filtered")], summary=after % FIREWALL, evidence={item: silent_after(item, FIREWALL)}
    )
    assert stopping_devices(deployment.checklist.all()) == [StopPoint(FIREWALL, Stop.STOPPED_AFTER, 1)]


@pytest.mark.parametrize("device", ["", "router-1", 10, ["10.0.1.1"], "10.0.1.1; drop table"])
def test_a_site_that_names_no_address_as_the_stop_names_none(deployment, device):
    """What a site sends is data: a stop that is no address is dropped, so the summary, the filter
    and the alert agree that the rule stops nowhere known."""
    item = single_flows(deployment)[0]
    recorded_run(deployment, [(item, "unreachable")], evidence={item: {"rejected_by": device, "stopped_after": device}})
    assert stopping_devices(deployment.checklist.all()) == []


def test_a_range_says_where_it_stops_in_its_summary():
    """The recorder compares summaries: a range's names the device, as a port's does."""
    check = Check(key=1, host="127.0.10.1", port_start=17500, port_end=17501, protocol="tcp", service="")
    ports = [
        PortResult(17500, State.UNREACHABLE, None, "rejected", {"rejected_by": FIREWALL}),
        PortResult(17501, State.UNREACHABLE, None, "rejected", {"rejected_by": FIREWALL}),
    ]
    assert (
        summarise(check, "127.0.10.1", ports).summary
        == f"0 of 2 open; unreachable: 17500-17501; rejected by {FIREWALL}"
    )
    ports = [
        PortResult(17500, State.FILTERED, None, "silent", {"stopped_after": ROUTER}),
        PortResult(17501, State.OPEN),
    ]
    assert summarise(check, "127.0.10.1", ports).summary.endswith(f"; stops after {ROUTER}")
