"""What a Celery worker adds for probes: a heartbeat for each site whose queue it consumes."""

from __future__ import annotations

import logging
import threading

from celery import bootsteps

QUEUE_PREFIX = "probes."
log = logging.getLogger(__name__)


def site_queue(site: str) -> str:
    return f"{QUEUE_PREFIX}{site}"


class Heartbeat(bootsteps.StartStopStep):
    """Tells the portal, every few seconds, that this worker serves its sites (-Q probes.<site>).

    It beats from a thread of its own rather than the worker's timer, which runs on the
    consumer's event loop: while the broker is away that loop is busy reconnecting, and the
    portal must still hear from the worker, and hear again as soon as the database answers.
    """

    def __init__(self, worker, **kwargs) -> None:
        self.sites: list[str] = []
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def start(self, worker) -> None:
        from django.utils import timezone

        queues = worker.app.amqp.queues.consume_from or worker.app.amqp.queues
        self.sites = sorted(name.removeprefix(QUEUE_PREFIX) for name in queues if name.startswith(QUEUE_PREFIX))
        self.worker_name = worker.hostname
        self.started = timezone.now()
        if self.sites:
            self.thread = threading.Thread(target=self.run, name="probe-heartbeat", daemon=True)
            self.thread.start()

    def run(self) -> None:
        from django.conf import settings

        while True:
            self.beat()
            if self.stopped.wait(settings.PROBE_HEARTBEAT_INTERVAL):
                return

    def beat(self) -> None:
        from django.db import close_old_connections, connection
        from django.utils import timezone

        from .models import WorkerHeartbeat

        try:
            # A connection broken by a database outage is dropped here, and the next one opened.
            close_old_connections()
            for site in self.sites:
                WorkerHeartbeat.objects.update_or_create(
                    site=site,
                    worker=self.worker_name,
                    defaults={"last_seen": timezone.now(), "started": self.started},
                )
        except Exception:  # the database may be away for a moment; the next beat tries again
            log.exception("probe worker heartbeat failed")
        finally:
            # The thread's own connection, closed between beats: a pool child forked meanwhile
            # must not inherit an open socket of it.
            connection.close()

    def stop(self, worker) -> None:
        if self.thread is not None:
            self.stopped.set()
            self.thread.join(5)
            from .models import WorkerHeartbeat

            # A worker that stops cleanly leaves at once rather than when its heartbeat runs out.
            WorkerHeartbeat.objects.filter(worker=self.worker_name).delete()
