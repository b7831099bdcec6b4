from __future__ import annotations

import bisect
import dataclasses
import datetime
import ipaddress
import json
import math
import secrets
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone
from psycopg2.extras import Json, execute_values

from ports.broker import BrokerUnavailable, send
from ports.choices import ChangeAction, ChangedObject, Outcome, Stop
from ports.models import (
    CHANGED_IN,
    CURRENT_PROBE,
    ChangeRequest,
    ChecklistItem,
    Deployment,
    DeploymentPartQuerySet,
    Logged,
    ObjectChange,
    Team,
    TeamScopedQuerySet,
)
from ports.rules import PortRange
from ports.validators import validate_name

from . import signals
from .choices import (
    FAILING_STATES,
    FINISHED_STATUSES,
    AlertKind,
    ChannelKind,
    DeliveryStatus,
    PinSource,
    ProbeState,
    RunStatus,
)
from .engine import Check, CheckResult
from .evidence import in_words
from .flags import closed_flag, raise_flag
from .validators import validate_channel_target
from .worker import PROBE_SITE, site_queue


def new_secret() -> str:
    return secrets.token_hex(32)


def heartbeat_cutoff() -> datetime.datetime:
    return timezone.now() - datetime.timedelta(seconds=settings.PROBE_HEARTBEAT_TIMEOUT)


class WorkerHeartbeatQuerySet(models.QuerySet):
    def live(self) -> WorkerHeartbeatQuerySet:
        return self.filter(last_seen__gte=heartbeat_cutoff())

    def live_sites(self) -> set[str]:
        return set(self.live().values_list("site", flat=True))


class WorkerHeartbeat(models.Model):
    """A probe worker consuming a site's queue, as last heard from."""

    worker = models.CharField(max_length=200)
    site = models.CharField(max_length=50)
    started = models.DateTimeField()
    last_seen = models.DateTimeField()

    objects = WorkerHeartbeatQuerySet.as_manager()

    class Meta:
        ordering = ["site", "worker"]
        constraints = [models.UniqueConstraint(fields=["site", "worker"], name="heartbeat_unique_worker")]

    def __str__(self) -> str:
        return f"{self.worker} in {self.site}"

    @classmethod
    def record(cls, site: str, worker: str, started: datetime.datetime) -> None:
        """A heartbeat as the recorder takes it from the broker, stamped with the portal's own clock:
        a site whose clock is off is neither taken for dead nor kept alive. A beat that waited in
        the queue too long expired there (its `expires`)."""
        cls.objects.update_or_create(
            site=site, worker=worker, defaults={"started": started, "last_seen": timezone.now()}
        )

    @classmethod
    def leave(cls, site: str, worker: str) -> None:
        """A worker that stops cleanly is gone at once, and its site's silence counts from now on
        (alerts.alert_silent_sites): the row stays, out of date."""
        gone = timezone.now() - datetime.timedelta(seconds=settings.PROBE_HEARTBEAT_TIMEOUT)
        cls.objects.filter(site=site, worker=worker).update(last_seen=gone)


class ProbeRunQuerySet(DeploymentPartQuerySet):
    def started_recently_by(self, team_id: int) -> int:
        since = timezone.now() - datetime.timedelta(minutes=1)
        return self.filter(deployment__team_id=team_id, created__gte=since).count()


class TooManyRuns(Exception):
    pass


