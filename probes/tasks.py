"""Celery tasks: probe a run's items of one site, from a worker in that site."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from ports.choices import ProbeSchedule
from ports.models import Deployment

from .choices import PinSource, ProbeState, RunStatus
from .engine import Check, CheckResult, Engine, Network
from .models import ProbeResult, ProbeRun, TlsPin

log = logging.getLogger(__name__)

# How often results are written while a run is probed (and a cancel is noticed).
FLUSH_INTERVAL = 0.25


@shared_task(bind=True)
def probe_site(self, run_id: int, site: str) -> None:
    """Probe the run's pending items whose source sits in `site`.

    Delivered again if its worker dies: only items still pending are probed, and a
    result is written once, so nothing is lost and nothing is duplicated.
    """
    run = ProbeRun.objects.select_related("deployment").filter(pk=run_id).first()
    if run is None or run.is_finished:
        return
    run.mark_running()
    pending = list(
        run.results.filter(state=ProbeState.PENDING, site=site).select_related("item__requirement").order_by("item")
    )
    checks, refused = build_checks(run, pending)
    # The Celery node (name@host) that probed, so that a redelivered run shows who finished it.
    worker = f"{self.request.hostname or socket.gethostname()}:{site}"
    if refused:
        ProbeResult.record(run.pk, worker, refused)
    engine = Engine(
        timeout=run.timeout,
        concurrency=settings.PROBE_CONCURRENCY,
        per_destination=settings.PROBE_PER_DESTINATION,
        allowed=allowed_networks(site),
    )
    try:
        seen_pins = asyncio.run(probe_and_record(run.pk, checks, engine, worker))
    except SoftTimeLimitExceeded:
        seen_pins = {}
    # Whatever is still pending now was cut short by the task's time budget.
    run.abandon_pending(f"the probe task of site {site!r} ran out of time", sites=[site])
    remember_first_pins(run, seen_pins)
    run.finish_if_complete()


def allowed_networks(site: str) -> tuple[Network, ...]:
    """The networks a probe site may reach (PROBE_ALLOWED_NETWORKS)."""
    configured = settings.PROBE_ALLOWED_NETWORKS
    return tuple(ipaddress.ip_network(network) for network in configured.get(site, configured.get("*", [])))


def build_checks(run: ProbeRun, pending: list[ProbeResult]) -> tuple[list[Check], dict[int, dict]]:
    """The engine's checks for pending results; anything that is not a rule of the run's
    deployment is refused, so the portal can never be turned into a port scanner."""
    pins = dict(((host, port), pin) for host, port, pin in run.deployment.tls_pins.values_list("host", "port", "pin"))
    checks, refused = [], {}
    for result in pending:
        item = result.item
        if item.deployment_id != run.deployment_id:
            reason = "refused: not a rule of this deployment's checklist"
            refused[item.pk] = {"state": ProbeState.ERROR, "summary": reason, "evidence": {"reason": reason}}
            continue
        checks.append(
            Check(
                key=item.pk,
                host=item.destination,
                port_start=item.port_start,
                port_end=item.port_end,
                protocol=item.protocol,
                service=item.requirement.service,
                expected_pin=pins.get((item.destination, item.port_start), ""),
            )
        )
    return checks, refused


def outcome(result: CheckResult) -> dict:
    return {
        "state": result.state,
        "summary": result.summary,
        "latency_ms": result.latency_ms,
        "address": result.address,
        "evidence": result.evidence,
    }


async def probe_and_record(run_id: int, checks: list[Check], engine: Engine, worker: str) -> dict[tuple, dict]:
    """Run the engine, writing results as they come (every FLUSH_INTERVAL) from a database
    thread, and stop when the run is cancelled. Returns the TLS certificates seen."""
    loop = asyncio.get_running_loop()
    buffer: dict[int, dict] = {}
    seen_pins: dict[tuple, dict] = {}

    def on_result(check: Check, result: CheckResult) -> None:
        buffer[check.key] = outcome(result)
        if "pin" in result.evidence and result.state == ProbeState.OPEN:
            seen_pins[(check.host, check.port_start)] = result.evidence

    def flush(batch: dict[int, dict]) -> bool:
        if batch:
            ProbeResult.record(run_id, worker, batch)
        # Stop once the run is cancelled or closed (its deadline passed): nothing more is recorded.
        return ProbeRun.objects.filter(pk=run_id).filter(Q(cancel_requested=True) | Q(finished__isnull=False)).exists()

    # Stop in time, before Celery's soft time limit would interrupt the loop at a random point.
    soft_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    budget_ends = loop.time() + soft_limit - min(5, soft_limit / 10)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-db") as database:
        probing = asyncio.ensure_future(engine.run(checks, on_result))
        try:
            while True:
                await asyncio.wait({probing}, timeout=FLUSH_INTERVAL)
                # Whether probing had ended before this flush: then the flush holds every result.
                finished = probing.done()
                batch = dict(buffer)
                buffer.clear()
                cancelled = await loop.run_in_executor(database, flush, batch)
                if finished:
                    probing.result()
                    break
                if cancelled or loop.time() > budget_ends:
                    probing.cancel()
                    break
        finally:
            await loop.run_in_executor(database, connections.close_all)
    return seen_pins


def remember_first_pins(run: ProbeRun, seen: dict[tuple, dict]) -> None:
    """Trust on first use: the first certificate a TLS service shows is the one expected later."""
    for (host, port), evidence in seen.items():
        TlsPin.objects.get_or_create(
            deployment=run.deployment,
            host=host,
            port=port,
            defaults={"pin": evidence["pin"], "issuer": evidence["issuer"], "source": PinSource.FIRST_SEEN},
        )


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
        items = list(deployment.checklist.all())
        if not items:
            continue
        try:
            ProbeRun.start(deployment, None, items, limited=False)
        except Exception:  # one deployment's failure must not stop the others' runs
            log.exception("scheduled probe run of deployment %s could not start", deployment.pk)
            continue
        started += 1
    return started
