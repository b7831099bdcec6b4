import logging
import os

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from probes.worker import RECORDER_QUEUE, RECORDER_TASKS, Heartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# A worker started with RECORDER_ONLY=1 (production's recorder, -Q portal.record) runs the
# recorder's tasks and nothing else.
RECORDER_ONLY = os.environ.get("RECORDER_ONLY") == "1"


class PortalTask(Task):
    """Site workers may write to the recorder's queue: whatever a recorder-only worker takes that
    is not a recorder task is refused, so a compromised site cannot make the central workers run
    their other tasks (exports, schedules) by naming them. The task's name is what counts: a
    message's own delivery information is written by its sender and proves nothing."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        if RECORDER_ONLY and self.name not in RECORDER_TASKS:
            raise Reject(f"{self.name} is not a recorder task: refused by a worker of {RECORDER_QUEUE}", requeue=False)
        return super().__call__(*args, **kwargs)


app = Celery("portal", task_cls=PortalTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(Heartbeat)


class BrokerUnavailable(Exception):
    """The message broker did not take a task: nothing was sent."""


def send(task: object, args: tuple, **options: object) -> None:
    """Hand a task to the broker (a few quick retries), or raise BrokerUnavailable saying why."""
    try:
        task.apply_async(args, **options)
    except OperationalError as exc:
        raise BrokerUnavailable(f"the message broker cannot be reached ({exc})") from exc


# Flags are keys on the broker (Redis) that site workers can read without a database: "this
# run is closed". The embedded broker of `make run` has no keys; there a run closes centrally
# and its worker simply probes to the end.
FLAG_SECONDS = 24 * 3600


def flags() -> redis.Redis | None:
    """A plain client of the broker's Redis, with timeouts (never the transport's own
    connection, which belongs to the worker's event loop), or None on another broker."""
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def raise_flag(key: str) -> None:
    try:
        if (client := flags()) is not None:
            with client:
                client.set(key, "1", ex=FLAG_SECONDS)
    except redis.RedisError:  # a flag is a courtesy to the site workers: the run is closed anyway
        logging.getLogger(__name__).warning("could not raise flag %s", key, exc_info=True)


def flag_raised(client: redis.Redis | None, key: str) -> bool:
    try:
        return bool(client is not None and client.exists(key))
    except redis.RedisError:  # the broker is away for a moment: keep probing
        return False
