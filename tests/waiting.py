"""The tests' one way of waiting for something another process does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = 0.1) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy, and return that;
    fail the test with `what` if it has not within `timeout` seconds. `what` may be a callable,
    read only on failure (a worker's log tail, the run as it stands then)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            pytest.fail(str(what() if callable(what) else what))
        time.sleep(interval)
    return value
