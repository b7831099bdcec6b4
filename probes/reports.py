"""What a probe site reports to the centre (results and heartbeats), as plain data on a channel
that names its sender.

A site is never trusted to say who it is: each site appends to a stream of its own
(`portal.report.<site>`), and its broker user may append to that stream and do nothing else with it
(probes.worker.site_acl): no read, trim, delete or expire, and no other key of the centre's. The
recorder (probes.recorder) reads every site's stream in a consumer group, takes the site from the
stream's name, and acknowledges an entry once it has been recorded, so that an entry taken by a
recorder that died is taken again. An entry is data for the recorder to check: never a task, so
nothing a site sends can make the centre run anything.

The embedded broker of `make run` has no streams: there the reports are files in a folder, read
the same way (one machine, one trust).

Plain Python, like the engine: a site worker imports this without an ORM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import redis
from django.conf import settings

from ports.validators import SITE_NAME

REPORT_PREFIX = "portal.report."
# The recorders' consumer group on every site's stream.
GROUP = "recorders"
# Per site, how many reports the recorder dropped as malformed (a hash on the broker, for /metrics).
DROPPED_KEY = "portal.reports.dropped"
# A report larger than this is not read (a batch of results is a few hundred bytes a result).
MAX_REPORT_BYTES = 2_000_000


class Kind:
    """What a report carries."""

    RESULTS = "results"
    HEARTBEAT = "heartbeat"


def report_stream(site: str) -> str:
    return f"{REPORT_PREFIX}{site}"


@dataclasses.dataclass(frozen=True)
class Report:
    """One entry of a site's channel, as the recorder reads it."""

    site: str  # the channel's own name: who sent it, as the broker knows it, never what it says
    id: str  # what acknowledges it
    fields: dict[bytes, bytes]
    sent_at: float  # the broker's clock (epoch seconds) when it took the entry

    @property
    def kind(self) -> str:
        return self.fields.get(b"kind", b"").decode("utf-8", "replace")

    @property
    def body(self) -> bytes:
        return self.fields.get(b"body", b"")


class Channel(Protocol):
    def send(self, site: str, kind: str, body: dict) -> None:
        """Append one report (raises on a broker that is away: the sender keeps it and tries again)."""

    def receive(self, block: float) -> list[Report]:
        """The next reports of any site, waiting up to `block` seconds for one."""

    def done(self, report: Report) -> None:
        """The report was recorded (or dropped): it is not taken again."""

    def again(self) -> None:
        """The reports received but not done are received again."""

    def dropped(self, report: Report) -> None:
        """Count a report dropped as malformed."""

    def waiting(self) -> dict[str, int]:
        """Per site, how many reports wait to be recorded."""


def encode(kind: str, body: dict) -> dict[str, str]:
    return {"kind": kind, "body": json.dumps(body, separators=(",", ":"))}


