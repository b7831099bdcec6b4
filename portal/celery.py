import os

from celery import Celery
from kombu.exceptions import OperationalError

from probes.worker import Heartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
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
