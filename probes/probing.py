"""The probe site's task: probe a run's checks of one site, from a worker in that site, and send
the results to the recorder through the broker. A site worker holds no database credentials and
loads no ORM (portal.probe_site is its Celery app): nothing here reads or writes the database, and
the recorder's task is named, never imported."""

from __future__ import annotations

import asyncio
import dataclasses
import encodings.idna  # noqa: F401  (why: under the imports)
import ipaddress
import logging
import socket
from collections.abc import Sequence

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from .engine import Check, CheckResult, Engine, Network
from .flags import closed_flag, flag_raised, flags
from .worker import PROBE_SITE, RECORD_RESULTS, TO_RECORDER

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
            current_app.send_task(RECORD_RESULTS, (run_id, worker, chunk, *tail), **TO_RECORDER)


async def probe_and_send(run_id: int, site: str, checks: list[Check], engine: Engine, worker: str) -> None:
    """Run the engine, sending results as they come (every FLUSH_INTERVAL), and stop when the run
    is closed (a flag on the broker). The last message names the checks not finished."""
    loop = asyncio.get_running_loop()
    buffer: dict[int, dict] = {}
    sent: set[int] = set()

    def on_result(check: Check, result: CheckResult) -> None:
        buffer[check.key] = dataclasses.asdict(result)  # the message carries the engine's result as it is

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
