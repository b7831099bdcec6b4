from __future__ import annotations

import datetime
import math
from collections import Counter

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Q
from django.utils import timezone

from ports.models import ChecklistItem, Deployment, DeploymentPartQuerySet, Team

from .choices import FINISHED_STATUSES, PinSource, ProbeState, RunStatus
from .evidence import in_words


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


class ProbeRunQuerySet(DeploymentPartQuerySet):
    def with_progress(self) -> ProbeRunQuerySet:
        # Meta.ordering does not apply to aggregating queries: order explicitly.
        return self.annotate(
            n_total=Count("results"), n_pending=Count("results", filter=Q(results__state=ProbeState.PENDING))
        ).order_by("-created", "-pk")

    def started_recently_by(self, team_id: int) -> int:
        since = timezone.now() - datetime.timedelta(minutes=1)
        return self.filter(deployment__team_id=team_id, created__gte=since).count()


class TooManyRuns(Exception):
    pass


class ProbeRun(models.Model):
    """One request to probe some of a deployment's rules; results are ProbeResult rows."""

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

    objects = ProbeRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["status", "deadline"], name="proberun_open_runs")]

    def __str__(self) -> str:
        return f"Probe run {self.pk} of {self.deployment}"

    @classmethod
    def start(cls, deployment: Deployment, user: object, items: list[ChecklistItem], limited: bool = True) -> ProbeRun:
        """Create the run and its pending results, then enqueue one task per site on commit.

        Items whose site has no live worker are reported as not probed at once. A team starts
        at most PROBE_RUNS_PER_MINUTE runs (TooManyRuns), unless `limited` is False (a command).
        """
        timeout = settings.PROBE_TIMEOUT
        ports = sum(item.port_end - item.port_start + 1 for item in items)
        per_destination = Counter()
        for item in items:
            per_destination[item.destination] += item.port_end - item.port_start + 1
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
            run = cls.objects.create(deployment=deployment, requested_by=user, timeout=timeout, deadline=deadline)
            ProbeResult.objects.bulk_create(ProbeResult(run=run, item=item, site=item.source_site) for item in items)
            sites = sorted({item.source_site for item in items})
            for site in sites:
                if site not in live:
                    run.abandon_pending(f"no live probe worker in site {site!r}", sites=[site])
            run.finish_if_complete()
            run.unsent = ""
            for site in sites:
                if site in live:
                    transaction.on_commit(lambda site=site: run.send(site))
        return run

    def send(self, site: str) -> None:
        """Hand the site's task to the broker; if it cannot take it, close the site's items with
        that reason (and say so in `unsent`), rather than wait for a deadline that blames the workers."""
        from portal.celery import BrokerUnavailable, send

        from .tasks import probe_site
        from .worker import site_queue

        if self.unsent:  # the broker did not take the previous site: no more waiting on it
            self.abandon_pending(self.unsent, sites=[site])
            self.finish_if_complete()
            return
        try:
            send(probe_site, (self.pk, site), queue=site_queue(site), task_id=f"probe-run-{self.pk}-{site}")
        except BrokerUnavailable as unavailable:
            self.unsent = f"not sent to the probe workers: {unavailable}"
            self.abandon_pending(self.unsent, sites=[site])
            self.finish_if_complete()

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def progress(self) -> dict[str, int]:
        """Items done and in all (from with_progress() annotations when present)."""
        if hasattr(self, "n_total"):
            total, pending = self.n_total, self.n_pending
        else:
            counts = self.counts()
            total, pending = sum(counts.values()), counts.get(ProbeState.PENDING, 0)
        return {"done": total - pending, "total": total}

    def counts(self) -> dict[str, int]:
        rows = self.results.order_by().values_list("state").annotate(n=Count("pk"))
        return dict(rows)

    def mark_running(self) -> None:
        """queued -> running, once, whichever site's task gets there first."""
        ProbeRun.objects.filter(pk=self.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started=timezone.now()
        )

    def abandon_pending(self, reason: str, sites: list[str] | None = None) -> int:
        """Report the pending items (of some sites) as not probed, saying why."""
        pending = self.results.filter(state=ProbeState.PENDING)
        if sites is not None:
            pending = pending.filter(site__in=sites)
        with transaction.atomic():
            # The item locks of ProbeResult.record(), in the same order: the two take turns.
            ids = pending.values_list("item_id", flat=True)
            list(ChecklistItem.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
            return pending.update(
                state=ProbeState.NOT_PROBED, summary=reason, evidence={"reason": reason}, checked_at=timezone.now()
            )

    def finish_if_complete(self) -> bool:
        """Close the run once no item is pending; its status says how far it got."""
        counts = self.counts()
        if counts.get(ProbeState.PENDING):
            return False
        not_probed, total = counts.get(ProbeState.NOT_PROBED, 0), sum(counts.values())
        if self.cancel_requested or ProbeRun.objects.filter(pk=self.pk, cancel_requested=True).exists():
            status = RunStatus.CANCELLED
        elif total and not_probed == total:
            status = RunStatus.FAILED
        elif not_probed:
            status = RunStatus.PARTLY_DONE
        else:
            status = RunStatus.DONE
        updated = ProbeRun.objects.filter(pk=self.pk, finished__isnull=True).update(
            status=status, finished=timezone.now()
        )
        if updated:
            self.status = status
        return True

    def expire_if_overdue(self) -> None:
        if not self.is_finished and timezone.now() >= self.deadline:
            self.abandon_pending("no worker of the site answered before the run's deadline")
            self.finish_if_complete()
            self.refresh_from_db()

    def cancel(self) -> None:
        ProbeRun.objects.filter(pk=self.pk).update(cancel_requested=True)
        self.cancel_requested = True
        self.abandon_pending("cancelled")
        self.finish_if_complete()
        self.refresh_from_db()


class ProbeResult(models.Model):
    """What one run found for one checklist item. Created pending with the run; written once."""

    run = models.ForeignKey(ProbeRun, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="probe_results")
    site = models.CharField(max_length=50, help_text="The probe site of the item's source.")
    state = models.CharField(max_length=12, choices=ProbeState.choices, default=ProbeState.PENDING)
    summary = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    address = models.CharField(max_length=64, blank=True, help_text="The address the probe connected to.")
    worker = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(default=dict)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The item's state before this result, so that a change (open -> filtered) stands out.
    previous_state = models.CharField(max_length=12, choices=ProbeState.choices, blank=True)
    is_latest = models.BooleanField(default=False)

    class Meta:
        ordering = ["run", "item"]
        constraints = [
            models.UniqueConstraint(fields=["run", "item"], name="proberesult_unique_item"),
            models.UniqueConstraint(fields=["item"], condition=Q(is_latest=True), name="proberesult_one_latest"),
        ]
        indexes = [models.Index(fields=["run", "state"], name="proberesult_progress")]

    def __str__(self) -> str:
        return f"{self.item}: {self.state}"

    @property
    def changed(self) -> bool:
        return bool(self.previous_state) and self.previous_state != self.state

    @property
    def regression(self) -> bool:
        """It was open and now is not: a rule that worked broke."""
        return self.previous_state == ProbeState.OPEN and self.state != ProbeState.OPEN

    @property
    def evidence_words(self) -> list[str]:
        return in_words(self.evidence)

    @classmethod
    @transaction.atomic
    def record(cls, run_id: int, worker: str, outcomes: dict[int, dict]) -> int:
        """Write the outcomes of some of a run's items, by item id; returns how many were written.

        Only pending rows are written, so a redelivered task that probes an item again
        changes nothing. Each item's previous latest result gives `previous_state`.
        """
        ids = sorted(outcomes)
        # Lock the items so that two writers of the same item (a redelivered task, another
        # run) take turns; the second finds nothing pending.
        list(ChecklistItem.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
        pending = cls.objects.filter(run_id=run_id, item_id__in=ids, state=ProbeState.PENDING)
        written = {item_id: site for item_id, site in pending.values_list("item_id", "site")}
        if not written:
            return 0
        previous = cls.objects.filter(item_id__in=written, is_latest=True)
        previous_state = dict(previous.values_list("item_id", "state"))
        previous.update(is_latest=False)
        # Replacing the pending rows is much faster than bulk_update() of a thousand of them.
        pending.filter(item_id__in=written).delete()
        now = timezone.now()
        cls.objects.bulk_create(
            cls(
                run_id=run_id,
                item_id=item_id,
                site=site,
                worker=worker,
                checked_at=now,
                previous_state=previous_state.get(item_id, ""),
                is_latest=True,
                **outcomes[item_id],
            )
            for item_id, site in written.items()
        )
        Deployment.objects.filter(probe_runs=run_id).checklist_changed()
        return len(written)


class TlsPin(models.Model):
    """The certificate public key a TLS service of a deployment is expected to present."""

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