class ProbeRun(models.Model):
    """One request to probe some of a deployment's rules.

    The run keeps its own progress (`pending` item ids by site, `by_state` counts), because the
    results come back through the broker from site workers that never see the database: the
    recorder (ProbeRun.record) writes them, once each, into the items' current state.

    A run also knows when it checked what (`probed`, `checked`): a result that changes nothing
    writes nothing per item, and an item's "last checked" is the later of its current state's own
    time and the last run that found it so (LatestProbe.last_checked), as healthchecks keeps a
    ping's time on the check rather than a row per ping.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="probe_runs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    timeout = models.FloatField(help_text="Seconds a probe waits for an answer.")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    # Items still pending then are reported as not probed, so a site without a worker
    # cannot hold the run open forever.
    deadline = models.DateTimeField()
    cancel_requested = models.BooleanField(default=False)
    # The change request whose implementation this run proves (probes.requests), if any.
    change_request = models.ForeignKey(
        ChangeRequest, on_delete=models.SET_NULL, null=True, blank=True, related_name="probe_runs"
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    # The item ids not recorded yet, by site ({"hq": [12, 13]}): emptied as results arrive.
    pending = models.JSONField(default=dict)
    # Items by the state this run found ({"open": 40, "refused": 2}).
    by_state = models.JSONField(default=dict)
    # The items this run probed (not_probed aside) as ranges of ids, [[first, last], ...]: a
    # sweep of a deployment is one range or a few, whatever order its results came in.
    probed = models.JSONField(default=list)
    # When it last recorded a probed result: the time of every item in `probed` that it found
    # unchanged (by at most the run's own length later than its own batch).
    checked = models.DateTimeField(null=True, blank=True)
    # Why the broker did not take a site's task, once send() has found it (not stored).
    unsent = ""
    # A run of at most this many items (a rule probed again, a handful) writes the check of each
    # of its items on its current state, as it does a change: a few rows. A larger one (a sweep)
    # keeps it on the run (`probed`, `checked`), where a read of the checklist finds each item's
    # last check in the deployment's latest sweep; were small runs kept so too, that read would look
    # past each of them for each of thousands of items (bench/checklist_api.py: 27x /api/me/).
    SMALL = 64
    # What start() reads of the items: pass them as checklist.only(*ProbeRun.ITEM_FIELDS).
    ITEM_FIELDS = ("deployment", "destination", "port_start", "port_end", "source_site")
    # What a batch moves, its run's end included: one update of the run per batch.
    PROGRESS = ("pending", "by_state", "done", "status", "started", "probed", "checked", "finished")

    objects = ProbeRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [
            models.Index(fields=["status", "deadline"], name="proberun_open_runs"),
            models.Index(fields=["deployment", "-created", "-id"], name="proberun_ordering"),
            # An item's last check: its deployment's runs, latest first (LatestProbe.last_checked).
            models.Index(fields=["deployment", "-checked"], name="proberun_checked"),
        ]

    def __str__(self) -> str:
        return f"Probe run {self.pk} of {self.deployment}"

    @property
    def small(self) -> bool:
        """Whether the run writes each item's check on its current state (ProbeRun.SMALL)."""
        return self.total <= self.SMALL

    @classmethod
    def start(
        cls,
        deployment: Deployment,
        user: object,
        items: list[ChecklistItem],
        limited: bool = True,
        change_request: ChangeRequest | None = None,
    ) -> ProbeRun:
        """Create the run, then enqueue one task per site on commit.

        Items whose site has no live worker are reported as not probed at once. A team starts
        at most PROBE_RUNS_PER_MINUTE runs (TooManyRuns), unless `limited` is False (a command,
        or the run that proves a change request implemented: `change_request`).
        """
        timeout = settings.PROBE_TIMEOUT
        ports = sum(item.port_end - item.port_start + 1 for item in items)
        per_destination = Counter()
        pending: dict[str, list[int]] = {}
        for item in items:
            per_destination[item.destination] += item.port_end - item.port_start + 1
            pending.setdefault(item.source_site, []).append(item.pk)
        rounds = max(
            math.ceil(ports / settings.PROBE_CONCURRENCY),
            *(math.ceil(n / settings.PROBE_PER_DESTINATION) for n in per_destination.values()),
        )
        # Connect and service exchange may each take the timeout; a task whose worker died
        # comes back after the visibility timeout, and the run waits for that too.
        probing = rounds * timeout * 2 + settings.CELERY_VISIBILITY_TIMEOUT
        deadline = timezone.now() + datetime.timedelta(seconds=settings.PROBE_QUEUE_GRACE + probing)
        live = WorkerHeartbeat.objects.live_sites()
        with transaction.atomic():
            # Counted and created under the team's row lock: concurrent starts take turns, in any process.
            Team.objects.select_for_update(no_key=True).filter(pk=deployment.team_id).exists()
            if limited and cls.objects.started_recently_by(deployment.team_id) >= settings.PROBE_RUNS_PER_MINUTE:
                raise TooManyRuns(f"Your team started {settings.PROBE_RUNS_PER_MINUTE} probe runs in the last minute.")
            run = cls.objects.create(
                deployment=deployment,
                requested_by=user,
                timeout=timeout,
                deadline=deadline,
                total=len(items),
                pending={site: sorted(ids) for site, ids in sorted(pending.items())},
                change_request=change_request,
            )
            for site in sorted(pending):
                if site not in live:
                    run.abandon_pending(f"no live probe worker in site {site!r}", sites=[site])
            for site in sorted(pending):
                if site in live:
                    transaction.on_commit(lambda site=site: run.send(site))
        return run

    def send(self, site: str) -> None:
        """Hand the site's task, with its checks, to the broker; if it cannot take it, close the
        site's items with that reason (and say so in `unsent`), rather than wait for a deadline
        that blames the workers."""
        if self.unsent:  # the broker did not take the previous site: no more waiting on it
            self.abandon_pending(self.unsent, sites=[site])
            return
        checks, refused = self.checks(site)
        if refused:
            ProbeRun.record(self.pk, "portal", refused)
        if not checks:
            return
        try:
            send(
                PROBE_SITE,
                (self.pk, site, checks, self.timeout),
                queue=site_queue(site),
                # Straight into the site's list: its broker user may write its queue's routing
                # entry, which the centre therefore never reads.
                exchange="",
                routing_key=site_queue(site),
                declare=[],
                task_id=f"probe-run-{self.pk}-{site}",
            )
        except BrokerUnavailable as unavailable:
            self.unsent = f"not sent to the probe workers: {unavailable}"
            self.abandon_pending(self.unsent, sites=[site])

    def checks(self, site: str) -> tuple[list[dict], dict[int, dict]]:
        """The engine's checks of the site's pending items, as the task carries them; anything that
        is not a rule of this deployment (any more) is refused, so that the portal can never be
        turned into a port scanner, whatever a run row says."""
        ids = self.pending.get(site, [])
        # Columns, not model instances: a run of thousands of rules is sent while the API waits.
        columns = ("deployment_id", "destination", "port_start", "port_end", "protocol", "requirement__service")
        items = {row[0]: row[1:] for row in ChecklistItem.objects.filter(pk__in=ids).values_list("pk", *columns)}
        pins = self.deployment.tls_pins.values_list("host", "port", "pin")
        pins = {(host, port): pin for host, port, pin in pins}
        checks, refused = [], {}
        for item_id in ids:
            deployment_id, host, port_start, port_end, protocol, service = items.get(item_id, (None,) * 6)
            if deployment_id != self.deployment_id:
                reason = "refused: not a rule of this deployment's checklist"
                refused[item_id] = {"state": ProbeState.ERROR, "summary": reason, "evidence": {"reason": reason}}
                continue
            check = Check(item_id, host, port_start, port_end, protocol, service, pins.get((host, port_start), ""))
            checks.append(dataclasses.asdict(check))
        return checks, refused

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def progress(self) -> dict[str, int]:
        return {"done": self.done, "total": self.total}

    @classmethod
    def record(cls, run_id: int, worker: str, outcomes: dict[int, dict], site: str | None = None) -> int:
        """The recorder: write the outcomes of some of a run's items (by item id), as a site's
        worker sent them; returns how many were new.

        Only items still pending in the run are written, so a batch sent twice (a redelivered
        task probes again) changes nothing; with `site` (the site that sent them, as the broker
        knows it), only the items this run sent to that site: a site cannot write another's.
        Per item, only what changed is written (LatestProbe.record): a result that says what the
        item's current state says writes nothing of its own, the run's `probed` ranges and
        `checked` time say that it was checked. The run's progress (and its end) is one update,
        and the batch is kept as one ProbeBatch row until it is purged: a handful of rows per
        thousand results.
        """
        outcomes = {int(item_id): clean_outcome(outcome) for item_id, outcome in outcomes.items()}
        worker, now = str(worker)[:200], timezone.now()
        with transaction.atomic():
            # The run's deployment first, as a save of the deployment takes it before its items
            # (ports.checklist): the pins, alerts and states written below refer to it, and the
            # recorders take turns per deployment, so that no two compare results with the same
            # current states at once, and what is read below is read after another recorder's batch
            # of it. The lock is the update that says its checklist shows something new (the items'
            # last check, if nothing else): in this transaction, not once committed as
            # checklist_changed() does, since the lock is this transaction's anyway; the states
            # written below are marked changed in the revision it moves to (CHANGED_IN).
            # A batch of a sweep moves the last check of its items without writing them: the
            # deployment's probe revision says so (ports.rows).
            open_run = cls.objects.filter(pk=run_id, finished__isnull=True)
            sweep = open_run.annotate(sweep=models.Case(models.When(total__gt=cls.SMALL, then=1), default=0))
            Deployment.objects.filter(pk=models.Subquery(open_run.values("deployment_id"))).update(
                checklist_revision=models.F("checklist_revision") + 1,
                probe_revision=models.F("probe_revision") + models.Subquery(sweep.values("sweep")),
            )
            # Then the run, and whether a later run of its deployment has found items already (runs
            # may be recorded out of order; mostly none).
            later = cls.objects.filter(
                deployment_id=models.OuterRef("deployment_id"), pk__gt=models.OuterRef("pk"), checked__isnull=False
            )
            run = cls.objects.select_for_update(of=("self",)).filter(pk=run_id, finished__isnull=True)
            # With the revision just moved on, in which the states written below change (CHANGED_IN).
            run = run.annotate(overtaken=models.Exists(later), revision=Deployment.objects.revision_now()).first()
            if run is None:
                return 0  # unknown or closed (deadline, cancel): nothing more is recorded
            written = {
                item_id: pending_site
                for pending_site, ids in run.pending.items()
                if site is None or pending_site == site
                for item_id in ids
                if item_id in outcomes
            }
            if not written:
                return 0
            run.pending = {
                site: rest for site, ids in run.pending.items() if (rest := [i for i in ids if i not in written])
            }
            items = items_now(written)
            results = {
                item_id: outcomes[item_id] | {"site": site, "rule": items[item_id].rule if item_id in items else {}}
                for item_id, site in written.items()
            }
            for result in results.values():
                run.by_state[result["state"]] = run.by_state.get(result["state"], 0) + 1
            run.done += len(written)
            if run.status == RunStatus.QUEUED:
                run.status, run.started = RunStatus.RUNNING, now
            probed = {i: r for i, r in results.items() if r["state"] != ProbeState.NOT_PROBED}
            recorded = LatestProbe.record(run, worker, now, probed, items)
            if recorded.found and not run.small:
                run.probed, run.checked = with_ranges(run.probed, recorded.found), now
            if not run.pending:
                run.close(now)
            run.save(update_fields=cls.PROGRESS)
            if recorded.flips:
                changed = {"flips": recorded.flips, "alerting": recorded.alerting, "items": items}
                signals.states_changed.send(ProbeRun, run=run, **changed)
            for item_id, result in results.items():
                result["previous_state"] = recorded.before.get(item_id, "")
            ProbeBatch.objects.create(run=run, worker=worker, received=now, results=results)
            if run.finished:
                run.closed(abandoned=len(probed) < len(results))
        return len(written)

    def abandon_pending(self, reason: str, sites: list[str] | None = None) -> int:
        """Report the pending items (of some sites) as not probed, saying why."""
        self.refresh_from_db(fields=["pending"])
        ids = [i for site, ids in self.pending.items() if sites is None or site in sites for i in ids]
        outcome = {"state": ProbeState.NOT_PROBED, "summary": reason, "evidence": {"reason": reason}}
        written = ProbeRun.record(self.pk, "portal", dict.fromkeys(ids, outcome)) if ids else 0
        self.refresh_from_db()
        return written

    def close(self, now: datetime.datetime) -> None:
        """End the run (no item is pending any more; read under its lock, as ProbeRun.record reads
        it): its status says how far it got. Saved by the caller with the last batch's progress,
        in the same update."""
        not_probed, total = self.by_state.get(ProbeState.NOT_PROBED, 0), sum(self.by_state.values())
        if self.cancel_requested:
            self.status = RunStatus.CANCELLED
        elif total and not_probed == total:
            self.status = RunStatus.FAILED
        elif not_probed:
            self.status = RunStatus.PARTLY_DONE
        else:
            self.status = RunStatus.DONE
        self.finished, self.pending = now, {}

    def closed(self, abandoned: bool) -> None:
        """What follows the end of a run, once saved: an alert if it probed nothing; and if its
        last batch gave up items (not probed: cancelled, past its deadline, no worker), the site
        workers still probing stop at their next flush. A run whose sites reported every item
        has no worker left to stop: no flag, no trip to the broker."""
        if self.status == RunStatus.FAILED:
            signals.run_failed.send(ProbeRun, run=self)
        signals.run_closed.send(ProbeRun, run=self)
        if abandoned:
            transaction.on_commit(lambda: raise_flag(closed_flag(self.pk)))

    def expire_if_overdue(self) -> None:
        if not self.is_finished and timezone.now() >= self.deadline:
            self.abandon_pending("no worker of the site answered before the run's deadline")

    def cancel(self) -> None:
        ProbeRun.objects.filter(pk=self.pk).update(cancel_requested=True)
        self.cancel_requested = True
        self.abandon_pending("cancelled")

    def results(self) -> list[RunResult]:
        """What this run found per item, from its batches (kept PROBE_RESULT_RETENTION_DAYS days),
        then the items still pending."""
        batches = list(self.batches.order_by("received", "pk"))
        found = [(int(i), batch, result) for batch in batches for i, result in batch.results.items()]
        pending = [(i, site) for site, ids in self.pending.items() for i in ids]
        ids = {i for i, _, _ in found} | {i for i, _ in pending}
        items = ChecklistItem.objects.filter(pk__in=ids).select_related("requirement").in_bulk()
        results = [
            RunResult(run=self.pk, item=items.get(i), worker=batch.worker, checked_at=batch.received, **result)
            for i, batch, result in found
        ]
        # A pending item that has gone from the checklist is no rule any more: nothing to show.
        results += [RunResult(run=self.pk, item=items[i], site=site) for i, site in pending if i in items]
        return sorted(results, key=lambda result: result.item.position if result.item else 0)


