"""Probes against real listeners on loopback: the engine alone, then the whole path
(API, Redis, a Celery worker process, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from ports.models import Deployment
from probes.engine import Check, Engine
from probes.models import ProbeRun, TlsPin, WorkerHeartbeat
from probes.probing import probe_site
from probes.recorder import take
from probes.reports import FolderChannel, Kind, channel
from probes.responders import Listeners, free_port, self_signed
from probes.tasks import expire_overdue_runs

from .conftest import create_deployment, make_member, recorded_run, token_client
from .probe_worker import Worker, flush_broker, needs_redis, wait_for_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listeners():
    served = Listeners()
    yield served
    served.close()


def probe(checks: list[Check], timeout: float = 1.0) -> dict[int, object]:
    found = {}
    asyncio.run(Engine(timeout=timeout).run(checks, lambda check, result: found.__setitem__(check.key, result)))
    return found


# --- The engine against real listeners ------------------------------------------------


def test_engine_tells_each_case_apart_with_evidence(listeners):
    cert, key, pin = self_signed("esa1.example.test")
    other_cert, other_key, _ = self_signed("esa1.example.test", issuer_name="Corporate Inspection CA")
    host = "127.0.0.1"
    ports = {
        "open": listeners.open_tcp(),
        "refused": free_port(),
        "filtered": listeners.filtered(),
        "smtp": listeners.smtp(tls=(cert, key)),
        "masked": listeners.smtp(banner="220 ******************************************"),
        "tls": listeners.tls(cert, key),
        "decrypted": listeners.tls(other_cert, other_key),
        "dns": listeners.dns(),
        "browser": listeners.sql_browser(),
        "ldap": listeners.ldap(),
        "udp_refused": free_port(kind=socket.SOCK_DGRAM),
    }
    checks = {
        "open": Check(1, host, ports["open"], ports["open"], "tcp", "tcp"),
        "refused": Check(2, host, ports["refused"], ports["refused"], "tcp", "tcp"),
        "filtered": Check(3, host, ports["filtered"], ports["filtered"], "tcp", "tcp"),
        "smtp": Check(4, host, ports["smtp"], ports["smtp"], "tcp", "smtp"),
        "masked": Check(5, host, ports["masked"], ports["masked"], "tcp", "smtp"),
        "tls": Check(6, host, ports["tls"], ports["tls"], "tcp", "tls", expected_pin=pin),
        "decrypted": Check(7, host, ports["decrypted"], ports["decrypted"], "tcp", "tls", expected_pin=pin),
        "dns_udp": Check(8, host, ports["dns"], ports["dns"], "udp", "dns"),
        "dns_tcp": Check(9, host, ports["dns"], ports["dns"], "tcp", "dns"),
        "browser": Check(10, host, ports["browser"], ports["browser"], "udp", "mssql_browser"),
        "ldap": Check(11, host, ports["ldap"], ports["ldap"], "tcp", "ldap"),
        "trap": Check(12, host, 162, 162, "udp", "snmp_trap"),
        "udp_refused": Check(13, host, ports["udp_refused"], ports["udp_refused"], "udp", "dns"),
        "by_name": Check(14, "localhost", ports["open"], ports["open"], "tcp", "tcp"),
    }
    found = probe(list(checks.values()))
    result = {name: found[check.key] for name, check in checks.items()}

    assert {name: r.state for name, r in result.items()} == {
        "open": "open",
        "refused": "refused",
        "filtered": "filtered",
        "smtp": "open",
        "masked": "intercepted",
        "tls": "open",
        "decrypted": "intercepted",
        "dns_udp": "open",
        "dns_tcp": "open",
        "browser": "open",
        "ldap": "open",
        "trap": "unverifiable",
        "udp_refused": "refused",
        "by_name": "open",
    }
    assert result["open"].latency_ms > 0 and result["open"].address == host
    assert result["filtered"].latency_ms is None and "no answer within 1 s" in result["filtered"].summary
    assert result["smtp"].evidence["banner"] == ["220 mx.example.test ESMTP ready"]
    assert result["smtp"].evidence["starttls"] is True
    assert result["masked"].evidence["masked"] is True and "masked" in result["masked"].summary
    assert result["tls"].evidence["pin"] == pin and result["tls"].evidence["issuer"] == "CN=esa1.example.test"
    assert result["decrypted"].evidence["issuer"] == "CN=Corporate Inspection CA"
    assert result["decrypted"].evidence["expected_pin"] == pin != result["decrypted"].evidence["pin"]
    assert result["dns_udp"].evidence.items() >= {"transport": "udp", "rcode": "NOERROR"}.items()
    assert result["dns_tcp"].evidence["transport"] == "tcp"
    assert result["browser"].evidence["instances"][0]["InstanceName"] == "MSSQLSERVER"
    assert result["browser"].evidence["instances"][0]["tcp"] == "1433"
    assert result["ldap"].evidence["namingContexts"] == ["dc=example,dc=test"]
    assert "one-way" in result["trap"].summary
    assert result["udp_refused"].summary.startswith("ICMP port unreachable")
    assert result["by_name"].address == "127.0.0.1"


def test_a_range_is_probed_port_by_port_and_summarised(listeners):
    base = 38100
    for port in [*range(base, base + 5), *range(base + 8, base + 15)]:
        listeners.open_tcp("127.0.0.5", port)
    (result,) = probe([Check(1, "127.0.0.5", base, base + 15, "tcp", "tcp")]).values()
    assert result.state == "refused"
    assert result.summary == f"12 of 16 open; refused: {base + 5}-{base + 7}, {base + 15}"
    assert result.evidence["open"] == 12 and result.evidence["total"] == 16
    assert result.evidence["ports"][str(base + 15)]["state"] == "refused"


NETNS_SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from probes.engine import Check, Engine
found = {}
check = Check(1, "mail.example.test", 25, 25, "tcp", "smtp")
asyncio.run(Engine(timeout=1).run([check], lambda c, r: found.update(vars(r))))
print(json.dumps(found))
"""


