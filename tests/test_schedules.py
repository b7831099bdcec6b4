"""Continuous verification: probe schedules, and beat starting each due run exactly once."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from ports.models import Deployment, Team
from probes.models import ProbeRun

from .conftest import create_deployment, make_member
from .probe_worker import ROOT, Worker, flush_broker, needs_redis
from .probe_worker import test_database_url as database_url
from .waiting import wait_until


def test_a_schedule_is_set_checked_and_read_back(deployment, api):
    url = f"/api/deployments/{deployment.pk}/"
    assert api.get(url).json()["probe_schedule"] == "" and deployment.next_probe_at is None  # the team's: off
    for body, field, message in [
        ({"probe_schedule": "cron"}, "probe_cron", "Give the cron expression of the schedule."),
        ({"probe_schedule": "cron", "probe_cron": "99 * * * *"}, "probe_cron", "Not a cron expression"),
        ({"probe_schedule": "cron", "probe_cron": "* * *"}, "probe_cron", "Give five fields"),
        ({"probe_schedule": "weekly"}, "probe_schedule", "is not a valid choice"),
    ]:
        response = api.patch(url, body, format="json")
        assert response.status_code == 400 and message in str(response.json()[field]), response.json()
    before = timezone.now()
    response = api.patch(url, {"probe_schedule": "hourly"}, format="json")
    assert response.status_code == 200 and response.json()["probe_schedule"] == "hourly"
    deployment.refresh_from_db()
    assert before + datetime.timedelta(minutes=59) < deployment.next_probe_at < before + datetime.timedelta(minutes=61)
    api.patch(url, {"probe_schedule": "cron", "probe_cron": "15 */4 * * *"}, format="json")
    deployment.refresh_from_db()
    assert deployment.next_probe_at.minute == 15 and deployment.next_probe_at.hour % 4 == 0
    api.patch(url, {"probe_schedule": "off"}, format="json")
    deployment.refresh_from_db()
    assert deployment.next_probe_at is None


def test_a_team_default_applies_where_a_deployment_sets_none(deployment):
    Team.objects.filter(pk=deployment.team_id).update(probe_schedule="daily")
    deployment = Deployment.objects.select_related("team").get(pk=deployment.pk)
    now = timezone.now()
    assert deployment.schedule() == ("daily", "") and deployment.next_probe(now) == now + datetime.timedelta(days=1)


def test_beat_starts_the_clock_of_a_team_default_turned_on(deployment, full_document):
    from probes.tasks import start_due_runs

    Team.objects.create(name="Quiet team")
    quiet = create_deployment({**full_document, "name": "Quiet"}, team="Quiet team")
    Team.objects.filter(pk=deployment.team_id).update(probe_schedule="daily")
    before = timezone.now()
    assert start_due_runs() == 0  # nothing was due yet: the clock starts now
    deployment.refresh_from_db()
    quiet.refresh_from_db()
    assert before + datetime.timedelta(hours=23) < deployment.next_probe_at < before + datetime.timedelta(hours=25)
    assert quiet.next_probe_at is None and not ProbeRun.objects.exists()


def test_a_due_run_is_claimed_once(deployment):
    due = timezone.now() - datetime.timedelta(seconds=5)
    Deployment.objects.filter(pk=deployment.pk).update(probe_schedule="hourly", next_probe_at=due)
    first, second = (Deployment.objects.select_related("team").get(pk=deployment.pk) for _ in range(2))
    now = timezone.now()
    assert first.claim_probe(now) is True
    assert second.claim_probe(now) is False  # read the same due time: someone else has it


@needs_redis
@pytest.mark.integration
def test_two_beats_start_each_due_run_exactly_once(transactional_db, full_document):
    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    due = create_deployment(full_document)
    later = create_deployment({**full_document, "name": "Later"})
    Deployment.objects.filter(pk=due.pk).update(
        probe_schedule="hourly", next_probe_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    Deployment.objects.filter(pk=later.pk).update(
        probe_schedule="hourly", next_probe_at=timezone.now() + datetime.timedelta(hours=1)
    )
    flush_broker()
    env = {"PROBE_SCHEDULE_TICK": "0.5"}
    workers = [Worker([], name=f"sched{n}", extra_queues=("celery",), **env) for n in range(2)]
    beats = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "--schedule", f"/tmp/beat-{os.getpid()}-{n}"],
            cwd=ROOT,
            env=os.environ | {"DATABASE_URL": database_url(), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for n in range(2)
    ]
    try:
        started = ProbeRun.objects.filter(deployment=due)
        wait_until(started.exists, 40, "no scheduled run started", interval=0.5)
        time.sleep(5)  # ten more ticks of each beat: none may start the run again
    finally:
        for beat in beats:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(15)
        for worker in workers:
            worker.stop()
    assert ProbeRun.objects.filter(deployment=due).count() == 1
    assert not ProbeRun.objects.filter(deployment=later).exists()
    due.refresh_from_db()
    assert due.next_probe_at > timezone.now() + datetime.timedelta(minutes=55)