STATES = frozenset(ProbeState.values)


class ItemNow(NamedTuple):
    """An item as the recorder reads it with a batch: what it is, which a result keeps (it still
    says which rule it was after the item has gone from the checklist), its rule number, its
    deployment and target, and its current state, as LatestProbe.record compares it (None if
    never probed)."""

    deployment_id: int
    number: int
    rule: dict[str, str]
    target: tuple[str, int]
    current: tuple | None


def items_now(item_ids: Iterable[int]) -> dict[int, ItemNow]:
    """The items by id (removed ones absent), with their current state: one query per batch."""
    ids = list(item_ids)
    if not ids:
        return {}
    if connection.vendor == "postgresql":
        # The ids as one array, in the join's condition too: the states are read by their index,
        # and the statement costs half what Django makes of an IN of hundreds (bench/scale.py).
        item, state = ChecklistItem._meta, LatestProbe._meta
        requirement = item.get_field("requirement").related_model._meta
        statement = (
            "select i.id, i.deployment_id, i.number, r.uid, i.source, i.destination, i.protocol, i.port_start,"
            " i.port_end, "
            f"{', '.join(f's.{state.get_field(name).column}' for name in COMPARED)} "
            f"from {item.db_table} i join {requirement.db_table} r on r.id = i.requirement_id "
            f"left join {state.db_table} s on s.item_id = i.id and s.item_id = any(%(ids)s) where i.id = any(%(ids)s)"
        )
        with connection.cursor() as cursor:
            cursor.execute(statement, {"ids": ids})
            rows = cursor.fetchall()
    else:
        rule = ("requirement__uid", "source", "destination", "protocol", "port_start", "port_end")
        current = [f"{CURRENT_PROBE}__{name}" for name in COMPARED]
        # Unordered: the items' ordering would join their deployment and its team to sort them.
        rows = ChecklistItem.objects.filter(pk__in=ids).order_by()
        rows = rows.values_list("pk", "deployment_id", "number", *rule, *current)
    return {
        pk: ItemNow(
            deployment_id,
            number,
            {
                "requirement": uid,
                "source": source,
                "destination": destination,
                "protocol": protocol,
                "ports": str(PortRange(start, end)),
            },
            (destination, start),
            None if now[1] is None else tuple(now),  # no state: never probed
        )
        for pk, deployment_id, number, uid, source, destination, protocol, start, end, *now in rows
    }


