"""Flags are keys on the broker (Redis) that site workers can read without a database: "this
run is closed". The embedded broker of `make run` has no keys; there a run closes centrally
and its worker simply probes to the end."""

from __future__ import annotations

import logging

import redis
from celery import current_app

FLAG_SECONDS = 24 * 3600


def closed_flag(run_id: int) -> str:
    """The broker key that tells site workers a run is closed (cancelled, past its deadline)."""
    return f"portal.closed.{run_id}"


def flags() -> redis.Redis | None:
    """A plain client of the broker's Redis, with timeouts (never the transport's own
    connection, which belongs to the worker's event loop), or None on another broker."""
    url = current_app.conf.broker_url or ""
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
