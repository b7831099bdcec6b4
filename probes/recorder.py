"""The recorder: what the probe sites report (probes.reports), checked, then written.

A report is data from a network the portal does not control. Whatever it holds, the recorder
goes on: a report that is not what a site sends (not JSON, the wrong shape, too large, an unknown
kind) is dropped with a log line and counted (/metrics), and recording goes on. A well-formed one
still decides nothing by itself: its site is the stream it came on, results are written only for
items of a run that was sent to that site and are still pending (ProbeRun.record), and a heartbeat
makes only that site live.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from pathlib import Path

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, close_old_connections

from ports.validators import validate_name

from .choices import ProbeState
from .models import ProbeRun, WorkerHeartbeat
from .reports import MAX_REPORT_BYTES, Channel, Kind, Report, channel

log = logging.getLogger(__name__)

# More than a site worker ever puts in one report (probing.BATCH_SIZE).
MAX_RESULTS = 1000


class Malformed(ValueError):
    """A report that no site worker sends: dropped."""


def record(report: Report) -> int:
    """Write one report; returns how many results (or heartbeats) it wrote."""
    if len(report.body) > MAX_REPORT_BYTES:
        raise Malformed(f"over {MAX_REPORT_BYTES} bytes")
    try:
        body = json.loads(report.body)
    except (ValueError, RecursionError) as exc:  # nested deeper than any report
        raise Malformed("not JSON") from exc
    if not isinstance(body, dict):
        raise Malformed("not a JSON object")
    if report.kind == Kind.HEARTBEAT:
        return heartbeat(report, body)
    if report.kind == Kind.RESULTS:
        return results(report, body)
    raise Malformed(f"no report is of kind {report.kind[:40]!r}")


def heartbeat(report: Report, body: dict) -> int:
    worker, leaving = name(body.get("worker")), body.get("leaving") is True
    try:
        started = datetime.datetime.fromisoformat(str(body.get("started"))[:40])
    except ValueError as exc:
        raise Malformed("a heartbeat without its start time") from exc
    if started.tzinfo is None:
        raise Malformed("a heartbeat's start time without its time zone")
    if leaving:
        WorkerHeartbeat.leave(report.site, worker)
    elif time.time() - report.sent_at <= settings.PROBE_HEARTBEAT_TIMEOUT:
        WorkerHeartbeat.record(report.site, worker, started)
    else:
        return 0  # it waited longer than a heartbeat lasts (the recorder was away): says nothing now
    return 1


def results(report: Report, body: dict) -> int:
    run, outcomes, unfinished = body.get("run"), body.get("results"), body.get("unfinished", [])
    if not isinstance(run, int) or isinstance(run, bool):
        raise Malformed("results without their run")
    if not isinstance(outcomes, dict) or not isinstance(unfinished, list):
        raise Malformed("results of the wrong shape")
    if len(outcomes) + len(unfinished) > MAX_RESULTS:
        raise Malformed(f"more than {MAX_RESULTS} results")
    if not all(key.isdigit() for key in outcomes) or not all(type(i) is int for i in unfinished):
        raise Malformed("results of items that are not item ids")
    written = {int(key): outcome for key, outcome in outcomes.items()}
    reason = str(body.get("reason") or "the probe task ended before this check")[:500]
    for item_id in unfinished:
        written.setdefault(item_id, {"state": ProbeState.NOT_PROBED, "summary": reason, "evidence": {"reason": reason}})
    return ProbeRun.record(run, name(body.get("worker")), written, site=report.site)


def name(value: object) -> str:
    """A worker's name as a site gives it (name@host): shown on pages, so plain text only."""
    if not isinstance(value, str) or not value:
        raise Malformed("no worker name")
    try:
        validate_name(value)
    except ValidationError as exc:
        raise Malformed("a worker name with control characters") from exc
    return value[:200]


def run(stopped: threading.Event, block: float = 1.0) -> None:
    """Record reports until `stopped` is set, waiting a little whenever the broker or the
    database is away."""
    reports_of = channel()
    while not stopped.is_set():
        if take(reports_of, block) is None:
            stopped.wait(2)


def take(reports_of: Channel, block: float) -> int | None:
    """Receive the next reports and record them; how many were taken (None: the broker or the
    database is away). A report is acknowledged once it is written or dropped; one that could not
    be written is read again later, and ProbeRun.record writes each result once, however often
    its report is read."""
    try:
        reports = reports_of.receive(block)
    except redis.RedisError:
        log.warning("the broker is away: recording waits", exc_info=True)
        return None
    Path(settings.PROBE_HEARTBEAT_FILE).touch()  # for the container's health check
    for report in reports:
        try:
            record(report)
        except Malformed as exc:
            log.warning("dropped a report of site %s: %s", report.site, exc)
            count_dropped(reports_of, report)
        except DatabaseError:
            log.warning("the database is away: reports are kept and written later", exc_info=True)
            close_old_connections()
            reports_of.again()
            return None
        except Exception:  # a shape no check above foresaw: drop it, never stop recording
            log.exception("dropped a report of site %s that could not be recorded", report.site)
            count_dropped(reports_of, report)
        try:
            reports_of.done(report)
        except redis.RedisError:  # taken again later, and written once
            log.warning("could not acknowledge a report of site %s", report.site, exc_info=True)
    return len(reports)


def count_dropped(reports_of: Channel, report: Report) -> None:
    with contextlib.suppress(redis.RedisError):  # the count is for /metrics; the log line is written anyway
        reports_of.dropped(report)
