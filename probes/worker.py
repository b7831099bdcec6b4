"""What a Celery worker adds for probes: a heartbeat for each site whose queue it consumes."""

from __future__ import annotations

import logging

from celery import bootsteps

QUEUE_PREFIX = "probes."
log = logging.getLogger(__name__)


def site_queue(site: str) -> str:
    return f"{QUEUE_PREFIX}{site}"


class Heartbeat(bootsteps.StartStopStep):
    """Tells the portal, every few seconds, that this worker serves its sites (-Q probes.<site>)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:
        self.timer_ref = None
        self.sites: list[str] = []

    def start(self, worker) -> None:
        from django.conf import settings
        from django.utils import timezone

        queues = worker.app.amqp.queues.consume_from or worker.app.amqp.queues
        self.sites = sorted(name.removeprefix(QUEUE_PREFIX) for name in queues if name.startswith(QUEUE_PREFIX))
        self.worker_name = worker.hostname
        self.started = timezone.now()
        if self.sites:
            self.beat()
            self.timer_ref = worker.timer.call_repeatedly(settings.PROBE_HEARTBEAT_INTERVAL, self.beat)

    def beat(self) -> None:
        from django.db import close_old_connections
        from django.utils import timezone

        from .models import WorkerHeartbeat

        try:
            close_old_connections()
            for site in self.sites:
                WorkerHeartbeat.objects.update_or_create(
                    site=site,
                    worker=self.worker_name,
                    defaults={"last_seen": timezone.now(), "started": self.started},
                )
        except Exception:  # the database may be away for a moment; the next beat tries again
            log.exception("probe worker heartbeat failed")

    def stop(self, worker) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            from .models import WorkerHeartbeat

            # A worker that stops cleanly leaves at once rather than when its heartbeat runs out.
            WorkerHeartbeat.objects.filter(worker=self.worker_name).delete()
