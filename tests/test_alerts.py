"""Alerts reach a real SMTP server and a real HTTP receiver on loopback, from a real worker:
a rule that broke, an interception, a failed run, a silent site, a test alert; signed webhooks
retried with backoff; a flapping rule alerts once per window."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import threading
import time
from email import message_from_string, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from ports.deployments import save_deployment
from probes.models import Alert, AlertDelivery, ProbeRun, WorkerHeartbeat
from probes.responders import free_port
from probes.tasks import check_silent_sites

from .conftest import make_member, recorded_run, token_client
from .probe_worker import Worker, flush_broker, needs_redis
from .waiting import wait_until

pytestmark = [needs_redis, pytest.mark.integration]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first `failures` requests, then 200; keeps what it got."""

    def __init__(self, failures: int) -> None:
        self.failures, self.requests = failures, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body, time.monotonic()))
                self.send_response(500 if len(receiver.requests) <= receiver.failures else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def alert_lab(transactional_db, full_document):
    call_command("load_catalog", verbosity=0)
    user = make_member("alice", "Mail team")
    deployment = save_deployment({**full_document, "team": "Mail team"}).deployment
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    receiver = Receiver(failures=4)
    flush_broker()
    worker = Worker(
        [], name="alerts", extra_queues=("celery",), EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port),
        ALERT_RETRY_BASE="0.3", ALERT_MAX_RETRIES="3",
    )  # fmt: skip
    try:
        worker.wait_until_ready()
        yield deployment, token_client(user), mailbox, receiver, worker
    finally:
        worker.stop()
        smtp.stop()
        receiver.shutdown()
        receiver.server_close()


def test_alerts_reach_email_and_signed_webhooks_once_per_change(alert_lab, settings):
    deployment, api, mailbox, receiver, worker = alert_lab
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/portal"

    # Bad channels are refused, and nothing is kept.
    bad = [
        {"name": "x", "kind": "email", "target": "not an address"},
        {"name": "x", "kind": "webhook", "target": "ftp://127.0.0.1/"},
        {"name": "x", "kind": "webhook", "target": "http://192.0.2.10/hook"},  # outside the allowed networks
        {"name": "x", "kind": "pager", "target": "123"},
        {"name": "x", "kind": "webhook", "target": "http://127.0.0.1:99999/hook"},  # a port out of range
        {"name": "x", "kind": "webhook", "target": "http://127.0.0.1:0/hook"},  # port 0 is no port
    ]
    for body, field in zip(bad, ["target", "target", "target", "kind", "target", "target"], strict=True):
        response = api.post("/api/alert-channels/", body, format="json")
        assert response.status_code == 400 and list(response.json()) == [field], (body, response.json())
    refused = api.post("/api/alert-channels/", bad[2], format="json").json()
    assert "outside the networks" in str(refused.get("target")), refused
    assert not api.get("/api/alert-channels/").json()["results"]

    email = api.post("/api/alert-channels/", {"name": "Ops", "kind": "email", "target": "ops@example.test"})
    hook = api.post("/api/alert-channels/", {"name": "Chat", "kind": "webhook", "target": url}, format="json")
    assert email.status_code == hook.status_code == 201, (email.json(), hook.json())
    secret = hook.json()["secret"]
    assert len(secret) == 64

    # A rule that was open stops working: one alert, by email and webhook.
    item = deployment.checklist.order_by("pk").first()
    other = deployment.checklist.order_by("pk")[1]
    recorded_run(deployment, [(item, "open"), (other, "open")])
    assert not Alert.objects.exists()  # the first result is no change that matters
    recorded_run(deployment, [(item, "filtered"), (other, "intercepted")])
    assert Alert.objects.filter(kind="regression").count() == 1
    assert Alert.objects.filter(kind="interception").count() == 1

    wait_until(lambda: len(mailbox.messages) >= 2, 30, worker.tail)
    subjects = sorted(
        str(message_from_string(content, policy=policy.default)["Subject"]) for _, content in mailbox.messages
    )
    assert subjects[0].startswith(f"[portal] {deployment.name}: rule {item.number}: ")
    assert any(s.endswith("is filtered (was open)") for s in subjects), subjects
    assert all(to == ["ops@example.test"] for to, _ in mailbox.messages)

    # The webhook failed four times (HTTP 500): each alert twice, then it took both, each signed
    # with the channel's secret.
    sent = AlertDelivery.objects.filter(channel__kind="webhook", status="sent")
    wait_until(lambda: sent.count() == 2, 30, worker.tail)
    assert len(receiver.requests) == 6
    for headers, body, _ in receiver.requests:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Portal-Signature"], expected)
        assert headers["Content-Type"] == "application/json"
    kinds = {json.loads(body)["kind"] for _, body, _ in receiver.requests}
    assert kinds == {"regression", "interception"}
    tries = sorted(AlertDelivery.objects.filter(channel__kind="webhook").values_list("attempts", flat=True))
    assert tries == [3, 3]
    # Backoff: each try waited twice as long as the one before (ALERT_RETRY_BASE 0.3 s).
    log = worker.log.read_text()
    assert "Retry in 0.3s" in log and "Retry in 0.6s" in log, log[-3000:]

    # The rule flaps: open again, broken again, within the window: no second alert.
    recorded_run(deployment, [(item, "open")])
    recorded_run(deployment, [(item, "refused")])
    assert Alert.objects.filter(kind="regression").count() == 1
    # After the window, the next break alerts again.
    settings.ALERT_FLAP_WINDOW = 0
    recorded_run(deployment, [(item, "open")])
    recorded_run(deployment, [(item, "filtered")])
    assert Alert.objects.filter(kind="regression").count() == 2

    # A firewall drops several rules at once: one alert lists them all.
    several = list(deployment.checklist.order_by("pk")[2:5])
    recorded_run(deployment, [(i, "open") for i in several])
    recorded_run(deployment, [(i, "filtered") for i in several])
    grouped = Alert.objects.filter(kind="regression").first()
    assert grouped.subject == f"{deployment.name}: 3 rules stopped working"
    assert [change["item"] for change in grouped.details["changes"]] == [i.pk for i in several]

    # The alerts read back from the API, with their deliveries.
    listed = api.get("/api/alerts/").json()["results"]
    assert listed[-1]["deliveries"] and {d["status"] for d in listed[-1]["deliveries"]} == {"sent"}