def with_ranges(ranges: list[list[int]], ids: Iterable[int]) -> list[list[int]]:
    """Ranges of ids ([[first, last], ...], in order, apart) with `ids` added: consecutive ids
    join one range, so that a run that swept a deployment holds one range or a few."""
    merged: list[list[int]] = []
    for first, last in sorted([*map(tuple, ranges), *((i, i) for i in ids)]):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def in_ranges(ranges: list[list[int]], item_id: int) -> bool:
    at = bisect.bisect_right(ranges, item_id, key=lambda span: span[0]) - 1
    return at >= 0 and ranges[at][1] >= item_id


class Probed(models.Expression):
    """Whether a run (the query's) probed an item: the item's id (an expression, such as
    OuterRef("pk")) is in one of the run's `probed` ranges. JSON read by the database, as
    PostgreSQL and SQLite each read it."""

    output_field = models.BooleanField()
    conditional = True
    SQL = {
        "postgresql": "EXISTS (SELECT 1 FROM jsonb_array_elements({ranges}) AS span"
        " WHERE (span->>0)::bigint <= {item} AND {item} <= (span->>1)::bigint)",
        "sqlite": "EXISTS (SELECT 1 FROM json_each({ranges}) AS span"
        " WHERE json_extract(span.value, '$[0]') <= {item} AND {item} <= json_extract(span.value, '$[1]'))",
    }

    def __init__(self, item: models.Expression) -> None:
        super().__init__()
        self.ranges, self.item = models.F("probed"), item

    def get_source_expressions(self) -> list[models.Expression]:
        return [self.ranges, self.item]

    def set_source_expressions(self, expressions: list[models.Expression]) -> None:
        self.ranges, self.item = expressions

    def as_sql(self, compiler: object, connection: object) -> tuple[str, tuple]:
        ranges, ranges_params = compiler.compile(self.ranges)
        item, item_params = compiler.compile(self.item)
        sql = self.SQL[connection.vendor].format(ranges=ranges, item=item)
        return sql, (*ranges_params, *item_params, *item_params)