def test_a_name_that_does_not_resolve_is_a_dns_error():
    # In a namespace of its own whose resolver is on its own loopback, where nothing
    # answers: the lookup fails without a packet leaving the machine.
    namespace = f"probe-dns-{os.getpid()}"
    resolv = Path("/etc/netns") / namespace / "resolv.conf"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        resolv.parent.mkdir(parents=True)
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True)
        output = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", NETNS_SCRIPT, str(ROOT)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)
        if resolv.exists():
            resolv.unlink()
            resolv.parent.rmdir()
    result = json.loads(output)
    assert result["state"] == "dns_error"
    assert result["evidence"]["host"] == "mail.example.test"
    assert result["summary"].startswith("mail.example.test does not resolve")


# --- The whole path ---------------------------------------------------------------------

LAB = {
    "name": "Probe lab",
    "features": ["pem", "snmp"],
    "appliances": [{"hostname": "esa1", "c_address": "127.77.1.1", "p1_address": "127.77.1.2"}],
    "hosts": [
        {"role": "security_manager", "name": "fsm", "address": "127.77.2.1", "site": "hq"},
        {"role": "log_server", "name": "log", "address": "127.77.2.2"},
        {"role": "sql_server", "name": "sql", "address": "127.77.2.3"},
        {"role": "ldap", "name": "ldap", "address": "127.77.2.4"},
        {"role": "dns", "name": "dns", "address": "127.77.2.5"},
        {"role": "snmp_trap", "name": "nms", "address": "127.77.2.6"},
    ],
    "peer_networks": [
        {"role": "end_users", "name": "Branch users", "network": "127.77.9.0/24", "site": "branch"},
        {"role": "mail_senders", "name": "Internet", "network": "any"},
    ],
}