def test_failed_runs_silent_sites_and_test_alerts(alert_lab):
    deployment, api, _, receiver, worker = alert_lab
    receiver.failures = 0
    url = f"http://127.0.0.1:{receiver.server_address[1]}/"
    hook = api.post("/api/alert-channels/", {"name": "Chat", "kind": "webhook", "target": url}, format="json").json()

    # A test alert, to that channel only.
    response = api.post(f"/api/alert-channels/{hook['id']}/test/")
    assert response.status_code == 202 and response.json()["kind"] == "test"
    wait_until(lambda: len(receiver.requests) == 1, 30, worker.tail)

    # A run whose sites have no live worker fails: an alert says so, with the reason.
    run = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {}, format="json").json()
    assert ProbeRun.objects.get(pk=run["id"]).status == "failed"
    failed = Alert.objects.get(kind="run_failed")
    assert "no live probe worker in site 'hq'" in failed.body

    # A site whose worker went silent: one alert per silence, not one per check.
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="w@hq", site="hq", started=now, last_seen=now - datetime.timedelta(hours=1))
    assert check_silent_sites() == 1
    assert check_silent_sites() == 0
    assert "Probe site 'hq' has had no live worker for 60 minutes" in Alert.objects.get(kind="site_silent").subject
    wait_until(lambda: len(receiver.requests) == 3, 30, worker.tail)

    # Another team sees none of it.
    other = token_client(make_member("bob", "Other team"))
    assert other.get("/api/alerts/").json()["results"] == []
    assert other.post(f"/api/alert-channels/{hook['id']}/test/").status_code == 404

    # The metrics count the deliveries.
    wait_until(lambda: AlertDelivery.objects.filter(status="sent").count() == 3, 30, worker.tail)
    text = Client().get("/metrics").content.decode()
    assert 'portal_alert_deliveries{status="sent"} 3.0' in text
