"""Alerts reach a real SMTP server and a real HTTP receiver on loopback, from a real worker:
a rule that broke, an interception, a failed run, a silent site, a test alert; signed webhooks
retried with backoff, then marked failed in words; a flapping rule alerts once per window.
Deliveries run on their own queue, so a receiver that hangs delays no central work; a webhook
connects to the address that was checked, whatever a resolver answers afterwards."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import ssl
import tempfile
import threading
import time
from email import message_from_string, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from django.utils.html import strip_tags

from ports.deployments import save_deployment
from probes.alerts.raising import send_test_alert
from probes.models import Alert, AlertChannel, AlertDelivery, ProbeRun, WorkerHeartbeat
from probes.responders import free_port
from probes.tasks import check_silent_sites
from probes.webhooks import DeliveryError, post_webhook

from .conftest import make_member, recorded_run, token_client
from .probe_worker import Worker, flush_broker, needs_redis
from .waiting import wait_until

pytestmark = [needs_redis, pytest.mark.integration]

# The queue deliveries are routed to (portal/settings/celery.py): the alerts workers' own.
ALERTS_QUEUE = django_settings.CELERY_TASK_ROUTES["probes.tasks.deliver_alert"]["queue"]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first `failures` requests, then 200; keeps what it got. With `tls`,
    HTTPS, keeping the name each client asked for (SNI) in `server_names`."""

    def __init__(
        self, failures: int, address: tuple[str, int] = ("127.0.0.1", 0), tls: ssl.SSLContext | None = None
    ) -> None:
        self.failures, self.requests, self.server_names = failures, [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body, time.monotonic()))
                self.send_response(500 if len(receiver.requests) <= receiver.failures else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(address, Handler)
        if tls:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class Hanging:
    """A loopback TCP server that takes every connection and never answers; `held` counts them."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.hold, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        while not self.stopped.is_set():
            try:
                self.held.append(self.server.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for sock in [self.server, *self.held]:
            sock.close()


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
        [], name="alerts", extra_queues=("celery", ALERTS_QUEUE), EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port),
        ALERT_RETRY_BASE="0.3", ALERT_MAX_RETRIES="3",
    )  # fmt: skip
    try:
        worker.wait_until_ready()
        yield deployment, token_client(user), mailbox, receiver, worker
    finally:
        worker.stop()
        smtp.stop()
        receiver.close()


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


# --- Deliveries apart from the central work -------------------------------------------------

CHANGE_REQUEST = {"reference": "CHG-4711", "requester": "Alice Admin", "justification": "New mail gateways"}


@override_settings(EXPORT_SYNC_RULES=50)  # so that the change request is a worker's job
def test_a_hanging_receiver_delays_no_central_work(transactional_db, full_document):
    call_command("load_catalog", verbosity=0)
    user = make_member("alice", "Mail team")
    api = token_client(user)
    deployment = save_deployment({**full_document, "team": "Mail team"}).deployment
    hanging = Hanging()
    flush_broker()
    # Real workers as in docker-compose.yml: the central one, and the alerts' own. The receiver
    # hangs longer than this test waits for the job: a delivery cannot end (and free a shared
    # slot) before the job is done.
    central = Worker([], name="central", extra_queues=("celery",))
    alerts = Worker([], name="alerts", extra_queues=(ALERTS_QUEUE,), ALERT_WEBHOOK_TIMEOUT="30")
    try:
        central.wait_until_ready()
        alerts.wait_until_ready()
        for n in range(4):
            channel = AlertChannel.objects.create(
                team=deployment.team, name=f"Hook {n}", kind="webhook", target=f"http://127.0.0.1:{hanging.port}/"
            )
            send_test_alert(channel, user)
        wait_until(lambda: hanging.held, 30, alerts.tail)  # a delivery waits on the receiver

        started = time.monotonic()
        response = api.post(f"/api/deployments/{deployment.pk}/change-requests/", CHANGE_REQUEST, format="json")
        assert response.status_code == 202, response.json()
        url = response.headers["Location"]

        def finished() -> dict | None:
            job = api.get(url).json()
            return None if job["status"] in ("queued", "running") else job

        job = wait_until(finished, 25, lambda: f"{api.get(url).json()}\n{central.tail()}", interval=0.1)
        elapsed = time.monotonic() - started
        assert job["status"] == "done", job
        # Done while every delivery still waited: none was tried to its end, none freed a slot.
        deliveries = AlertDelivery.objects.filter(channel__team=deployment.team)
        assert list(deliveries.values_list("status", "attempts")) == [("pending", 0)] * 4
        assert hanging.held and elapsed < 25
        print(f"change request job done in {elapsed:.2f} s while {len(hanging.held)} deliveries hung")
        # The central worker never saw a delivery; the alerts worker took them.
        assert "Task probes.tasks.deliver_alert[" not in central.log.read_text()
        assert "Task probes.tasks.deliver_alert[" in alerts.log.read_text()
    finally:
        hanging.close()  # the hung deliveries end now (the receiver closed): the workers can stop
        central.stop()
        alerts.stop()


def test_the_alerts_queue_has_workers_in_production_and_in_make_run():
    services = yaml.safe_load((django_settings.BASE_DIR / "docker-compose.yml").read_text())["services"]
    command = services["alerts"]["command"]
    assert command[command.index("-Q") + 1] == ALERTS_QUEUE
    assert ALERTS_QUEUE not in services["worker"]["command"]  # the central worker is spared them
    run_dev = (django_settings.BASE_DIR / "scripts" / "run-dev").read_text()
    assert re.search(rf"-Q \S*\b{re.escape(ALERTS_QUEUE)}\b", run_dev)


def test_a_failing_webhook_is_tried_as_promised_then_marked_failed_in_words(transactional_db, settings):
    user = make_member("alice", "Mail team")
    team = user.teams.get()
    broken = Receiver(failures=1000)  # HTTP 500, always
    hanging = Hanging()
    refused = free_port()
    targets = {
        "Broken": f"http://127.0.0.1:{broken.server_address[1]}/",
        "Refused": f"http://127.0.0.1:{refused}/",
        "Hanging": f"http://127.0.0.1:{hanging.port}/",
    }
    flush_broker()
    # Four retries: more than Celery's default of three, which used to end the schedule early.
    retries = {"ALERT_RETRY_BASE": "0.2", "ALERT_MAX_RETRIES": "4", "ALERT_WEBHOOK_TIMEOUT": "1"}
    worker = Worker([], name="retries", extra_queues=(ALERTS_QUEUE,), **retries)
    try:
        worker.wait_until_ready()
        for name, target in targets.items():
            send_test_alert(AlertChannel.objects.create(team=team, name=name, kind="webhook", target=target), user)
        done = AlertDelivery.objects.exclude(status="pending")
        wait_until(lambda: done.count() == 3, 60, worker.tail, interval=0.2)
    finally:
        worker.stop()
        hanging.close()
        broken.close()
    outcome = {d.channel.name: (d.status, d.attempts, d.last_error) for d in AlertDelivery.objects.all()}
    assert outcome == {
        "Broken": ("failed", 5, "HTTP 500 from receiver"),
        "Refused": ("failed", 5, f"connection refused by 127.0.0.1:{refused}"),
        "Hanging": ("failed", 5, "timed out after 1 s"),
    }
    assert len(broken.requests) == 5 and len(hanging.held) == 5
    log = worker.log.read_text()
    assert all(f"Retry in {delay}s" in log for delay in ("0.2", "0.4", "0.8", "1.6")), log[-3000:]

    # The page promises what the worker did, and says how each delivery ended.
    settings.ALERT_RETRY_BASE, settings.ALERT_MAX_RETRIES = 0.2, 4
    browser = Client()
    browser.force_login(user)
    page = browser.get("/alerts/").content.decode()
    assert "tried again 4 times, after 0.2 s, 0.4 s, 0.8 s and 1.6 s (3 s in all), then marked failed" in page
    assert "Broken: failed after 5 tries: HTTP 500 from receiver" in strip_tags(page)
    assert "Refused: failed after 5 tries: connection refused by" in strip_tags(page)
    settings.ALERT_RETRY_BASE, settings.ALERT_MAX_RETRIES = 30, 5
    page = browser.get("/alerts/").content.decode()
    assert "tried again 5 times, after 30 s, 1 min, 2 min, 4 min and 8 min (15.5 min in all)" in page


# --- The address that was checked is the one connected to -----------------------------------

HOOKS = "hooks.example.test"


class Resolver:
    """socket.getaddrinfo for the test's names (DNS is the edge we stand in for): `answers`
    gives each name's next answers in turn, the last one repeated; other names resolve as ever."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
        self.answers, self.asked = answers, []
        self.real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: str, port: int, *args: object, **kwargs: object) -> list:
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        self.asked.append(host)
        addresses = self.answers[host][0] if len(self.answers[host]) == 1 else self.answers[host].pop(0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]


