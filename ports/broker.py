"""Handing work to the Celery workers by the task's name.

A layer starts work that lives in its own tasks, or in a layer above it (DESIGN.md, Layers),
without importing the task: the worker's app knows every task by name.
"""

from __future__ import annotations

import logging

from celery import current_app
from kombu.exceptions import OperationalError

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The message broker did not take a task: nothing was sent."""


def send(task: str, args: tuple, **options: object) -> None:
    """Hand the task named `task` to the broker (a few quick retries), or raise BrokerUnavailable
    saying why. Sent by name: the sender need not import the task's module (nor its layer)."""
    try:
        current_app.send_task(task, args, **options)
    except OperationalError as exc:
        # Where the broker is (its host and port) goes to the log, never to the API's answer.
        log.warning("the broker did not take %s: %s", task, exc)
        raise BrokerUnavailable("the message broker cannot be reached") from exc
