"""The broker goes away: requests it cannot take are answered 503 and closed with the true
reason; workers keep their heartbeat through the outage and probe again when it is back."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from ports.deployments import save_deployment
from probes.models import ProbeRun, WorkerHeartbeat
from probes.responders import Listeners, free_port

from .conftest import make_member, token_client
from .probe_worker import ROOT, OwnRedis, Worker, needs_redis, portal_broker, wait_for_run
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
    yield api, deployment, port
    listeners.close()


def test_a_site_worker_is_heard_again_after_broker_outages_and_probes_again(outage_lab, settings):
    api, deployment, _ = outage_lab
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

    def last_seen(self, site: str) -> object:
        import psycopg2

        with psycopg2.connect(self.url) as connection, connection.cursor() as cursor:
            cursor.execute("select max(last_seen) from probes_workerheartbeat where site = %s", [site])
            return cursor.fetchone()[0]


def test_the_recorder_takes_heartbeats_again_after_a_database_outage(transactional_db):
    import shutil
    import sys

    own = OwnPostgres()
    own.start()
    worker = None
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{own.bin}/createdb", "-h", "127.0.0.1", "-p",
                        str(own.port), "-U", "postgres", "portal"], check=True, cwd=own.folder)  # fmt: skip
        environment = {"DATABASE_URL": own.url, "PATH": "/usr/bin:/bin"}
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT, env={**os.environ, **environment}, capture_output=True, text=True,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr
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
        own.stop(check=False)
        shutil.rmtree(own.folder, ignore_errors=True)