def clean_outcome(outcome: object) -> dict:
    """An outcome as a site sent it, reduced to what a result holds: whatever else a message
    carries (a faulty or compromised site) is dropped, and a malformed one is an error."""
    if not isinstance(outcome, dict) or outcome.get("state") not in STATES:
        return {"state": ProbeState.ERROR, "summary": "the probe site sent a malformed result", "evidence": {}}
    latency = outcome.get("latency_ms")
    return {
        "state": ProbeState.ERROR if outcome["state"] == ProbeState.PENDING else outcome["state"],
        "summary": str(outcome.get("summary") or "")[:2000],
        "latency_ms": float(latency) if isinstance(latency, int | float) else None,
        "address": str(outcome.get("address") or "")[:64],
        "evidence": readable_evidence(outcome.get("evidence")),
    }


# Evidence larger than this (as JSON) is not kept: a probe's is a few hundred bytes.
EVIDENCE_BYTES = 16_000


def is_address(value: object) -> bool:
    try:
        ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        return False
    return True


def readable_evidence(evidence: object) -> dict:
    """Evidence as the pages can show it and PostgreSQL can store it: a dict, without NUL
    characters (a server's banner may hold them), of a sane size, that in_words() can read."""

    def no_nul(value: object) -> object:
        if isinstance(value, str):
            return value.replace("\x00", "")
        if isinstance(value, dict):
            return {no_nul(key): no_nul(item) for key, item in value.items()}
        if isinstance(value, list):
            return [no_nul(item) for item in value]
        return value

    if not evidence or not isinstance(evidence, dict):
        return {}
    dumped = json.dumps(evidence)
    if "\\u0000" in dumped:  # walked only then: the recorder reads thousands a second
        evidence = no_nul(evidence)
        dumped = json.dumps(evidence)
    if len(dumped) > EVIDENCE_BYTES:
        return {"dropped": f"evidence over {EVIDENCE_BYTES} bytes"}
    # Where the traffic stops is an address or nothing: the checklist filters and groups by it.
    evidence = {key: value for key, value in evidence.items() if key not in Stop.values or is_address(value)}
    try:
        in_words(evidence)
    except Exception:  # a shape no probe sends: keep the result, not what cannot be read
        return {"dropped": "evidence that could not be read"}
    return evidence


class ProbeOutcome:
    """What a probe found, with the state before it: the words shared by a run's results, an
    item's current state and its state changes."""

    site: str
    state: str
    previous_state: str
    evidence: dict

    @property
    def changed(self) -> bool:
        return bool(self.previous_state) and self.previous_state != self.state

    @property
    def failing(self) -> bool:
        """The rule does not work (yet): closed on its path, or intercepted."""
        return self.state in FAILING_STATES

    @property
    def regression(self) -> bool:
        """It was open and now is not: a rule that worked broke."""
        return self.previous_state == ProbeState.OPEN and self.state != ProbeState.OPEN

    @property
    def alerting(self) -> bool:
        """A change the team hears of: a rule that broke, or something answering for the server."""
        return self.regression or self.state == ProbeState.INTERCEPTED

    @property
    def evidence_words(self) -> list[str]:
        """The evidence as sentences; a failing probe's path names the site it was probed from."""
        return in_words(self.evidence, site=self.site, state=self.state)


@dataclasses.dataclass
class RunResult(ProbeOutcome):
    """One item's result in a run, as its batch kept it."""

    run: int
    item: ChecklistItem | None
    site: str
    state: str = ProbeState.PENDING
    summary: str = ""
    latency_ms: float | None = None
    address: str = ""
    worker: str = ""
    evidence: dict = dataclasses.field(default_factory=dict)
    checked_at: datetime.datetime | None = None
    previous_state: str = ""
    # Which rule it was, as the recorder kept it (rule_identities): read when the item has gone.
    rule: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.item is not None:
            self.rule = {
                "requirement": self.item.requirement.uid,
                "source": self.item.source,
                "destination": self.item.destination,
                "protocol": self.item.protocol,
                "ports": str(self.item.ports),
            }


class OutcomeColumns(models.Model):
    """The columns of a probe's outcome, in an item's current state and in its state changes."""

    run = models.ForeignKey(ProbeRun, on_delete=models.SET_NULL, null=True, related_name="+")
    site = models.CharField(max_length=50, help_text="The probe site of the item's source.")
    state = models.CharField(max_length=12, choices=ProbeState.choices)
    # The state before this one, blank for an item's first: open -> filtered stands out.
    previous_state = models.CharField(max_length=12, choices=ProbeState.choices, blank=True)
    summary = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    address = models.CharField(max_length=64, blank=True, help_text="The address the probe connected to.")
    worker = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(default=dict)
    checked_at = models.DateTimeField()

    class Meta:
        abstract = True