@pytest.fixture
def lab(transactional_db, listeners):
    """The lab deployment, with its services listening where its checklist says."""
    call_command("load_catalog", verbosity=0)
    user = make_member("alice", "Mail team")
    deployment = create_deployment(LAB)
    cert, key, pin = self_signed("fsm.example.test")
    decrypting_cert, decrypting_key, _ = self_signed("fsm.example.test", issuer_name="Corporate Inspection CA")
    listeners.tls(cert, key, "127.77.1.1", 6671)  # the appliance's SSL proxy
    listeners.tls(decrypting_cert, decrypting_key, "127.77.2.1", 9443)  # something decrypts on the way
    TlsPin.objects.create(deployment=deployment, host="127.77.2.1", port=9443, pin=pin, source="expected")
    listeners.smtp("127.77.1.2", 25, banner="220 ****************************")
    listeners.filtered("127.77.2.2", 50800)  # the log server's port drops
    listeners.open_tcp("127.77.2.3", 1433)
    listeners.sql_browser("127.77.2.3", 1434)
    listeners.ldap("127.77.2.4", 389)  # and nothing on 636: refused
    listeners.dns("127.77.2.5", 53)
    flush_broker()
    yield deployment, token_client(user)
    flush_broker()


def start_run(api, deployment: Deployment, **selection) -> int:
    response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", selection, format="json")
    assert response.status_code == 202, response.json()
    assert response.headers["Location"] == f"/api/probe-runs/{response.json()['id']}/"
    return response.json()["id"]


def by_requirement(body: dict) -> dict[str, dict]:
    return {result["requirement"]: result for result in body["results"]}


@needs_redis
@pytest.mark.integration
def test_a_run_goes_through_api_broker_worker_and_database(lab):
    deployment, api = lab
    worker = Worker(["default", "hq"])
    try:
        worker.wait_until_live()
        sites = {s["site"]: s for s in api.get("/api/probe-sites/").json()["sites"]}
        assert sites["default"]["live_worker"] and sites["hq"]["live_worker"]
        assert sites["branch"] == sites["branch"] | {"live_worker": False, "used_by_your_deployments": True}

        first = wait_for_run(api, start_run(api, deployment))
        # The certificate of the SSL proxy changes: something now answers in its place.
        TlsPin.objects.filter(host="127.77.1.1", port=6671).update(pin="sha256/" + "A" * 43 + "=")
        second = wait_for_run(
            api,
            start_run(api, deployment, items=[deployment.checklist.get(requirement__uid="fes.appliance.6671-tcp").pk]),
        )
    finally:
        worker.stop()

    assert first["status"] == "partly_done"
    assert first["progress"].items() >= {"done": 13, "total": 13}.items()
    results = by_requirement(first)
    assert {uid: r["state"] for uid, r in results.items()} == {
        "fes.appliance.9449-tcp.end-users": "not_probed",
        "fes.appliance.6643-tcp": "not_probed",
        "fes.appliance.6671-tcp": "open",
        "fes.appliance.25-tcp": "intercepted",
        "fes.off-appliance.9443-tcp": "intercepted",
        "fes.off-appliance.50800-tcp": "filtered",
        "fes.off-appliance.1433-tcp": "open",
        "fes.off-appliance.1434-udp": "open",
        "fes.off-appliance.389-tcp": "open",
        "fes.off-appliance.636-tcp": "refused",
        "fes.off-appliance.53-tcp": "open",
        "fes.off-appliance.53-udp": "open",
        "fes.off-appliance.162-udp": "unverifiable",
    }
    assert results["fes.appliance.6643-tcp"]["summary"] == "no live probe worker in site 'branch'"
    ssl_proxy = results["fes.appliance.6671-tcp"]
    assert (ssl_proxy["site"], ssl_proxy["address"]) == ("hq", "127.77.1.1")
    assert ssl_proxy["worker"].endswith(":hq") and ssl_proxy["latency_ms"] > 0
    assert ssl_proxy["evidence"]["issuer"] == "CN=fsm.example.test"
    assert results["fes.appliance.25-tcp"]["evidence"]["banner"] == ["220 ****************************"]
    assert results["fes.off-appliance.9443-tcp"]["evidence"]["issuer"] == "CN=Corporate Inspection CA"
    assert results["fes.off-appliance.50800-tcp"]["latency_ms"] is None
    # A rule that does not answer says its path, through the worker, the recorder and the API.
    for uid, port, verdict in [
        ("fes.off-appliance.50800-tcp", 50800, "filtered: no SYN-ACK within"),
        ("fes.off-appliance.636-tcp", 636, "refused (the SYN was answered with a reset, ECONNREFUSED), 1 try,"),
    ]:
        result = results[uid]
        source = result["evidence"]["source"]
        path = f"From site {result['site']} ({source}) to {result['address']} port {port}/tcp: {verdict}"
        assert result["evidence_words"][0].startswith(path), result["evidence_words"]
    assert results["fes.off-appliance.1434-udp"]["evidence"]["instances"][0]["tcp"] == "1433"
    assert results["fes.off-appliance.389-tcp"]["evidence"]["namingContexts"] == ["dc=example,dc=test"]
    assert results["fes.off-appliance.53-udp"]["evidence"]["transport"] == "udp"
    # The SSL proxy's key was trusted on first use.
    assert TlsPin.objects.get(host="127.77.1.1", port=6671).source == "first_seen"

    (again,) = second["results"]
    assert second["status"] == "done"
    assert (
        again.items() >= {"state": "intercepted", "previous_state": "open", "changed": True, "regression": True}.items()
    )

    checklist = api.get(f"/api/deployments/{deployment.pk}/checklist/").json()["items"]
    latest = {item["requirement"]: item["probe"] for item in checklist}
    assert latest["fes.appliance.6671-tcp"]["regression"] is True
    assert (
        latest["fes.off-appliance.1433-tcp"].items() >= {"state": "open", "run": first["id"], "changed": False}.items()
    )
    item = deployment.checklist.get(requirement__uid="fes.appliance.6671-tcp")
    history = api.get(f"/api/checklist-items/{item.pk}/").json()["probe_history"]
    assert [h["state"] for h in history] == ["intercepted", "open"]


