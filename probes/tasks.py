"""The central workers' tasks: record what the probe sites send back (results and heartbeats, on the
recorder's queue), deliver alerts, and beat's schedule. The sites' own task is probing.probe_site."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from ports.choices import ProbeSchedule
from ports.models import Deployment

from .alerts.delivery import deliver
from .alerts.raising import alert_silent_sites
from .choices import DeliveryStatus, ProbeState, RunStatus
from .models import AlertDelivery, ProbeBatch, ProbeRun, WorkerHeartbeat
from .worker import RECORD_HEARTBEAT, RECORD_RESULTS

log = logging.getLogger(__name__)


@shared_task(
    name=RECORD_RESULTS, autoretry_for=(DatabaseError,), retry_backoff=True, retry_backoff_max=60, max_retries=30
)
def record_results(
    run_id: int, worker: str, outcomes: dict[str, dict], unfinished: Sequence[int] = (), reason: str = ""
) -> int:
    """The recorder, on a central worker: write a batch a site worker sent (ProbeRun.record).
    A database outage is waited out with retries rather than losing the batch."""
    written = dict(outcomes)
    gone = {"state": ProbeState.NOT_PROBED, "summary": reason, "evidence": {"reason": reason}}
    for item_id in unfinished:
        written.setdefault(str(item_id), gone)
    return ProbeRun.record(run_id, worker, written)


@shared_task(
    name=RECORD_HEARTBEAT, autoretry_for=(DatabaseError,), retry_backoff=True, retry_backoff_max=10, max_retries=5
)
def record_heartbeat(site: str, worker: str, started: str, leaving: bool = False) -> None:
    """The recorder's side of a site worker's heartbeat (probes.worker.Heartbeat)."""
    if leaving:
        WorkerHeartbeat.leave(site, worker)
    else:
        WorkerHeartbeat.record(site, worker, datetime.datetime.fromisoformat(started))


@shared_task(bind=True)
def deliver_alert(self, delivery_id: int) -> None:
    """Send one alert to one channel; on failure try again after ALERT_RETRY_BASE seconds, doubled
    each time, ALERT_MAX_RETRIES times, then mark it failed."""
    delivery = AlertDelivery.objects.select_related("alert__team", "channel").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return
    try:
        deliver(delivery)
    except Exception as exc:  # whatever it was, the delivery says so rather than stay pending
        final = getattr(exc, "final", False) or self.request.retries >= settings.ALERT_MAX_RETRIES
        delivery.fail(str(exc), final=final)
        if not final:
            raise self.retry(countdown=settings.ALERT_RETRY_BASE * 2**self.request.retries, max_retries=None) from exc
        return
    AlertDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.SENT, sent_at=timezone.now(), attempts=F("attempts") + 1
    )


@shared_task
def check_silent_sites() -> int:
    """Beat, every minute: alerts for probe sites without a live worker (alerts.alert_silent_sites)."""
    return alert_silent_sites()


@shared_task
def purge_old_results() -> int:
    """Delete the raw results older than PROBE_RESULT_RETENTION_DAYS (beat, hourly): the items'
    current state and their state changes stay. Returns how many batches went."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.PROBE_RESULT_RETENTION_DAYS)
    deleted, _ = ProbeBatch.objects.filter(received__lt=cutoff).delete()
    return deleted


@shared_task
def expire_overdue_runs() -> int:
    """Close runs past their deadline (beat, every 15 s): their pending items were not probed."""
    overdue = ProbeRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING], deadline__lte=timezone.now())
    for run in overdue:
        run.expire_if_overdue()
    return len(overdue)


@shared_task
def start_due_runs() -> int:
    """Continuous verification, run by beat: start the probe run of every deployment whose
    schedule has come. Each is claimed with a conditional update first (Deployment.claim_probe),
    so that two beats never start the same run twice. Returns how many runs were started."""
    now = timezone.now()
    # Schedules turned on since (a team's default): their clock starts now.
    # Only those whose schedule in force is on: the others (most, at scale) are not read every tick.
    on = [ProbeSchedule.HOURLY, ProbeSchedule.DAILY, ProbeSchedule.CRON]
    waiting = Deployment.objects.filter(next_probe_at__isnull=True).select_related("team")
    for deployment in waiting.filter(Q(probe_schedule__in=on) | Q(probe_schedule="", team__probe_schedule__in=on)):
        if (due := deployment.next_probe(now)) is not None:
            Deployment.objects.filter(pk=deployment.pk, next_probe_at__isnull=True).update(next_probe_at=due)
    started = 0
    for deployment in (
        Deployment.objects.filter(next_probe_at__lte=now).select_related("team").order_by("next_probe_at")
    ):
        if not deployment.claim_probe(now):
            continue  # another beat took it
        items = list(deployment.checklist.only(*ProbeRun.ITEM_FIELDS))
        if not items:
            continue
        try:
            ProbeRun.start(deployment, None, items, limited=False)
        except Exception:  # one deployment's failure must not stop the others' runs
            log.exception("scheduled probe run of deployment %s could not start", deployment.pk)
            continue
        started += 1
    return started
