"""Celery tasks: probe a run's checks of one site, from a worker in that site (which holds no
database credentials), and record what it sends back, centrally."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
from collections.abc import Sequence

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from ports.choices import ProbeSchedule
from ports.models import Deployment

from .alerts import alert_silent_sites, deliver
from .choices import DeliveryStatus, ProbeState, RunStatus
from .engine import Check, CheckResult, Engine, Network
from .models import AlertDelivery, ProbeBatch, ProbeRun, WorkerHeartbeat, closed_flag
from .worker import TO_RECORDER

log = logging.getLogger(__name__)

# How often a site worker sends its results (and notices that the run was closed).
FLUSH_INTERVAL = 0.25
# At most this many results per message to the recorder.
BATCH_SIZE = 500


@shared_task(bind=True)
def probe_site(self, run_id: int, site: str, checks: list[dict], timeout: float) -> None:
    """Probe the checks (the run's items whose source sits in `site`), and send the results to
    the recorder in batches. Nothing here reads or writes the database.

    Delivered again if its worker dies: it probes everything again, and the recorder keeps only
    the first result of each item, so nothing is lost and nothing is duplicated.
    """
    # The Celery node (name@host) that probed, so that a redelivered run shows who finished it.
    worker = f"{self.request.hostname or socket.gethostname()}:{site}"
    engine = Engine(
        timeout=timeout,
        concurrency=settings.PROBE_CONCURRENCY,
        per_destination=settings.PROBE_PER_DESTINATION,
        allowed=allowed_networks(site),
    )
    try:
        asyncio.run(probe_and_send(run_id, site, [Check(**check) for check in checks], engine, worker))
    except SoftTimeLimitExceeded:
        # The recorder takes only what is still pending: naming every check is safe.
        send_results(run_id, worker, {}, [check["key"] for check in checks], ran_out(site))


def allowed_networks(site: str) -> tuple[Network, ...]:
    """The networks a probe site may reach (PROBE_ALLOWED_NETWORKS, the site worker's own setting)."""
    configured = settings.PROBE_ALLOWED_NETWORKS
    return tuple(ipaddress.ip_network(network) for network in configured.get(site, configured.get("*", [])))


def outcome(result: CheckResult) -> dict:
    return {
        "state": result.state,
        "summary": result.summary,
        "latency_ms": result.latency_ms,
        "address": result.address,
        "evidence": result.evidence,
    }


def ran_out(site: str) -> str:
    return f"the probe task of site {site!r} ran out of time"


def send_results(
    run_id: int, worker: str, results: dict[int, dict], unfinished: Sequence[int] = (), reason: str = ""
) -> None:
    """Hand results to the recorder's queue, at most BATCH_SIZE a message; the checks named
    `unfinished` (with the reason) go with the last one."""
    items = list(results.items())
    for start in range(0, max(len(items), 1), BATCH_SIZE):
        chunk, last = dict(items[start : start + BATCH_SIZE]), start + BATCH_SIZE >= len(items)
        if chunk or (last and unfinished):
            tail = (list(unfinished), reason) if last else ([], "")
            record_results.apply_async((run_id, worker, chunk, *tail), **TO_RECORDER)


async def probe_and_send(run_id: int, site: str, checks: list[Check], engine: Engine, worker: str) -> None:
    """Run the engine, sending results as they come (every FLUSH_INTERVAL), and stop when the run
    is closed (a flag on the broker). The last message names the checks not finished."""
    from portal.celery import flag_raised, flags

    loop = asyncio.get_running_loop()
    buffer: dict[int, dict] = {}
    sent: set[int] = set()

    def on_result(check: Check, result: CheckResult) -> None:
        buffer[check.key] = outcome(result)

    # Stop in time, before Celery's soft time limit would interrupt the loop at a random point.
    soft_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    budget_ends = loop.time() + soft_limit - min(5, soft_limit / 10)
    reason = f"the probe task of site {site!r} ended before this check"
    probing = asyncio.ensure_future(engine.run(checks, on_result))
    client = flags()
    try:
        while True:
            await asyncio.wait({probing}, timeout=FLUSH_INTERVAL)
            finished = probing.done()  # before this flush: then the flush holds every result
            batch = dict(buffer)
            buffer.clear()
            sent |= set(batch)
            if finished:
                probing.result()
                break
            await loop.run_in_executor(None, send_results, run_id, worker, batch)
            batch = {}
            if await loop.run_in_executor(None, flag_raised, client, closed_flag(run_id)):
                return  # closed (cancelled, past its deadline): the recorder takes nothing more
            if loop.time() > budget_ends:
                reason = ran_out(site)
                break
    finally:
        probing.cancel()
        if client is not None:
            client.close()
    unfinished = [check.key for check in checks if check.key not in sent]
    await loop.run_in_executor(None, send_results, run_id, worker, batch, unfinished, reason)


@shared_task(autoretry_for=(DatabaseError,), retry_backoff=True, retry_backoff_max=60, max_retries=30)
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


@shared_task(autoretry_for=(DatabaseError,), retry_backoff=True, retry_backoff_max=10, max_retries=5)
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