@pytest.fixture
def connections(monkeypatch):
    """Every address a socket of this test connects to; anything but loopback fails the test."""
    seen: list[str] = []
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: tuple) -> None:
        assert ipaddress.ip_address(address[0]).is_loopback, f"a connection to {address} was attempted"
        seen.append(address[0])
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return seen


def test_a_webhook_connects_to_the_address_it_checked(settings, monkeypatch, connections):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # 127.0.1.9: loopback, but not allowed
    checked = Receiver(failures=0)
    port = checked.server_address[1]
    forbidden = Receiver(failures=0, address=("127.0.1.9", port))
    # A rebinding resolver: the allowed address first, the forbidden one after.
    resolver = Resolver(monkeypatch, {HOOKS: [["127.0.0.1"], ["127.0.1.9"]]})
    try:
        post_webhook(f"http://{HOOKS}:{port}/hooks/portal?team=mail", "secret", {"kind": "test"})
        assert resolver.asked == [HOOKS]  # resolved once, for the check and the connection
        assert connections == ["127.0.0.1"] and not forbidden.requests
        headers, body, _ = checked.requests[0]
        assert headers["Host"] == f"{HOOKS}:{port}" and json.loads(body) == {"kind": "test"}

        # The next time, the name resolves to the forbidden address: refused before connecting.
        with pytest.raises(DeliveryError) as refused:
            post_webhook(f"http://{HOOKS}:{port}/hooks/portal", "secret", {"kind": "test"})
        assert str(refused.value) == (
            f"{HOOKS} resolves to 127.0.1.9, outside the networks webhooks may reach (ALERT_WEBHOOK_ALLOWED_NETWORKS)."
        )
        assert refused.value.final and connections == ["127.0.0.1"] and not forbidden.requests
    finally:
        checked.close()
        forbidden.close()


