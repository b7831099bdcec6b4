"""/healthz, /readyz and /metrics as a load balancer, an orchestrator and Prometheus use them."""

from __future__ import annotations

import datetime

from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from probes.models import ProbeRun, WorkerHeartbeat
from probes.responders import free_port

from .conftest import recorded_run


def test_healthz_answers_whatever_else_is_down(db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.content == b"ok\n"


def test_readyz_names_what_is_missing(catalog, settings):
    assert settings.REDIS_URL, "make test gives a real Redis"
    ready = Client().get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "missing": {}}
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"  # nothing listens there: as a stopped Redis
    down = Client().get("/readyz")
    assert down.status_code == 503 and list(down.json()["missing"]) == ["redis"]
    assert down.json()["missing"]["redis"] == "not reachable"  # what is down, never where (no login here)
    assert str(port) not in down.content.decode()


def test_readyz_without_a_catalog_says_how_to_load_one(db):
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["missing"]["catalog"] == "no catalog loaded (manage.py load_catalog)"


def test_metrics_parse_as_prometheus_text_and_count_what_is_there(deployment, settings):
    items = list(deployment.checklist.all()[:3])
    now = timezone.now()
    run = recorded_run(deployment, list(zip(items, ["open", "refused", "open"], strict=True)))
    ProbeRun.objects.filter(pk=run.pk).update(started=now - datetime.timedelta(seconds=12), finished=now)
    WorkerHeartbeat.objects.create(
        worker="w1@dmz", site="dmz", started=now, last_seen=now - datetime.timedelta(seconds=40)
    )
    response = Client().get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    assert samples[("portal_checklist_items", (("status", "todo"),))] == 81
    assert samples[("portal_probe_latest_results", (("state", "open"),))] == 2
    assert samples[("portal_probe_latest_results", (("state", "refused"),))] == 1
    assert samples[("portal_probe_runs", (("status", "done"),))] == 1
    assert samples[("portal_probe_run_duration_seconds_count", ())] == 1
    assert samples[("portal_probe_run_duration_seconds_sum", ())] == 12.0
    assert 40 <= samples[("portal_site_heartbeat_age_seconds", (("site", "dmz"),))] < 60
    assert samples[("portal_queue_depth", (("site", "default"),))] == 0  # read from the real Redis

    settings.METRICS_TOKEN = "scrape-secret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
