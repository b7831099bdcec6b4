"""What a Celery worker adds for probes: a heartbeat for each site whose queue it consumes.

Site workers hold no database credentials: their heartbeats, like their results, go through
the broker to the recorder's queue, which the central workers (those with the database) consume.
"""

from __future__ import annotations

import datetime
import logging
import threading
from pathlib import Path

from celery import bootsteps

QUEUE_PREFIX = "probes."
RECORDER_QUEUE = "portal.record"
# How results and heartbeats are published to the recorder: to its queue, declaring nothing (the
# central workers declare it), so that Celery puts them straight into the list through the
# default exchange: a site's broker user needs no routing table and may only write that list.
TO_RECORDER = {"queue": RECORDER_QUEUE, "declare": []}
# The tasks that cross between a site and the centre, by the names their messages carry.
PROBE_SITE = "probes.tasks.probe_site"
RECORD_RESULTS = "probes.tasks.record_results"
RECORD_HEARTBEAT = "probes.tasks.record_heartbeat"
# The only tasks a recorder-only worker runs (portal.celery.PortalTask).
RECORDER_TASKS = {RECORD_RESULTS, RECORD_HEARTBEAT}

log = logging.getLogger(__name__)


def site_queue(site: str) -> str:
    return f"{QUEUE_PREFIX}{site}"


def site_acl(site: str) -> str:
    """The Redis ACL rules of a site's broker user (`manage.py broker_acl <site>` prints the line).

    The site's worker takes its own queue, keeps the messages it holds under its own unacked
    keys (BROKER_UNACKED_KEY=unacked.<site>), may add results to the recorder's queue but not
    read it, and may read "run closed" flags. It cannot read or write another site's queue or
    the central workers' queues, and has no pub/sub (no remote control of other workers).
    """
    queue, unacked = site_queue(site), f"unacked.{site}"
    keys = [
        f"~{queue}",
        # kombu's priority lists, "probes.<site>\\x06\\x163" and so on; never another site's name.
        f"~{queue}[^-a-z0-9_]*",
        f"~{unacked}",
        f"~{unacked}_index",
        f"~{unacked}_mutex",
        f"~_kombu.binding.{queue}",
        f"~_kombu.binding_permanent.{queue}",
        f"%W~{RECORDER_QUEUE}",
        "%R~portal.closed.*",
    ]
    # Commands by category, for what kombu does with those keys (lists, the unacked hash and
    # sorted set, a lock in Lua); never a command that lists or wipes keys it was not given.
    commands = [
        *("+@" + category for category in ("connection", "transaction", "scripting", "list", "hash")),
        *("+@" + category for category in ("sortedset", "set", "string", "keyspace")),
        "-@dangerous",
        "-@admin",
        "-scan",
        "-randomkey",
    ]
    return " ".join(["resetkeys", "resetchannels", "-@all", *commands, *keys])


class Heartbeat(bootsteps.StartStopStep):
    """Tells the portal, every few seconds, that this worker serves its sites (-Q probes.<site>).

    It beats from a thread of its own rather than the worker's timer, which runs on the
    consumer's event loop: while the broker is away that loop is busy reconnecting, and the
    worker must beat again as soon as the broker answers. A beat that cannot be sent is not
    kept: the portal hears that the site's worker is gone, which is true from where it stands.
    """

    def __init__(self, worker, **kwargs) -> None:
        self.sites: list[str] = []
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def start(self, worker) -> None:
        queues = worker.app.amqp.queues.consume_from or worker.app.amqp.queues
        self.sites = sorted(name.removeprefix(QUEUE_PREFIX) for name in queues if name.startswith(QUEUE_PREFIX))
        self.app, self.worker_name = worker.app, worker.hostname
        self.started = now()
        if self.sites:
            self.thread = threading.Thread(target=self.run, name="probe-heartbeat", daemon=True)
            self.thread.start()

    def run(self) -> None:
        from django.conf import settings

        while True:
            self.beat()
            if self.stopped.wait(settings.PROBE_HEARTBEAT_INTERVAL):
                return

    def beat(self, leaving: bool = False) -> None:
        from django.conf import settings

        try:
            for site in self.sites:
                self.app.send_task(
                    RECORD_HEARTBEAT,
                    (site, self.worker_name, self.started.isoformat(), leaving),
                    **TO_RECORDER,
                    # A beat that waited in the queue longer than the timeout says nothing any more.
                    expires=settings.PROBE_HEARTBEAT_TIMEOUT,
                    retry=False,
                )
        except Exception:  # the broker may be away for a moment; the next beat tries again
            log.warning("probe worker heartbeat not sent", exc_info=True)
        else:
            # For the container's health check: a site worker has no remote control to ping.
            Path(settings.PROBE_HEARTBEAT_FILE).touch()

    def stop(self, worker) -> None:
        if self.thread is not None:
            self.stopped.set()
            self.thread.join(5)
            # A worker that stops cleanly leaves at once rather than when its heartbeat runs out.
            self.beat(leaving=True)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