class LatestProbe(ProbeOutcome, OutcomeColumns):
    """An item's current probe state (the healthchecks model: current state apart from history),
    with `since` when the state last changed. Written only when a result says something new (its
    state, its summary, its site): `checked_at` is then the row's own time, and the run that wrote
    it is `run`. A result that says the same writes nothing here (but in a small run, ProbeRun.SMALL):
    its run keeps that it checked the item (ProbeRun.probed, .checked), and the item's last check
    is the later of the two (last_checked, which ChecklistItemQuerySet.with_latest_probe() gives
    every reader)."""

    item = models.OneToOneField(ChecklistItem, on_delete=models.CASCADE, primary_key=True, related_name="current_probe")
    # Not indexed: every change moves it, and an index on it would turn each update of the row in
    # place (PostgreSQL's HOT update) into a new index entry too (bench/scale.py).
    run = models.ForeignKey(ProbeRun, on_delete=models.SET_NULL, null=True, related_name="+", db_index=False)
    since = models.DateTimeField()
    # The item's deployment, and its checklist revision in which the row was last written
    # (ports.models.CHANGED_IN): a reader of the deployment's rows finds those written since a
    # revision by the index, not by reading all. The index costs a write only where a state is
    # written, a few in a thousand results.
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+", db_index=False)
    changed_in = models.PositiveBigIntegerField(default=0, editable=False)
    # The last time an alert was sent for this item: a flapping rule alerts once per window.
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["deployment", CHANGED_IN], name="latestprobe_changed_in")]

    def __str__(self) -> str:
        return f"{self.item_id}: {self.state} since {self.since}"

    @property
    def changed(self) -> bool:
        """The latest check changed the state."""
        return bool(self.previous_state) and self.checked_at == self.since

    @classmethod
    def last_checked(cls) -> models.Expression:
        """When each item of a ChecklistItem query was last probed: its current state's own time,
        or, later, the last run after it that found it so (its `probed` ranges hold the item).
        Null for an item never probed. The runs are read latest first: the first that holds the
        item is the answer, mostly the deployment's last."""
        later = ProbeRun.objects.filter(
            Probed(models.OuterRef("pk")),
            deployment=models.OuterRef("deployment"),
            pk__gt=models.OuterRef(f"{CURRENT_PROBE}__run"),
            checked__gt=models.OuterRef(f"{CURRENT_PROBE}__checked_at"),
        )
        later = later.order_by("-checked").values("checked")[:1]
        return Coalesce(models.Subquery(later), models.F(f"{CURRENT_PROBE}__checked_at"))

    @classmethod
    def record(
        cls, run: ProbeRun, worker: str, now: datetime.datetime, results: dict[int, dict], items: dict[int, ItemNow]
    ) -> Recorded:
        """Compare a run's results with the items' current states (`items`, read with the batch)
        and write what changed: the state of an item whose result says something new (its state,
        its summary, its site), with a ProbeFlip where the state changed, and the time of the
        alert it raises (a flapping rule alerts once per ALERT_FLAP_WINDOW). A result that says
        the same writes nothing: it is in what the run found (`found`, the run's `probed` ranges).
        An item no longer in the deployment is skipped, and so is an item a later run has found
        already: its result stands. Called under the deployment's lock (ProbeRun.record): the
        recorders take turns per deployment."""
        recorded = Recorded()
        if not results:
            return recorded
        # What the deployment's later runs found already, if there are any (`overtaken`, read with the
        # run under the deployment's lock by ProbeRun.record): an item one of them found keeps it.
        later = []
        if getattr(run, "overtaken", True):
            later = ProbeRun.objects.filter(deployment_id=run.deployment_id, pk__gt=run.pk, checked__isnull=False)
            later = list(later.values_list("probed", flat=True))
        quiet_since = now - datetime.timedelta(seconds=settings.ALERT_FLAP_WINDOW)
        run_id, targets, changing, checked = run.pk, {}, {}, []
        for item_id, result in results.items():
            item = items.get(item_id)
            if item is None or item.deployment_id != run.deployment_id:
                continue
            targets[item_id] = item.target
            last_run, state, summary, site = item.current or (None,) * len(COMPARED)
            recorded.before[item_id] = state or ""
            if (last_run or 0) > run_id or (later and any(in_ranges(ranges, item_id) for ranges in later)):
                continue  # a later run's result stands
            recorded.found.append(item_id)
            new = state is None or (state, site) != (result["state"], result["site"])
            # Another summary is news, but that of a result not traced (a run past its limit of
            # traces): the stop it lacks is not gone, only not looked for this time.
            new = new or (summary != result["summary"] and "not_traced" not in result["evidence"])
            if new:
                changing[item_id] = state or ""
            elif run.small:
                checked.append(item_id)
        if checked:  # a small run's checks that say nothing new: when, on the items (ProbeRun.SMALL)
            cls.objects.filter(item_id__in=checked).update(
                run_id=run_id, checked_at=now, worker=worker, **{CHANGED_IN: run.revision}
            )
        if changing:
            # The written items' locks, in pk order as every writer of items takes them, with what a
            # write keeps of their state: an item stays while its state is written (the deployment's
            # lock does not hold its items), and one removed since it was read is skipped.
            locking = ChecklistItem.objects.select_for_update(of=("self",)).filter(pk__in=changing).order_by("pk")
            kept = {pk: rest for pk, *rest in locking.values_list("pk", *(f"{CURRENT_PROBE}__{name}" for name in KEPT))}
            rows = []
            for item_id, state in changing.items():
                if item_id not in kept:
                    continue
                since, previous, alerted_at = kept[item_id]
                result = results[item_id]
                columns = {name: result.get(name, default) for name, default in OUTCOME_DEFAULTS.items()}
                columns |= {"run_id": run_id, "site": result["site"], "worker": worker, "checked_at": now}
                if state != result["state"]:
                    previous, since = state, now
                    flip = ProbeFlip(item_id=item_id, previous_state=previous, **columns)
                    recorded.flips.append(flip)
                    if flip.alerting and (alerted_at is None or alerted_at <= quiet_since):
                        alerted_at = now
                        recorded.alerting.append(flip)
                columns |= {"previous_state": previous, "since": since, "alerted_at": alerted_at}
                columns[CHANGED_IN] = run.revision
                rows.append({"item_id": item_id, "deployment_id": run.deployment_id, **columns})
            cls.upsert(rows)
            ProbeFlip.objects.bulk_create(recorded.flips)
        remember_first_pins(run, targets, results)
        return recorded

    @classmethod
    def upsert(cls, rows: list[dict]) -> None:
        """The current states a batch writes in one statement (insert, or update where the item has
        one). On PostgreSQL the rows go as plain values: Django's preparation of a thousand model
        instances took longer than the statement itself (bench/probe_run.py)."""
        if connection.vendor != "postgresql":
            instances = [cls(**row) for row in rows]
            cls.objects.bulk_create(instances, update_conflicts=True, unique_fields=["item"], update_fields=UPDATED)
            return
        columns = ["item_id", "deployment_id", *(cls._meta.get_field(name).column for name in UPDATED)]
        keys = ["item_id", "deployment_id", *(cls._meta.get_field(name).attname for name in UPDATED)]
        values = [tuple(Json(row[key]) if key == "evidence" else row[key] for key in keys) for row in rows]
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns[2:])
        statement = (
            f"insert into {cls._meta.db_table} ({', '.join(columns)}) values %s "
            f"on conflict (item_id) do update set {updates}"
        )
        with connection.cursor() as cursor:
            execute_values(cursor.cursor, statement, values, page_size=len(values) or 1)


