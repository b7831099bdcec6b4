"""The broker or the database goes away: requests that cannot be done are answered a JSON 503 and
closed with the true reason (never where the service is); workers keep their heartbeat through
the outage and probe again when it is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from ports.deployments import save_deployment
from probes.models import ProbeRun, WorkerHeartbeat
from probes.responders import Listeners, free_port

from .conftest import make_member, token_client
from .probe_worker import ROOT, OwnRedis, Recorder, Worker, needs_redis, portal_broker, wait_for_run
from .waiting import wait_until

pytestmark = [needs_redis, pytest.mark.integration]


def test_requests_the_broker_cannot_take_are_503_and_closed_with_the_true_reason(transactional_db, full_document):
    call_command("load_catalog", verbosity=0)
    api = token_client(make_member("alice", "Mail team"))
    deployment = save_deployment({**full_document, "team": "Mail team"}).deployment
    now = timezone.now()
    for site in ("default", "hq", "office"):  # workers look live: the portal tries to send
        WorkerHeartbeat.objects.create(worker=f"w@{site}", site=site, started=now, last_seen=now)
    down = OwnRedis()  # never started: connections are refused
    with portal_broker(down.url):
        started = time.monotonic()
        response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {}, format="json")
        assert response.status_code == 503, response.content
        assert time.monotonic() - started < 30
        job = api.post(f"/api/deployments/{deployment.pk}/change-requests/", {}, format="json")
    assert "message broker cannot be reached" in response.json()["detail"]
    assert down.url.rsplit(":", 1)[-1].split("/")[0] not in response.content.decode()  # never where it is
    run = ProbeRun.objects.get()
    assert run.status == "failed" and run.finished is not None
    reasons = {result.summary for result in run.results()}
    assert all("message broker cannot be reached" in reason for reason in reasons), reasons
    assert not any("no worker" in reason for reason in reasons)  # never a reason that is not true
    assert job.status_code == 503 and "message broker cannot be reached" in job.json()["detail"]
    assert deployment.change_request_jobs.get().status == "failed"


@pytest.fixture
def outage_lab(transactional_db):
    call_command("load_catalog", verbosity=0)
    listeners = Listeners()
    port = listeners.open_tcp("127.0.66.1", 6671)
    api = token_client(make_member("alice", "Mail team"))
    document = {
        "team": "Mail team",
        "name": "Outage lab",
        "features": [],
        "appliances": [{"hostname": "esa", "c_address": "127.0.66.1", "site": "outage"}],
        "hosts": [{"role": "security_manager", "name": "fsm", "address": "127.0.66.2", "site": "outage"}],
    }
    deployment = save_deployment(document).deployment
    yield api, deployment, port, listeners
    listeners.close()


def test_a_site_worker_is_heard_again_after_broker_outages_and_probes_again(outage_lab, settings):
    api, deployment, _, _ = outage_lab
    settings.PROBE_HEARTBEAT_TIMEOUT = 5  # outages below last longer than the heartbeat timeout
    own = OwnRedis()
    own.start()
    worker = Worker(["outage"], name="outage", REDIS_URL=own.url, PROBE_HEARTBEAT_TIMEOUT="5")
    try:
        worker.wait_until_live()
        for seconds in (2, 12, 60):
            own.stop()
            time.sleep(seconds)
            # Heartbeats travel through the broker: while it is away, the site is truly unheard.
            if seconds > 5:
                assert "outage" not in WorkerHeartbeat.objects.live_sites(), f"live through a {seconds} s outage"
            beat = WorkerHeartbeat.objects.get(site="outage").last_seen
            own.start()
            heard = WorkerHeartbeat.objects.filter(site="outage", last_seen__gt=beat)
            wait_until(heard.exists, 15, f"not heard again after a {seconds} s outage", interval=0.3)
            with portal_broker(own.url):
                response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {}, format="json")
            assert response.status_code == 202, response.content
            body = wait_for_run(api, response.json()["id"], timeout=60)
            assert body["status"] == "done", (seconds, body)  # the worker consumes again after the outage
    finally:
        worker.stop()
        own.stop()


def states_of(run: dict) -> dict[int, str]:
    """Each item's state, as a finished run's detail shows it."""
    return {result["item"]: result["state"] for result in run["results"]}


@pytest.mark.parametrize("seconds", [15, 60])
def test_a_run_that_loses_its_broker_ends_with_every_items_true_state(outage_lab, full_document, settings, seconds):
    """The broker goes away while the site's worker probes (Redis with its append-only file, as
    production keeps it): the results probed meanwhile wait on the site and are recorded when it is
    back, the run ends with the states a run without the outage finds, and the worker takes the
    next run."""
    api, _, _, listeners = outage_lab
    document = {**full_document, "team": "Mail team", "name": "Outage during a run", "peer_networks": []}
    for part in (*document["appliances"], *document["hosts"]):
        part["site"] = "outage"
    deployment = save_deployment(document).deployment
    fsm_ports = deployment.checklist.filter(destination="127.0.4.1", protocol="tcp").values_list("port_start")
    for (port,) in set(fsm_ports):
        listeners.filtered("127.0.4.1", port)  # 4 s each: the outage starts meanwhile
    settings.PROBE_HEARTBEAT_TIMEOUT = 5
    own = OwnRedis("127.0.0.1", "--appendonly", "yes", "--appendfsync", "always")
    own.start()
    # A site's worker as production runs it; its task has 18 s: a 60 s outage outlasts it, so its
    # acknowledgement fails while the broker is away (the wedge probes.worker.Consuming undoes).
    site = {"BROKER_UNACKED_KEY": "unacked.outage", "CELERY_VISIBILITY_TIMEOUT": "30", "PROBE_TIMEOUT": "4"}
    worker = Worker(["outage"], name="outage", central=False, REDIS_URL=own.url, **site)
    recorder = Recorder("outage", REDIS_URL=own.url)
    try:
        worker.wait_until_live()

        def start_run() -> int:
            with portal_broker(own.url):
                response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {}, format="json")
            assert response.status_code == 202, response.content
            return response.json()["id"]

        calm = wait_for_run(api, start_run(), timeout=60)
        assert calm["status"] == "done", calm
        expected = states_of(calm)
        assert {"refused", "filtered"} <= set(expected.values()) and len(expected) > 10, expected

        run_id = start_run()
        run = ProbeRun.objects.filter(pk=run_id)
        wait_until(lambda: run.get().done > 0, 30, worker.tail, interval=0.1)  # probing: the first results are in
        assert run.get().pending, "the run ended before the outage: nothing was tested"
        own.stop()
        time.sleep(seconds)
        own.start()
        body = wait_for_run(api, run_id, timeout=120)
        assert body["status"] == "done", (body, worker.tail())
        assert states_of(body) == expected  # every item's true state: none lost, none invented

        worker.wait_until_live()  # heard again (a run started before is honestly "no live worker")
        again = wait_for_run(api, start_run(), timeout=60)  # the worker consumes its queue again
        diff = {
            r["item"]: (r["state"], r["summary"]) for r in again["results"] if expected.get(r["item"]) != r["state"]
        }
        calm_of = {r["item"]: (r["state"], r["summary"]) for r in calm["results"] if r["item"] in diff}
        assert again["status"] == "done" and states_of(again) == expected, (diff, calm_of)
    finally:
        worker.stop()
        recorder.stop()
        own.stop()


class OwnPostgres:
    """A PostgreSQL cluster of the test's own on loopback, to stop and start; the suite's stays up."""

    def __init__(self) -> None:
        import glob

        self.bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.folder = tempfile.mkdtemp(prefix="outage-pg-")
        os.chmod(self.folder, 0o777)
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/portal"
        self.as_postgres(f"{self.bin}/initdb", "-D", f"{self.folder}/data", "--auth=trust", "-U", "postgres")

    def as_postgres(self, *command: str, check: bool = True) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], cwd=self.folder, check=check, capture_output=True)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self.as_postgres(f"{self.bin}/pg_ctl", "-w", "-D", f"{self.folder}/data", "-o", options, "-l",
                         f"{self.folder}/log", "start")  # fmt: skip

    def stop(self, check: bool = True) -> None:
        self.as_postgres(f"{self.bin}/pg_ctl", "-D", f"{self.folder}/data", "-m", "immediate", "stop", check=check)

    def manage(self, *command: str) -> str:
        """A manage.py command on this cluster's database; what it printed."""
        ran = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": self.url}, capture_output=True, text=True,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        return ran.stdout

    def create_portal(self) -> None:
        """The portal's database on this cluster, migrated."""
        self.as_postgres(f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "portal")
        self.manage("migrate", "--noinput", "-v0")

    def remove(self) -> None:
        self.stop(check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def last_seen(self, site: str) -> object:
        import psycopg2

        with psycopg2.connect(self.url) as connection, connection.cursor() as cursor:
            cursor.execute("select max(last_seen) from probes_workerheartbeat where site = %s", [site])
            return cursor.fetchone()[0]


def test_the_recorder_takes_heartbeats_again_after_a_database_outage(transactional_db):
    own = OwnPostgres()
    own.start()
    worker = None
    try:
        own.create_portal()
        worker = Worker(["dbdown"], name="dbdown", DATABASE_URL=own.url)
        wait_until(lambda: own.last_seen("dbdown") is not None, 30, lambda: worker.tail(2000), interval=0.3)
        own.stop()
        time.sleep(12)  # longer than the heartbeat timeout of the suite's settings (5 s there)
        own.start()
        beat = own.last_seen("dbdown")
        wait_until(
            lambda: own.last_seen("dbdown") != beat, 15, "no heartbeat after the database came back", interval=0.3
        )
    finally:
        if worker is not None:
            worker.stop()
        own.remove()


CREATE_TOKEN = (
    "from django.contrib.auth.models import User; from ports.models import ApiToken; "
    "print(ApiToken.issue(User.objects.create(username='ops'), 'Outage test')[1])"
)


def test_the_api_answers_json_503_while_the_database_is_down_and_says_not_where(transactional_db):
    own = OwnPostgres()
    own.start()
    server = None
    try:
        own.create_portal()
        token = own.manage("shell", "-v0", "-c", CREATE_TOKEN).strip()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": own.url, "DJANGO_DEBUG": "0"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}
        wait_until(lambda: answers(f"{base}/healthz"), 30, "the server did not start")
        assert requests.get(f"{base}/api/deployments/", headers=headers, timeout=10).status_code == 200
        own.stop()
        down = requests.get(f"{base}/api/deployments/", headers=headers, timeout=10)
        assert down.status_code == 503 and down.headers["Content-Type"] == "application/json", down.text
        assert "database is not reachable" in down.json()["detail"] and str(own.port) not in down.text
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["missing"] == {"database": "not reachable"}
        own.start()
        wait_until(
            lambda: requests.get(f"{base}/api/deployments/", headers=headers, timeout=10).ok,
            15,
            "the API did not answer again after the database came back",
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        own.remove()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
