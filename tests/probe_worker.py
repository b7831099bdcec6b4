"""A real Celery worker process for the integration tests, on the test database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from probes.models import WorkerHeartbeat
from probes.responders import free_port

from .waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (make test starts Redis)")


def test_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Worker:
    """`celery worker -Q probes.<site>,...` in its own process group, so it can be killed whole.

    A central worker (the default) comes with the recorder (`manage.py record`, a process of its
    own), with the database; a site worker (`central=False`) has no DATABASE_URL at all, only
    its broker.
    """

    def __init__(
        self,
        sites: list[str],
        name: str = "w1",
        extra_queues: tuple[str, ...] = (),
        central: bool = True,
        prefix: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.sites, self.name = sites, name
        self.log = Path(f"/tmp/probe-worker-{name}-{os.getpid()}.log")
        environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        if central:
            environment["DATABASE_URL"] = test_database_url()
        environment |= {"PROBE_HEARTBEAT_INTERVAL": "1", "PROBE_TIMEOUT": "1", **env}
        queues = ",".join([*(f"probes.{site}" for site in sites), *extra_queues])
        # A site's worker runs the site's own Celery app, which sets up no Django and loads no ORM.
        app = "portal" if central else "portal.probe_site"
        command = [*prefix, sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-n", f"{name}@%h"]
        command += ["--concurrency=1", "--without-gossip", "--without-mingle", "--loglevel=INFO"]
        if not central:  # as production runs a site's worker: no Celery heartbeat, no remote control
            command.append("--without-heartbeat")
            environment.setdefault("WORKER_REMOTE_CONTROL", "0")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.recorder = Recorder(name, **env) if central else None

    def tail(self, chars: int = 3000) -> str:
        """The end of the worker's log, for a failure's message."""
        return self.log.read_text()[-chars:]

    def wait_until_live(self, timeout: float = 30) -> None:
        def live() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.tail()}")
            beating = WorkerHeartbeat.objects.live().filter(worker__startswith=f"{self.name}@")
            return set(beating.values_list("site", flat=True)) >= set(self.sites)

        wait_until(live, timeout, lambda: f"worker not live in {timeout} s: {self.tail()}", interval=0.2)

    def wait_until_ready(self, timeout: float = 30) -> None:
        """For a worker of no site (no heartbeat): until it says it is ready."""

        def ready() -> bool:
            if "ready." in self.log.read_text():
                return True
            assert self.process.poll() is None, f"worker exited: {self.tail()}"
            return False

        wait_until(ready, timeout, self.tail, interval=0.2)

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool): no goodbye, no acknowledgement."""
        kill_group(self.process)
        if self.recorder:
            self.recorder.kill()

    def stop(self) -> None:
        stop_group(self.process)
        if self.recorder:
            self.recorder.stop()


def kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process and its children (its own session), SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            kill_group(process)


class Recorder:
    """`manage.py record`: the recorder, a process of its own (with the database)."""

    def __init__(self, name: str, **env: str) -> None:
        self.log = Path(f"/tmp/probe-recorder-{name}-{os.getpid()}.log")
        environment = {**os.environ, "DATABASE_URL": test_database_url(), "PROBE_HEARTBEAT_TIMEOUT": "5", **env}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "record"],
            cwd=ROOT,
            env=environment,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:]

    def kill(self) -> None:
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process)


def flush_broker() -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def wait_for_run(api, run_id: int, timeout: float = 60) -> dict:
    """The probe run as the API shows it once it has finished (a worker's part of the tests)."""
    url = f"/api/probe-runs/{run_id}/"

    def finished() -> dict | None:
        body = api.get(url).json()
        return None if body["status"] in ("queued", "running") else body

    return wait_until(
        finished, timeout, lambda: f"run not finished in {timeout} s: {api.get(url).json()}", interval=0.3
    )


class OwnRedis:
    """A Redis server of the test's own on loopback, to stop and start; the suite's stays up."""

    def __init__(self, address: str = "127.0.0.1", *options: str, user: str = "") -> None:
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="own-redis-")
        self.address, self.options = address, options
        self.url = f"redis://{user}@{address}:{self.port}/0" if user else f"redis://{address}:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", self.address, "--save", "", "--dir", self.folder]
        self.process = subprocess.Popen([*command, *self.options], stdout=subprocess.DEVNULL)
        wait_until(self.answers, 10, "redis did not start", interval=0.05)

    def answers(self) -> bool:
        try:
            return redis.Redis.from_url(self.url).ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@contextmanager
def portal_broker(url: str):
    """The portal's Celery app sends to `url` for a while (its connections made anew)."""
    from portal.celery import app

    def reconnect() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    # Read from Django's settings under their CELERY_ prefix, which wins over the plain name.
    before = app.conf["CELERY_BROKER_URL"]
    app.conf["CELERY_BROKER_URL"] = url
    reconnect()
    try:
        yield
    finally:
        app.conf["CELERY_BROKER_URL"] = before
        reconnect()