# --- Safety, limits and deadlines (no worker needed) ------------------------------------


def test_a_target_outside_the_deployment_is_refused(transactional_db, listeners, full_document):
    call_command("load_catalog", verbosity=0)
    user = make_member("alice", "Mail team")
    ours = create_deployment(LAB)
    theirs_user = make_member("bob", "Other team")
    port = listeners.open_tcp("127.78.0.1", 1433)
    theirs = create_deployment(
        {
            "name": "Theirs",
            "appliances": [{"hostname": "x", "p1_address": "127.78.0.2"}],
            "hosts": [{"role": "sql_server", "name": "sql", "address": "127.78.0.1"}],
        },
        team="Other team",
    )
    foreign = theirs.checklist.get(requirement__uid="fes.off-appliance.1433-tcp")
    assert (foreign.destination, foreign.port_start) == ("127.78.0.1", port)

    api = token_client(user)
    response = api.post(f"/api/deployments/{ours.pk}/probe-runs/", {"items": [foreign.pk]}, format="json")
    assert response.status_code == 400
    assert f"Not items of this deployment's checklist: {foreign.pk}" in response.json()["items"][0]
    assert not ProbeRun.objects.exists()
    assert token_client(theirs_user).get(f"/api/deployments/{ours.pk}/probe-runs/").status_code == 404

    # Even a forged run row never becomes a check of another deployment's host: the central side
    # builds the site's checks, and a worker only ever sees those.
    run = ProbeRun.objects.create(
        deployment=ours, timeout=1, deadline="2100-01-01T00:00Z", total=1, pending={"default": [foreign.pk]}
    )
    checks, refused = run.checks("default")
    assert checks == [] and list(refused) == [foreign.pk]
    run.send("default")
    (forged,) = ProbeRun.objects.get(pk=run.pk).results()
    assert forged.state == "error" and forged.summary == "refused: not a rule of this deployment's checklist"


@pytest.fixture
def fake_live_site(db):
    """A heartbeat as a worker of site `default` sends it, with no worker behind it."""
    from django.utils import timezone

    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="ghost@nowhere", site="default", started=now, last_seen=now)


def test_a_run_whose_workers_never_come_ends_at_its_deadline(deployment, api, fake_live_site):
    with override_settings(PROBE_QUEUE_GRACE=0, PROBE_TIMEOUT=0.05, CELERY_VISIBILITY_TIMEOUT=0):
        run_id = start_run(api, deployment)
    assert ProbeRun.objects.get(pk=run_id).pending["default"]
    time.sleep(0.3)
    # Reading the run changes nothing (no GET changes state); beat's task closes it.
    assert api.get(f"/api/probe-runs/{run_id}/").json()["status"] in ("queued", "running")
    assert expire_overdue_runs() == 1
    body = api.get(f"/api/probe-runs/{run_id}/").json()
    assert body["status"] == "failed"
    reasons = {r["summary"] for r in body["results"]}
    assert "no worker of the site answered before the run's deadline" in reasons
    assert "no live probe worker in site 'hq'" in reasons  # the Security Manager's site


