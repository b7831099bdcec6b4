"""Health and metrics for the operators' tools: /healthz (the process answers), /readyz (what it
needs is there, or 503 naming what is missing) and /metrics (Prometheus text format).

None of them needs a login: they say nothing of any team's rules beyond counts, and /readyz says
what is down, never where it is (its host and port go to the log). Set
METRICS_TOKEN to require `Authorization: Bearer <token>` on /metrics.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from ports.models import CatalogVersion, ChecklistItem, Deployment
from probes.choices import FINISHED_STATUSES
from probes.models import AlertDelivery, ProbeRun, WorkerHeartbeat
from probes.reports import DROPPED_KEY, StreamChannel
from probes.worker import site_queue

log = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def missing() -> dict[str, str]:
    """What the portal needs and lacks now: {name: why}."""
    found: dict[str, str] = {}
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        log.warning("readyz: the database is not reachable", exc_info=True)
        return {"database": "not reachable"}  # nothing else can be asked without it
    unapplied = unapplied_migrations()
    if unapplied:
        found["migrations"] = f"{unapplied} not applied (manage.py migrate)"
    elif not CatalogVersion.objects.exists():
        found["catalog"] = "no catalog loaded (manage.py load_catalog)"
    if settings.REDIS_URL:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
        except redis.RedisError:
            log.warning("readyz: Redis is not reachable", exc_info=True)
            found["redis"] = "not reachable"
    return found


_migrated = False  # once all are applied, they stay applied for this process's code


def unapplied_migrations() -> int:
    """How many migrations this code has that the database lacks. Reading the migration files
    takes tens of milliseconds: once none is missing, the answer is kept."""
    global _migrated
    if _migrated:
        return 0
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    _migrated = not plan
    return len(plan)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    found = missing()
    return JsonResponse({"ready": not found, "missing": found}, status=503 if found else 200)


class PortalCollector:
    """The portal's state, read from the database (and the broker) at each scrape."""

    def collect(self) -> Iterator[Metric]:
        items = GaugeMetricFamily("portal_checklist_items", "Checklist items by status.", labels=["status"])
        for status, n in ChecklistItem.objects.order_by().values_list("status").annotate(n=Count("pk")):
            items.add_metric([status], n)
        yield items

        latest = GaugeMetricFamily(
            "portal_probe_latest_results", "Items by the state of their latest probe.", labels=["state"]
        )
        for state, n in ChecklistItem.objects.latest_state_counts().items():
            if state is not None:  # never probed
                latest.add_metric([state], n)
        yield latest

        runs = GaugeMetricFamily("portal_probe_runs", "Probe runs by status.", labels=["status"])
        for status, n in ProbeRun.objects.order_by().values_list("status").annotate(n=Count("pk")):
            runs.add_metric([status], n)
        yield runs

        took = ExpressionWrapper(F("finished") - F("started"), output_field=DurationField())
        finished = ProbeRun.objects.filter(status__in=FINISHED_STATUSES, started__isnull=False, finished__isnull=False)
        totals = finished.aggregate(count=Count("pk"), seconds=Sum(took))
        durations = SummaryMetricFamily("portal_probe_run_duration_seconds", "Time from a run's start to its end.")
        seconds = totals["seconds"].total_seconds() if totals["seconds"] else 0.0
        durations.add_metric([], count_value=totals["count"], sum_value=seconds)
        yield durations

        deliveries = GaugeMetricFamily(
            "portal_alert_deliveries", "Alert deliveries by status (sent, failed, pending).", labels=["status"]
        )
        for status, n in AlertDelivery.objects.order_by().values_list("status").annotate(n=Count("pk")):
            deliveries.add_metric([status], n)
        yield deliveries

        now = timezone.now()
        age = GaugeMetricFamily(
            "portal_site_heartbeat_age_seconds",
            "Seconds since a worker of the site was last heard from.",
            labels=["site"],
        )
        for site, seen in WorkerHeartbeat.objects.order_by().values_list("site").annotate(seen=Max("last_seen")):
            age.add_metric([site], (now - seen).total_seconds())
        yield age

        if settings.REDIS_URL:
            yield from self.broker()

        scraped = GaugeMetricFamily("portal_metrics_scraped_at_seconds", "When these figures were read.")
        scraped.add_metric([], time.time())
        yield scraped

    def broker(self) -> Iterator[Metric]:
        """What waits on the broker: tasks in each site's queue, reports for the recorder, and the
        reports it dropped (malformed: a faulty or hostile site)."""
        depth = GaugeMetricFamily("portal_queue_depth", "Tasks waiting in a site's probe queue.", labels=["site"])
        waiting = GaugeMetricFamily(
            "portal_reports_waiting", "Reports of a site waiting for the recorder.", labels=["site"]
        )
        dropped = CounterMetricFamily(
            "portal_reports_dropped", "Reports of a site that the recorder dropped as malformed.", labels=["site"]
        )
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        sites = set(WorkerHeartbeat.objects.values_list("site", flat=True)) | Deployment.objects.probed_from()
        try:
            for site in sorted(sites):
                depth.add_metric([site], client.llen(site_queue(site)))
            for site, count in sorted(StreamChannel(client).waiting().items()):
                waiting.add_metric([site], count)
            for site, count in sorted(client.hgetall(DROPPED_KEY).items()):
                dropped.add_metric([site.decode()], int(count))
        except redis.RedisError:
            return  # the broker is down: /readyz says so; the other figures still come
        yield from (depth, waiting, dropped)


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(PortalCollector())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponse("Send Authorization: Bearer <METRICS_TOKEN>.\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
