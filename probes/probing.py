"""The probe site's task: probe a run's checks of one site, from a worker in that site, and report
the results to the recorder on the site's own channel (probes.reports), as plain data. A site
worker holds no database credentials and loads no ORM (portal.probe_site is its Celery app):
nothing here reads or writes the database."""

from __future__ import annotations

import asyncio
import dataclasses
import encodings.idna  # noqa: F401  (why: under the imports)
import ipaddress
import json
import logging
import socket
from collections import deque
from collections.abc import Sequence

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from .engine import Check, CheckResult, Engine, Network
from .flags import closed_flag, flag_raised, flags
from .reports import MAX_REPORT_BYTES, Kind, channel
from .worker import PROBE_SITE

# encodings.idna is imported before the pool forks: looked up first in a probing thread (resolving
# the broker's host), the codec fails with "unknown encoding: idna" (seen in a site worker).

log = logging.getLogger(__name__)

# How often a site worker sends its results (and notices that the run was closed).
FLUSH_INTERVAL = 0.25
# At most this many results per message to the recorder.
BATCH_SIZE = 500


@shared_task(bind=True, name=PROBE_SITE)
def probe_site(self, run_id: int, site: str, checks: list[dict], timeout: float) -> None:
    """Probe the checks (the run's items whose source sits in `site`), and send the results to
    the recorder in batches. Nothing here reads or writes the database.

    Delivered again if its worker dies: it probes everything again, and the recorder keeps only
    the first result of each item, so nothing is lost and nothing is duplicated.
    """
    # The Celery node (name@host) that probed, so that a redelivered run shows who finished it.
    worker = f"{self.request.hostname or socket.gethostname()}:{site}"
    engine = site_engine(site, timeout)
    outbox = Outbox(site)
    try:
        asyncio.run(probe_and_send(run_id, [Check(**check) for check in checks], engine, worker, outbox))
    except SoftTimeLimitExceeded:
        # The recorder takes only what is still pending: naming every check is safe.
        outbox.put(reports(run_id, worker, {}, [check["key"] for check in checks], ran_out(site)))
        outbox.send()


def site_engine(site: str, timeout: float) -> Engine:
    """The engine of a site's worker, as its own settings say (PROBE_*)."""
    return Engine(
        timeout=timeout,
        concurrency=settings.PROBE_CONCURRENCY,
        per_destination=settings.PROBE_PER_DESTINATION,
        allowed=allowed_networks(site),
        site=site,
        trace_hops=settings.PROBE_TRACE_HOPS,
        trace_max=settings.PROBE_TRACE_MAX,
    )


def allowed_networks(site: str) -> tuple[Network, ...]:
    """The networks a probe site may reach (PROBE_ALLOWED_NETWORKS, the site worker's own setting)."""
    configured = settings.PROBE_ALLOWED_NETWORKS
    return tuple(ipaddress.ip_network(network) for network in configured.get(site, configured.get("*", [])))


def ran_out(site: str) -> str:
    return f"the probe task of site {site!r} ran out of time"


def reports(
    run_id: int, worker: str, results: dict[int, dict], unfinished: Sequence[int] = (), reason: str = ""
) -> list[dict]:
    """The results as reports to the recorder: at most BATCH_SIZE results and MAX_REPORT_BYTES
    a report; the checks named `unfinished` (with the reason) go with the last one."""
    bodies: list[dict] = []
    chunk: dict[str, dict] = {}
    size = 0
    for key, result in results.items():
        result_size = len(json.dumps(result)) + 16
        if chunk and (len(chunk) >= BATCH_SIZE or size + result_size > MAX_REPORT_BYTES // 2):
            bodies.append({"run": run_id, "worker": worker, "results": chunk})
            chunk, size = {}, 0
        chunk[str(key)], size = result, size + result_size
    if chunk or unfinished:
        bodies.append({"run": run_id, "worker": worker, "results": chunk, "unfinished": list(unfinished)})
        bodies[-1]["reason"] = reason
    return bodies


class Outbox:
    """Reports on their way to the recorder. While the broker is away they wait here, in order,
    and go when it is back: results probed during an outage are not lost."""

    def __init__(self, site: str) -> None:
        self.site, self.channel, self.waiting = site, channel(), deque[dict]()

    def put(self, bodies: list[dict]) -> None:
        self.waiting.extend(bodies)

    def send(self) -> bool:
        """Send what waits; False if the broker is still away (the rest waits)."""
        while self.waiting:
            try:
                self.channel.send(self.site, Kind.RESULTS, self.waiting[0])
            except (redis.RedisError, OSError):
                log.warning("results of site %s wait: the broker is away", self.site, exc_info=True)
                return False
            self.waiting.popleft()
        return True


async def probe_and_send(run_id: int, checks: list[Check], engine: Engine, worker: str, outbox: Outbox) -> None:
    """Run the engine, sending results as they come (every FLUSH_INTERVAL), and stop when the run
    is closed (a flag on the broker). The last report names the checks not finished. Results that
    the broker cannot take now wait in the outbox, sent as soon as it is back (while time is left)."""
    loop = asyncio.get_running_loop()
    buffer: dict[int, dict] = {}

    def on_result(check: Check, result: CheckResult) -> None:
        buffer[check.key] = dataclasses.asdict(result)  # the report carries the engine's result as it is

    # Stop in time, before Celery's soft time limit would interrupt the loop at a random point.
    soft_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    budget_ends = loop.time() + soft_limit - min(5, soft_limit / 10)
    engine.deadline = budget_ends  # no trace begins that could not end by then
    reason = f"the probe task of site {outbox.site!r} ended before this check"
    probing = asyncio.ensure_future(engine.run(checks, on_result))
    sent: set[int] = set()
    client = flags()
    try:
        while True:
            await asyncio.wait({probing}, timeout=FLUSH_INTERVAL)
            if probing.done():
                probing.result()
                break
            sent |= set(buffer)
            outbox.put(reports(run_id, worker, buffer))
            buffer.clear()
            await loop.run_in_executor(None, outbox.send)
            if await loop.run_in_executor(None, flag_raised, client, closed_flag(run_id)):
                return  # closed (cancelled, past its deadline): the recorder takes nothing more
            if loop.time() > budget_ends:
                reason = ran_out(outbox.site)
                break
    finally:
        probing.cancel()
        if client is not None:
            client.close()
    sent |= set(buffer)
    outbox.put(reports(run_id, worker, buffer, [check.key for check in checks if check.key not in sent], reason))
    # The broker may be away: wait for it while the task has time (redelivered after, it probes again).
    pause = FLUSH_INTERVAL
    while not await loop.run_in_executor(None, outbox.send) and loop.time() + pause < budget_ends:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 5)