class StreamChannel:
    """Redis streams, one per site, read by the recorders' consumer group."""

    # An entry delivered to a recorder that has not acknowledged it for this long (it died) is claimed.
    CLAIM_IDLE_MS = 30_000
    # Entries a recorder takes at once, per stream: what it has taken no other recorder writes, so
    # recorders that share a backlog (compose scales them) take one report each at a time.
    TAKE = 1

    def __init__(self, client: redis.Redis, consumer: str = "") -> None:
        self.client = client
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.streams: dict[str, str] = {}  # stream -> where to read from: "0" (own backlog first), then ">"
        self.looked = 0.0

    def send(self, site: str, kind: str, body: dict) -> None:
        self.client.xadd(report_stream(site), encode(kind, body))

    def receive(self, block: float) -> list[Report]:
        self.find_streams()
        if not self.streams:
            time.sleep(block)
            return []
        try:
            reports = self.claim_stale()
            # This recorder's own backlog first (what it read and did not acknowledge), then new entries.
            while not reports:
                backlog = "0" in self.streams.values()
                wait = None if backlog else int(block * 1000)  # a backlog is read at once
                answer = self.client.xreadgroup(GROUP, self.consumer, self.streams, count=self.TAKE, block=wait)
                reports = self.entries(answer)
                if not backlog:
                    break
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # A broker without persistence came back empty: its streams are looked for anew.
            self.streams, self.looked = {}, 0.0
            return []
        return reports

    def entries(self, answer: list | None) -> list[Report]:
        reports = []
        for name, entries in answer or []:
            name = name.decode()
            if not entries and self.streams[name] == "0":
                self.streams[name] = ">"  # its own backlog is done: new entries from now on
            for entry_id, fields in entries:
                if fields:
                    reports.append(self.report(name, entry_id, fields))
                else:  # trimmed away by its site before it was recorded: nothing left to take
                    self.client.xack(name, GROUP, entry_id)
        return reports

    def find_streams(self) -> None:
        """Every site's stream, looked for every few seconds (a new site starts sending at any time)."""
        if time.monotonic() - self.looked < 5:
            return
        self.looked = time.monotonic()
        for key in self.client.scan_iter(match=f"{REPORT_PREFIX}*", _type="STREAM", count=1000):
            name = key.decode()
            if name not in self.streams and SITE_NAME.fullmatch(name.removeprefix(REPORT_PREFIX)):
                try:
                    self.client.xgroup_create(name, GROUP, id="0")
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                # What this recorder took and did not acknowledge before (it restarted) comes first.
                self.streams[name] = "0"

    def claim_stale(self) -> list[Report]:
        """Entries of recorders that died before acknowledging them."""
        reports = []
        for name in self.streams:
            _, entries, _ = self.client.xautoclaim(name, GROUP, self.consumer, self.CLAIM_IDLE_MS, count=50)
            reports += [self.report(name, entry_id, fields) for entry_id, fields in entries if fields]
        return reports

    def again(self) -> None:
        """Read this recorder's unacknowledged entries again (after a failure to record them)."""
        self.streams = dict.fromkeys(self.streams, "0")

    def report(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Report:
        entry = entry_id.decode()
        return Report(stream.removeprefix(REPORT_PREFIX), entry, fields, int(entry.split("-")[0]) / 1000)

    def done(self, report: Report) -> None:
        stream = report_stream(report.site)
        with self.client.pipeline() as pipe:
            pipe.xack(stream, GROUP, report.id)
            pipe.xdel(stream, report.id)  # the stream holds only what waits
            pipe.execute()

    def dropped(self, report: Report) -> None:
        self.client.hincrby(DROPPED_KEY, report.site, 1)

    def waiting(self) -> dict[str, int]:
        found = self.client.scan_iter(match=f"{REPORT_PREFIX}*", _type="STREAM", count=1000)
        return {key.decode().removeprefix(REPORT_PREFIX): self.client.xlen(key) for key in found}


class FolderChannel:
    """The embedded broker's: a file per report in a folder per site (make run: one machine)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, site: str, kind: str, body: dict) -> None:
        (self.folder / site).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        partial = self.folder / site / f".{name}"
        partial.write_text(json.dumps(encode(kind, body)))
        partial.rename(self.folder / site / f"{name}.json")  # whole or not at all

    def receive(self, block: float) -> list[Report]:
        reports = list(self.files())[:50]
        if not reports:
            time.sleep(block)
        return reports

    def files(self) -> Iterator[Report]:
        for path in sorted(self.folder.glob("*/*.json"), key=lambda path: path.name):
            try:
                fields = {key.encode(): value.encode() for key, value in json.loads(path.read_text()).items()}
            except (OSError, ValueError, AttributeError):
                fields = {}
            yield Report(path.parent.name, str(path), fields, int(path.name.split("-")[0]) / 1e9)

    def again(self) -> None:
        pass  # a file stays until it is done

    def done(self, report: Report) -> None:
        Path(report.id).unlink(missing_ok=True)

    def dropped(self, report: Report) -> None:
        pass

    def waiting(self) -> dict[str, int]:
        return {folder.name: len(list(folder.glob("*.json"))) for folder in self.folder.glob("*") if folder.is_dir()}


def channel(client: redis.Redis | None = None) -> StreamChannel | FolderChannel:
    """The channel of this broker: Redis streams, or the embedded broker's folder."""
    if settings.REDIS_URL:
        return StreamChannel(client or redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10))
    return FolderChannel(Path(settings.VAR_DIR) / "broker" / "reports")