def test_a_run_can_be_cancelled(deployment, api, fake_live_site):
    run_id = start_run(api, deployment, status=["todo"])
    response = api.post(f"/api/probe-runs/{run_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    results = ProbeRun.objects.get(pk=run_id).results()
    assert {r.state for r in results} == {"not_probed"}
    assert any(r.summary == "cancelled" for r in results)


@override_settings(PROBE_RUNS_PER_MINUTE=2)
def test_starting_runs_is_rate_limited_per_team(deployment, api, other_api):
    start_run(api, deployment)
    start_run(api, deployment)
    response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {}, format="json")
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
    assert ProbeRun.objects.count() == 2
    # Another team has its own allowance.
    other = create_deployment({**LAB, "name": "Other lab"}, team="Other team")
    assert other_api.post(f"/api/deployments/{other.pk}/probe-runs/", {}, format="json").status_code == 202


def test_bad_selections_get_400(deployment, api):
    url = f"/api/deployments/{deployment.pk}/probe-runs/"
    assert api.post(url, {"items": ["x"]}, format="json").status_code == 400
    assert api.post(url, {"status": ["done"]}, format="json").status_code == 400
    response = api.post(url, {"status": ["verified"]}, format="json")
    assert response.json() == {"items": ["No checklist item matches this selection."]}
    assert not ProbeRun.objects.exists()


def test_anonymous_and_other_teams_cannot_see_runs(deployment, api, other_api):
    run_id = start_run(api, deployment)
    assert other_api.get(f"/api/probe-runs/{run_id}/").status_code == 404
    assert other_api.post(f"/api/probe-runs/{run_id}/cancel/").status_code == 404
    assert APIClient().get(f"/api/probe-runs/{run_id}/").status_code == 401
    assert APIClient().get("/api/probe-sites/").status_code == 401