# What a result carries: the engine's CheckResult, field by field, each a column (blank if absent).
OUTCOME_DEFAULTS = {f.name: LatestProbe._meta.get_field(f.name).get_default() for f in dataclasses.fields(CheckResult)}
# What each written result sets in an item's current state (the rows' keys are their attnames: run_id).
UPDATED = [
    *OUTCOME_DEFAULTS,
    "run",
    "site",
    "worker",
    "checked_at",
    "previous_state",
    "since",
    "alerted_at",
    CHANGED_IN,
]
# What a result is compared with, read from the item's current state with the batch (ItemNow.current).
COMPARED = ["run", "state", "summary", "site"]
# What a write keeps of an item's current state, read (and locked) for the items written only.
KEPT = ["since", "previous_state", "alerted_at"]


@dataclasses.dataclass
class Recorded:
    """What LatestProbe.record did with a run's results."""

    before: dict[int, str] = dataclasses.field(default_factory=dict)  # each item's state before ("" if none)
    flips: list[ProbeFlip] = dataclasses.field(default_factory=list)  # the state changes, written
    alerting: list[ProbeFlip] = dataclasses.field(default_factory=list)  # the changes to alert of now
    found: list[int] = dataclasses.field(default_factory=list)  # the items this run found, changed or not


class ProbeFlip(ProbeOutcome, OutcomeColumns):
    """A change of an item's probe state (open -> filtered), with what the probe saw: the history
    and the regressions come from these, one row per change rather than one per probe."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="probe_flips")

    class Meta:
        ordering = ["-checked_at", "-pk"]
        indexes = [models.Index(fields=["item", "-checked_at", "-id"], name="probeflip_history")]

    def __str__(self) -> str:
        return f"{self.item_id}: {self.previous_state or 'new'} -> {self.state}"


class WrittenJSONField(models.JSONField):
    """JSON written once and read whole, never queried into: on PostgreSQL a `json` column (the
    text as sent) rather than `jsonb`, whose parsing into its binary form cost a batch of results
    more than the rest of its insert (bench/scale.py). Elsewhere a JSONField as any other."""

    def db_type(self, connection: object) -> str:
        return "json" if connection.vendor == "postgresql" else super().db_type(connection)

    def get_db_prep_value(self, value: object, connection: object, prepared: bool = False) -> object:
        if connection.vendor == "postgresql" and value is not None:
            return json.dumps(value, cls=self.encoder, separators=(",", ":"))  # a literal PostgreSQL takes as json
        return super().get_db_prep_value(value, connection, prepared)

    def from_db_value(self, value: object, expression: object, connection: object) -> object:
        if not isinstance(value, str):  # psycopg2 reads json itself
            return value
        return super().from_db_value(value, expression, connection)


class ProbeBatch(models.Model):
    """Results of a run as the recorder took them, one row per batch: kept for
    PROBE_RESULT_RETENTION_DAYS days (purge_old_results), for the run's own page."""

    run = models.ForeignKey(ProbeRun, on_delete=models.CASCADE, related_name="batches")
    worker = models.CharField(max_length=200)
    received = models.DateTimeField(db_index=True)
    # {item id: {"state", "summary", "latency_ms", "address", "evidence", "site", "previous_state", "rule"}}
    results = WrittenJSONField()

    class Meta:
        ordering = ["run", "received", "pk"]

    def __str__(self) -> str:
        return f"{len(self.results)} results of run {self.run_id}"


def remember_first_pins(run: ProbeRun, targets: dict[int, tuple[str, int]], results: dict[int, dict]) -> None:
    """Trust on first use: the first certificate a TLS service shows is the one expected later."""
    seen = {}
    for item_id, (host, port) in targets.items():
        result = results[item_id]
        evidence = result.get("evidence") or {}
        if result["state"] == ProbeState.OPEN and "pin" in evidence:
            seen[(host, port)] = evidence
    if not seen:
        return
    known = set(TlsPin.objects.filter(deployment_id=run.deployment_id).values_list("host", "port"))
    TlsPin.objects.bulk_create(
        [
            TlsPin(
                deployment_id=run.deployment_id,
                host=host,
                port=port,
                pin=evidence["pin"],
                issuer=str(evidence.get("issuer", ""))[:500],
                source=PinSource.FIRST_SEEN,
            )
            for (host, port), evidence in seen.items()
            if (host, port) not in known
        ],
        ignore_conflicts=True,
    )
    # Logged as the portal's own change (bulk_create saves no instance), each with the id it got:
    # the pins not known above are this call's, as the recorder holds its deployment's lock.
    trusted = TlsPin.objects.filter(deployment_id=run.deployment_id)
    ObjectChange.objects.bulk_create(
        ObjectChange.of(
            run.deployment.team_id,
            ChangeAction.CREATED,
            ChangedObject.TLS_PIN,
            pin.pk,
            str(pin),
            None,
            pin.logged(),
            deployment=run.deployment,
        )
        for pin in trusted
        if (pin.host, pin.port) not in known
    )