def test_a_name_with_any_forbidden_address_is_refused_with_its_reason(db, settings, monkeypatch, connections):
    settings.ALERT_WEBHOOK_ALLOWED_NETWORKS = ["0.0.0.0/0"]  # even an operator who opens everything
    Resolver(monkeypatch, {"metadata.example.test": [["127.0.0.1", "169.254.169.254"]]})
    with pytest.raises(DeliveryError) as refused:
        post_webhook("http://metadata.example.test/latest/", "secret", {"kind": "test"})
    assert str(refused.value) == (
        "metadata.example.test resolves to 169.254.169.254, a link-local address (cloud metadata services "
        "answer there): webhooks never go there."
    )
    assert refused.value.final and connections == []

    # A channel's owner hears the same when adding it.
    api = token_client(make_member("alice", "Mail team"))
    target = {"name": "Meta", "kind": "webhook", "target": "http://metadata.example.test/latest/"}
    response = api.post("/api/alert-channels/", target, format="json")
    assert response.status_code == 400 and "169.254.169.254, a link-local address" in str(response.json()["target"])
    assert connections == []


def certificate_authority(name: str) -> tuple[Path, ssl.SSLContext]:
    """A CA of the test's own (its certificate in a file, for SSL_CERT_FILE) and a server
    context with a certificate it issued for `name`."""
    now, day = datetime.datetime.now(datetime.UTC), datetime.timedelta(days=1)

    def issue(subject: str, key, issuer: x509.Name, signer, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day)
            .not_valid_after(now + day)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issue("Test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]), ca_key, True)
    leaf = issue(name, key, ca.subject, ca_key, False)
    folder = Path(tempfile.mkdtemp(prefix="webhook-tls-"))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "key.pem").write_bytes(private)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "key.pem")
    return folder / "ca.pem", server


def test_https_webhooks_check_the_certificate_of_the_name(settings, monkeypatch, connections):
    ca, server = certificate_authority(HOOKS)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the system's trust store, as OpenSSL reads it
    receiver = Receiver(failures=0, tls=server)
    port = receiver.server_address[1]
    Resolver(monkeypatch, {HOOKS: [["127.0.0.1"]], "other.example.test": [["127.0.0.1"]]})
    try:
        post_webhook(f"https://{HOOKS}:{port}/hook", "secret", {"kind": "test"})
        assert receiver.server_names == [HOOKS] and receiver.requests[0][0]["Host"] == f"{HOOKS}:{port}"

        # The same address under another name: its certificate is not that name's.
        with pytest.raises(DeliveryError) as refused:
            post_webhook(f"https://other.example.test:{port}/hook", "secret", {"kind": "test"})
        assert str(refused.value).startswith(f"the TLS certificate of other.example.test:{port} was not accepted:")
        assert "Hostname mismatch" in str(refused.value) and not refused.value.final
        assert len(receiver.requests) == 1 and connections == ["127.0.0.1", "127.0.0.1"]
    finally:
        receiver.close()