def test_run_lists_take_the_same_queries_for_one_run_or_many(deployment, api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    start_run(api, deployment)
    counts = []
    for url in ["/api/probe-runs/", f"/api/deployments/{deployment.pk}/probe-runs/"]:
        with CaptureQueriesContext(connection) as one:
            assert api.get(url).json()["count"] == 1
        counts.append(len(one))
    start_run(api, deployment, status=["todo"])
    start_run(api, deployment, items=[deployment.checklist.first().pk])
    urls = ["/api/probe-runs/", f"/api/deployments/{deployment.pk}/probe-runs/"]
    for url, expected in zip(urls, counts, strict=True):
        with CaptureQueriesContext(connection) as three:
            body = api.get(url).json()
        assert body["count"] == 3 and len(three) == expected
        assert [run["progress"]["total"] for run in body["results"]] == [1, 81, 81]


def record_reported() -> None:
    """What the sites reported, recorded now, in this process (as the recorder does)."""
    reports_of = channel()
    while take(reports_of, 0.1):
        pass


@override_settings(CELERY_TASK_SOFT_TIME_LIMIT=2)  # a budget of 1.8 s
def test_a_task_stops_within_its_time_budget_and_says_so(transactional_db, listeners):
    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    deployment = create_deployment(
        {
            "name": "Slow",
            "appliances": [{"hostname": "esa", "p1_address": "127.80.0.1"}],
            "hosts": [{"role": "log_server", "name": "log", "address": "127.80.0.2"}],
        }
    )
    listeners.filtered("127.80.0.2", 50800)
    item = deployment.checklist.get(requirement__uid="fes.off-appliance.50800-tcp")
    run = ProbeRun.objects.create(
        deployment=deployment, timeout=3, deadline="2100-01-01T00:00Z", total=1, pending={"default": [item.pk]}
    )
    (check,), _ = run.checks("default")
    probe_site(run.pk, "default", [check], run.timeout)
    record_reported()
    run.refresh_from_db()
    (result,) = run.results()  # not "filtered": the 3 s probe was cut at 1.8 s
    assert (result.state, result.summary) == ("not_probed", "the probe task of site 'default' ran out of time")
    assert run.status == "failed"


def test_the_recorder_keeps_only_what_a_result_holds(deployment):
    """A faulty or compromised site's message cannot break the run's page or the database."""
    items = list(deployment.checklist.order_by("pk")[:5])
    run = ProbeRun.objects.create(
        deployment=deployment,
        timeout=1,
        deadline="2100-01-01T00:00Z",
        total=5,
        pending={"default": [i.pk for i in items]},
    )
    sent = {
        str(items[0].pk): {"state": "open", "address": "x" * 500, "summary": 7, "injected": "<script>"},
        str(items[1].pk): {"state": "pending"},
        str(items[2].pk): ["not", "a", "result"],
        str(items[3].pk): {"state": "open", "evidence": {"banner": ["220 mx\x00 ESMTP"], "ports": {"x": {}}}},
        str(items[4].pk): {"state": "intercepted", "evidence": {"banner": ["220 mx\x00 ESMTP"]}},
    }
    assert ProbeRun.record(run.pk, "w" * 1000, sent) == 5
    results = {r.item.pk: r for r in ProbeRun.objects.get(pk=run.pk).results()}
    assert (results[items[0].pk].state, len(results[items[0].pk].address)) == ("open", 64)
    assert results[items[1].pk].state == results[items[2].pk].state == "error"
    assert results[items[2].pk].summary == "the probe site sent a malformed result"
    # A NUL in a banner (PostgreSQL's JSON cannot hold it) and evidence of a shape no probe sends.
    assert results[items[3].pk].evidence == {"dropped": "evidence that could not be read"}
    assert results[items[4].pk].evidence == {"banner": ["220 mx ESMTP"]}
    assert all(isinstance(r.evidence_words, list) for r in results.values())


def test_a_runs_results_keep_their_rule_when_the_item_goes(deployment, api, full_document):
    """The rule behind a result is the one that was probed: after the deployment drops the host,
    the result still says which rule it was (item null), as the schema promises."""
    gone = deployment.checklist.filter(destination_name="nms").first()
    kept = deployment.checklist.exclude(destination_name="nms").first()
    run = recorded_run(deployment, [(gone, "refused"), (kept, "open")])
    identity = {"requirement": gone.requirement.uid, "source": gone.source, "destination": gone.destination}
    identity |= {"protocol": gone.protocol, "ports": str(gone.ports)}
    full_document["hosts"] = [host for host in full_document["hosts"] if host["name"] != "nms"]
    response = api.put(f"/api/deployments/{deployment.pk}/", {**full_document, "team": "Mail team"}, format="json")
    assert response.status_code == 200, response.content
    assert not deployment.checklist.filter(pk=gone.pk).exists()

    results = {result["state"]: result for result in api.get(f"/api/probe-runs/{run.pk}/").json()["results"]}
    assert results["refused"]["item"] is None
    assert {name: results["refused"][name] for name in identity} == identity
    assert results["open"]["item"] == kept.pk and results["open"]["destination"] == kept.destination


def test_make_runs_embedded_broker_carries_reports_as_files(transactional_db, tmp_path, settings):
    """Without Redis (make run), reports are files in a folder per site, read by the same recorder;
    a file that is not a report is dropped and recording goes on."""
    settings.REDIS_URL, settings.VAR_DIR = "", tmp_path
    reports_of = channel()
    assert isinstance(reports_of, FolderChannel)
    (tmp_path / "broker" / "reports" / "default").mkdir(parents=True)
    (tmp_path / "broker" / "reports" / "default" / "00000000000000000001-junk.json").write_text("{not json")
    reports_of.send("default", Kind.HEARTBEAT, {"worker": "w@host", "started": "2026-12-03T12:00:00+00:00"})
    while take(reports_of, 0):
        pass
    assert WorkerHeartbeat.objects.filter(site="default", worker="w@host").exists()
    assert not list((tmp_path / "broker" / "reports").glob("*/*"))  # each taken once