class TlsPin(Logged):
    """The certificate public key a TLS service of a deployment is expected to present."""

    LOGGED = ("host", "port", "pin", "source")
    CHANGED_OBJECT = ChangedObject.TLS_PIN

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="tls_pins")
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField()
    pin = models.CharField(max_length=60, help_text="sha256/<base64 of the SubjectPublicKeyInfo's SHA-256>")
    issuer = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=12, choices=PinSource.choices)
    created = models.DateTimeField(auto_now_add=True)

    objects = DeploymentPartQuerySet.as_manager()

    class Meta:
        ordering = ["deployment", "host", "port"]
        constraints = [models.UniqueConstraint(fields=["deployment", "host", "port"], name="tlspin_unique_service")]

    def __str__(self) -> str:
        return f"{self.host}:{self.port} {self.pin}"

    @classmethod
    def expect(cls, deployment: Deployment, host: str, port: int, pin: str) -> tuple[TlsPin, str]:
        """Expect `pin` of the TLS service at host:port (the unique key), and say what that did:
        created; updated, when the service had another pin or one a probe trusted on first use
        (the admin's replaces it); unchanged, when it already expects this one (a create repeated)."""
        wanted = {"pin": pin, "source": PinSource.EXPECTED, "issuer": ""}
        with transaction.atomic():
            found, created = cls.objects.select_for_update().get_or_create(
                deployment=deployment, host=host, port=port, defaults=wanted
            )
            if created:
                return found, Outcome.CREATED
            if all(getattr(found, name) == value for name, value in wanted.items()):
                return found, Outcome.UNCHANGED
            for name, value in wanted.items():
                setattr(found, name, value)
            found.save(update_fields=list(wanted))
            return found, Outcome.UPDATED


class AlertChannel(Logged):
    """Where a team's alerts go: an email address (Django's SMTP backend) or a webhook URL
    (JSON, signed with HMAC-SHA256 of `secret` in the X-Portal-Signature header)."""

    LOGGED = ("name", "kind", "target", "enabled", "kinds")  # not its secret
    CHANGED_OBJECT = ChangedObject.ALERT_CHANNEL

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="alert_channels")
    name = models.CharField(max_length=100, validators=[validate_name])
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    target = models.CharField(max_length=500, help_text="An email address, or an http(s) URL.")
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    enabled = models.BooleanField(default=True)
    # The kinds of alert it carries (AlertKind values): whoever the team chooses hears of change
    # requests, say, and not of every probe. Empty: every kind.
    kinds = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="alertchannel_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    # What a channel is, beside its unique key (team, name): a create that gives a channel's name
    # and these values again is that channel again (unchanged), anything else under the name a clash.
    SETTINGS = ("kind", "target", "enabled", "kinds")

    def carries(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds

    @property
    def carried(self) -> list[str]:
        """The kinds it carries, in words (none: every kind)."""
        return [AlertKind(kind).label for kind in self.kinds]

    def has_settings(self, fields: dict[str, object]) -> bool:
        """Whether the channel is what `fields` say; a setting left out is its default (enabled)."""
        return all(
            getattr(self, name) == fields.get(name, self._meta.get_field(name).get_default()) for name in self.SETTINGS
        )

    def clean(self) -> None:
        """The target fits the kind (the form calls this; the API's serializer calls the same check)."""
        try:
            validate_channel_target(self.kind, self.target)
        except ValidationError as invalid:
            raise ValidationError({"target": invalid.messages}) from invalid


class Alert(models.Model):
    """Something a team should hear about; delivered once to each of its enabled channels."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=15, choices=AlertKind.choices)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    site = models.CharField(max_length=50, blank=True)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    details = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["team", "kind", "site", "-created"], name="alert_by_kind")]

    def __str__(self) -> str:
        return self.subject

    @classmethod
    def raise_for(
        cls, team_id: int, kind: str, subject: str, body: str, channels: list[AlertChannel] | None = None, **fields
    ) -> Alert:
        """Create the alert and a delivery per channel (the team's enabled ones unless named),
        and send each from a worker once the transaction commits."""
        alert = cls.objects.create(team_id=team_id, kind=kind, subject=subject[:300], body=body, **fields)
        if channels is None:
            enabled = AlertChannel.objects.filter(team_id=team_id, enabled=True)
            channels = [channel for channel in enabled if channel.carries(kind)]
        deliveries = AlertDelivery.objects.bulk_create(AlertDelivery(alert=alert, channel=c) for c in channels)

        def enqueue() -> None:
            for delivery in deliveries:
                try:
                    send("probes.tasks.deliver_alert", (delivery.pk,))
                except BrokerUnavailable as unavailable:
                    delivery.fail(str(unavailable))

        transaction.on_commit(enqueue)
        return alert

    def payload(self) -> dict:
        """The webhook's JSON body."""
        return {
            "id": self.pk,
            "kind": self.kind,
            "team": self.team.name,
            "deployment": self.deployment_id,
            "site": self.site or None,
            "subject": self.subject,
            "text": self.body,
            "details": self.details,
            "created": self.created.isoformat(),
        }


class AlertDelivery(models.Model):
    """One alert to one channel: tried with exponential backoff until sent or out of tries."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When the worker tries again (tasks.deliver_alert, as it schedules the retry): set while a
    # failed delivery waits for its next try, cleared once it is sent or has failed for good.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["alert", "channel"]
        constraints = [models.UniqueConstraint(fields=["alert", "channel"], name="alertdelivery_unique")]

    def __str__(self) -> str:
        return f"{self.alert} to {self.channel}: {self.status}"

    def fail(self, error: str, final: bool = True, next_attempt_at: datetime.datetime | None = None) -> None:
        """A try failed: for good (`final`), or to be tried again at `next_attempt_at`."""
        self.attempts += 1
        self.last_error = error[:2000]
        self.next_attempt_at = None if final else next_attempt_at
        if final:
            self.status = DeliveryStatus.FAILED
        self.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])

    @property
    def this_try(self) -> int:
        """The number of the try under way or waited for, while pending (the first is 1)."""
        return self.attempts + 1
