import os

from celery import Celery, Task
from celery.exceptions import Reject

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


# The sites' task too: the central workers of `make run` serve the default probe site.
app = Celery("portal", task_cls=PortalTask, include=["probes.probing"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(Heartbeat)
