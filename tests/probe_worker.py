"""A real Celery worker process for the integration tests, on the test database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from probes.models import WorkerHeartbeat

ROOT = Path(__file__).resolve().parent.parent
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (make test starts Redis)")


def test_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Worker:
    """`celery worker -Q probes.<site>,...` in its own process group, so it can be killed whole."""

    def __init__(self, sites: list[str], name: str = "w1", extra_queues: tuple[str, ...] = (), **env: str) -> None:
        self.sites, self.name = sites, name
        self.log = Path(f"/tmp/probe-worker-{name}-{os.getpid()}.log")
        environment = os.environ | {
            "DATABASE_URL": test_database_url(),
            "PROBE_HEARTBEAT_INTERVAL": "1",
            "PROBE_TIMEOUT": "1",
            **env,
        }
        queues = ",".join([*(f"probes.{site}" for site in sites), *extra_queues])
        command = [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", queues, "-n", f"{name}@%h"]
        command += ["--concurrency=1", "--without-gossip", "--without-mingle", "--loglevel=INFO"]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_live(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            live = WorkerHeartbeat.objects.live().filter(worker__startswith=f"{self.name}@")
            if set(live.values_list("site", flat=True)) >= set(self.sites):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not live in {timeout} s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool): no goodbye, no acknowledgement."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def flush_broker() -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
