"""What a Celery worker adds for probes: a heartbeat for each site whose queue it consumes.

Site workers hold no database credentials: their heartbeats, like their results, are reports on
the site's own channel (probes.reports), which the recorder reads with the database.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from pathlib import Path

from celery import Celery, bootsteps
from celery.worker import state as worker_state
from django.conf import settings

from .reports import Kind, channel, report_stream

QUEUE_PREFIX = "probes."
# The task that the centre sends to a site, by the name its messages carry.
PROBE_SITE = "probes.tasks.probe_site"

log = logging.getLogger(__name__)


def site_queue(site: str) -> str:
    return f"{QUEUE_PREFIX}{site}"


def site_acl(site: str) -> str:
    """The Redis ACL rules of a site's broker user (`manage.py broker_acl <site>` prints the line).

    The site's worker takes its own queue, keeps the messages it holds under its own unacked
    keys (BROKER_UNACKED_KEY=unacked.<site>), and may read "run closed" flags. It cannot read or
    write another site's queue or the central workers' queues, and has no pub/sub (no remote
    control of other workers). Its reports go to its own stream, through a selector (Redis 7)
    that allows XADD on that one key and nothing else: it cannot read, trim, delete, expire or
    retype the stream, and no command it has on its own keys reaches it.
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
    reports = f"(+xadd ~{report_stream(site)})"
    return " ".join(["resetkeys", "resetchannels", "-@all", *commands, *keys, reports])


class Consuming(bootsteps.StartStopStep):
    """A step of the worker's consumer, on its event loop, every second: whether it consumes now
    (for the heartbeat), and the wedge it must get out of.

    The wedge (kombu 5.7, Redis, late acks, prefetch 1): a task that ends while the broker is away
    cannot acknowledge its message; the channel keeps holding it, so the consumer never asks for
    the next task, and, the polling connection being idle, nothing ever raises an error that
    would make Celery reconnect. A held message that no task request owns is that wedge: after
    WEDGE_AFTER seconds the step raises the transport's connection error, and Celery's own
    recovery (Consumer.start) reconnects, gives back what the channel held, and consumes again.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)
    CHECK_INTERVAL = 1.0
    WEDGE_AFTER = 3.0
    # A verdict older than this (the loop is blocked, or reconnecting) is "not consuming".
    FRESH = 5.0

    def __init__(self, consumer, **kwargs) -> None:
        consumer.consuming = self
        self.timer = None
        self.wedged_since: float | None = None
        # (when the loop last looked, whether it consumed): written by the loop, read by the heartbeat.
        self.verdict = (0.0, False)

    def start(self, consumer) -> None:
        self.wedged_since, self.verdict = None, (0.0, False)
        # The hub's timer runs on the event loop: an error raised in check() reaches Consumer.start.
        self.timer = consumer.timer.call_repeatedly(self.CHECK_INTERVAL, self.check, (consumer,), priority=10)

    def stop(self, consumer) -> None:
        self.verdict = (0.0, False)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    shutdown = stop

    def check(self, consumer) -> None:
        now = time.monotonic()
        consuming, wedged = looks_at(consumer)
        self.wedged_since = (self.wedged_since or now) if wedged else None
        self.verdict = (now, consuming)
        if self.wedged_since is not None and now - self.wedged_since >= self.WEDGE_AFTER:
            self.wedged_since = None
            log.warning(
                "the consumer holds a message no task owns (its ack failed while the broker was away): reconnecting"
            )
            raise connection_error(consumer)("consumer wedged by an acknowledgement that failed")

    def now(self) -> bool:
        """For any thread: whether the loop found the consumer consuming, lately."""
        checked, consuming = self.verdict
        return consuming and time.monotonic() - checked < self.FRESH


def looks_at(consumer) -> tuple[bool, bool]:
    """(consuming now, wedged) as the consumer's state shows it, on its own event loop."""
    connection, task_consumer = consumer.connection, consumer.task_consumer
    if consumer.blueprint.state != bootsteps.RUN or connection is None or task_consumer is None:
        return False, False
    channel = task_consumer.channel
    if not connection.connected or not getattr(channel, "active_queues", True):
        return False, False  # reconnecting: the queues are not consumed
    qos = getattr(channel, "qos", None)
    if connection.transport.driver_type != "redis" or qos is None:  # the wedge is the Redis transport's
        return True, False
    held = {tag for tag in list(qos._delivered) if tag not in qos._dirty}
    owned = {request.message.delivery_tag for request in list(worker_state.requests.values()) if request.message}
    wedged = bool(held - owned) and not qos.can_consume()
    return not wedged, wedged


def connection_error(consumer) -> type[Exception]:
    """The transport's own connection error: the one Consumer.start recovers from by reconnecting."""
    for error in consumer.connection_errors:
        if isinstance(error, type) and issubclass(error, Exception) and error not in (KeyError, OSError):
            return error
    return ConnectionError


def consumed_sites(worker) -> set[str]:
    """The sites whose queues the worker's consumer takes tasks from now: none while it has lost
    the broker, is wedged or stopped, and not a queue it was told to cancel."""
    consumer = worker.consumer
    consuming = getattr(consumer, "consuming", None)
    if consumer is None or consuming is None or not consuming.now() or consumer.task_consumer is None:
        return set()
    queues = list(consumer.task_consumer.queues)
    return {queue.name.removeprefix(QUEUE_PREFIX) for queue in queues if queue.name.startswith(QUEUE_PREFIX)}


class Heartbeat(bootsteps.StartStopStep):
    """Tells the portal, every few seconds, that this worker serves its sites (-Q probes.<site>):
    a heartbeat report on the channel of each site whose queue it consumes now (consumed_sites).

    It beats from a thread of its own rather than the worker's timer, which runs on the
    consumer's event loop: while the broker is away that loop is busy reconnecting, and the
    worker must beat again as soon as it consumes again. A beat that cannot be sent is not
    kept: the portal hears that the site's worker is gone, which is true from where it stands.
    """

    def __init__(self, worker, **kwargs) -> None:
        self.sites: list[str] = []
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def start(self, worker) -> None:
        queues = worker.app.amqp.queues.consume_from or worker.app.amqp.queues
        self.sites = sorted(name.removeprefix(QUEUE_PREFIX) for name in queues if name.startswith(QUEUE_PREFIX))
        self.worker = worker
        self.started = now()
        self.channel = channel()
        if self.sites:
            self.thread = threading.Thread(target=self.run, name="probe-heartbeat", daemon=True)
            self.thread.start()

    def run(self) -> None:
        while True:
            if sites := consumed_sites(self.worker):
                self.beat(sorted(sites))
            if self.stopped.wait(settings.PROBE_HEARTBEAT_INTERVAL):
                return

    def beat(self, sites: list[str], leaving: bool = False) -> None:
        body = {"worker": self.worker.hostname, "started": self.started.isoformat(), "leaving": leaving}
        try:
            for site in sites:
                self.channel.send(site, Kind.HEARTBEAT, body)
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
            self.beat(self.sites, leaving=True)


def add_probe_steps(app: Celery) -> None:
    """What every worker of probe sites runs beside its tasks: the heartbeat, and what it reads."""
    app.steps["worker"].add(Heartbeat)
    app.steps["consumer"].add(Consuming)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
