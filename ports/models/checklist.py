"""A deployment's checklist: its concrete rules (ChecklistItem), their statuses and history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.db.models.lookups import IsNull
from django.utils import timezone
from django.utils.functional import cached_property

from ..choices import (
    ChangeAction,
    ChangedObject,
    Interface,
    ItemStatus,
    Protocol,
    Role,
    Stop,
)
from ..rules import Endpoint, PortRange, Rule
from .catalog import PORT_VALIDATORS, Requirement
from .changes import ObjectChange
from .deployments import Deployment
from .teams import DeploymentPartQuerySet


class RuleColumns(models.Model):
    """A firewall rule (rules.Rule) as columns, for the models that store rules (as NetBox's
    ServiceBase serves its services). `rule` and `columns_of()` convert between the two."""

    requirement = models.ForeignKey(Requirement, on_delete=models.PROTECT, related_name="+")
    source_role = models.CharField(max_length=20, choices=Role.choices)
    source_name = models.CharField(max_length=253)
    source = models.CharField(max_length=253, help_text="Address, hostname, CIDR or any.")
    source_site = models.CharField(max_length=50)
    destination_role = models.CharField(max_length=20, choices=Role.choices)
    destination_name = models.CharField(max_length=253)
    destination = models.CharField(max_length=253)
    destination_site = models.CharField(max_length=50)
    interface = models.CharField(max_length=2, choices=Interface.choices)
    protocol = models.CharField(max_length=3, choices=Protocol.choices)
    port_start = models.PositiveIntegerField(validators=PORT_VALIDATORS)
    port_end = models.PositiveIntegerField(validators=PORT_VALIDATORS)

    class Meta:
        abstract = True

    @cached_property
    def rule(self) -> Rule:
        return Rule(
            self.requirement,
            Endpoint(self.source_role, self.source_name, self.source, self.source_site),
            Endpoint(self.destination_role, self.destination_name, self.destination, self.destination_site),
            self.interface,
            self.protocol,
            PortRange(self.port_start, self.port_end),
        )

    @staticmethod
    def columns_of(rule: Rule) -> dict[str, object]:
        return {
            "requirement_id": rule.requirement.pk,
            "source_role": rule.source.role,
            "source_name": rule.source.name,
            "source": rule.source.address,
            "source_site": rule.source.site,
            "destination_role": rule.destination.role,
            "destination_name": rule.destination.name,
            "destination": rule.destination.address,
            "destination_site": rule.destination.site,
            "interface": rule.interface,
            "protocol": rule.protocol,
            "port_start": rule.ports.start,
            "port_end": rule.ports.end,
        }


RULE_COLUMN_NAMES = [field.attname for field in RuleColumns._meta.fields]


# An item's current probe state is a row the probes app keeps beside it (probes.LatestProbe, whose
# one-to-one field names it `current_probe`); this layer knows it only by that name. Its evidence
# is never read whole with a checklist: only what a row shows, and where a failing rule stops
# (ChecklistItemQuerySet.with_stop, by the evidence's keys that Stop names).
CURRENT_PROBE = "current_probe"
# When the item was last probed, as the probes app derives it (the model behind CURRENT_PROBE,
# its last_checked()): a result that changes nothing writes no row, its run keeps the time.
LAST_CHECKED = "probe_checked_at"
# Where its current probe says the item's traffic stops (ChecklistItemQuerySet.with_stop): the
# device's address, and how (a Stop: the evidence's key that named it).
STOP_AT, STOP_HOW = "stops_at", "stops_how"


# What can change in an item's row within one generation of its checklist and one probe revision
# of its deployment: its revision (which every status change bumps) and its current probe, which
# the probes app writes whole, with the run that wrote it. An item's last check moves otherwise
# only with a batch of a sweep, which bumps Deployment.probe_revision; the rest of an item (its
# rule, names, number, position) only with a new generation (Deployment.checklist_generated_at).
ROW_VERSION = ("revision", f"{CURRENT_PROBE}__run")
# What a checklist's counts count an item by (ChecklistCounts): its status, its current probe's state.
COUNTED = ("status", f"{CURRENT_PROBE}__state")
# The deployment's checklist revision in which a row last changed, on the item (its status) and on
# its current probe (named so in the probes app): written in the transaction that moves the revision
# on, under the deployment's lock (the recorder's own; a status change's once it has committed,
# DeploymentQuerySet.checklist_changed), so that a reader that has a deployment's rows as of one
# revision reads only those changed since (ChecklistItemQuerySet.changed_since, ports.rows).
CHANGED_IN = "changed_in"


class ChecklistItemQuerySet(DeploymentPartQuerySet):
    def row_versions(self) -> models.QuerySet:
        """(pk, number, *version) of each item read with_latest_probe(), in the query's order: what
        says whether a rendering of its row is still the one a reader would get (ports.rows). Its
        version ends with what it is counted by (COUNTED), so that a checklist's versions count it
        too (ChecklistCounts.of_versions). A few columns a row, several times cheaper to read than
        the items."""
        return self.values_list("pk", "number", *ROW_VERSION, *COUNTED)

    def changed_since(self, deployment: Deployment, revision: int) -> ChecklistItemQuerySet:
        """These of the deployment's items whose status or current probe changed after its checklist
        revision `revision` (CHANGED_IN): found by an index on each, a few rows, not all of them."""
        since = {"deployment": deployment, f"{CHANGED_IN}__gt": revision}
        probes = self.model._meta.get_field(CURRENT_PROBE).related_model.objects.filter(**since)
        changed = ChecklistItem.objects.filter(**since).order_by().values("pk")
        return self.filter(pk__in=changed.union(probes.order_by().values("item_id")))

    def with_latest_probe(self) -> ChecklistItemQuerySet:
        """Each item with its current probe state as `latest_probe` (None if never probed), its
        `checked_at` when a probe last found it so: the one join of an item and its latest probe,
        for the API, the pages and the exports."""
        probes = self.model._meta.get_field(CURRENT_PROBE).related_model
        items = self.select_related(CURRENT_PROBE).defer(f"{CURRENT_PROBE}__evidence")
        return items.annotate(**{LAST_CHECKED: probes.last_checked()})

    def with_stop(self) -> ChecklistItemQuerySet:
        """Each item with where its current probe's evidence says the traffic stops: the device's
        address as STOP_AT and how as STOP_HOW (a Stop), None for an item whose evidence names none.
        Two short strings the database reads out of the evidence in the items' own query, the first
        key of Stop's order that is there (Stop.of reads evidence in hand alike): the evidence
        itself is not read (with_latest_probe defers it)."""
        named = {how: KeyTextTransform(how.value, f"{CURRENT_PROBE}__evidence") for how in Stop}
        return self.annotate(
            **{
                STOP_AT: Coalesce(*named.values()),
                STOP_HOW: Case(*(When(IsNull(key, False), then=Value(how.value)) for how, key in named.items())),
            }
        )

    def with_latest_state(self, states: Iterable[str] | None) -> ChecklistItemQuerySet:
        """The items whose latest probe is in one of `states`; with None, those never probed."""
        if states is None:
            return self.filter(**{f"{CURRENT_PROBE}__isnull": True})
        return self.filter(**{f"{CURRENT_PROBE}__state__in": list(states)})

    def latest_state_counts(self) -> dict[str | None, int]:
        """How many items by their latest probe's state (None: never probed)."""
        return dict(self.order_by().values_list(f"{CURRENT_PROBE}__state").annotate(n=models.Count("pk")))

    def change_status(
        self,
        status: str,
        user: object,
        comment: str = "",
        *,
        ids: Collection[int] | None = None,
        dry_run: bool = False,
    ) -> StatusChanges:
        """Move these items to `status` at once, each change kept in its history with who and why
        (ChecklistItem.change_status for many). Items already at `status` are left alone: no
        history row, no new revision, so the same change sent twice changes nothing the second time.

        With `ids`, the selection is exactly those of these items: if one is not among them
        (unknown, another deployment's, removed meanwhile), UnknownItems is raised and nothing is
        written. A dry run answers what would change and writes nothing.

        One transaction, a constant number of statements whatever the number of items. The items
        are locked in pk order, as every writer of items locks them, then read again under the
        lock: a change that landed meanwhile is what the history's `from_status` says, and an item
        that no longer matches the selection (a filter on the status or the latest probe) is left.
        """
        selection = self if ids is None else self.filter(pk__in=ids)
        with transaction.atomic():
            rows = selection
            if not dry_run:  # a preview waits for no writer
                locking = ChecklistItem.objects.filter(pk__in=selection.values("pk")).select_for_update(of=("self",))
                rows = selection.filter(pk__in=list(locking.order_by("pk").values_list("pk", flat=True)))
            rows = rows.order_by("pk").values_list("pk", "status", "deployment_id", "number")
            current = {pk: (was, deployment, number) for pk, was, deployment, number in rows}
            if ids is not None and (unknown := set(ids) - current.keys()):
                raise UnknownItems(sorted(unknown))
            changed = [pk for pk, (was, *_) in current.items() if was != status]
            changes = StatusChanges(
                matched=len(current),
                changed=changed,
                previous=Counter(current[pk][0] for pk in changed),
                dry_run=dry_run,
            )
            if dry_run or not changed:
                return changes
            ChecklistItem.objects.filter(pk__in=changed).update(
                status=status, status_changed_at=timezone.now(), revision=F("revision") + 1
            )
            StatusChange.objects.bulk_create(
                StatusChange(item_id=pk, from_status=current[pk][0], to_status=status, user=user, comment=comment)
                for pk in changed
            )
            deployments = Deployment.objects.filter(pk__in={current[pk][1] for pk in changed})
            named = {d.pk: d for d in deployments.only("pk", "name", "team_id")}
            ObjectChange.objects.bulk_create(
                ChecklistItem.status_logged(named[deployment], pk, number, was, status, comment, user)
                for pk in changed
                for was, deployment, number in [current[pk]]
            )
            deployments.checklist_changed(changed)
        return changes


@dataclass(frozen=True)
class ChecklistCounts:
    """A deployment's checklist in numbers: its items by status, by their latest probe's state
    (None: never probed), and by both. What the deployments list, the checklist's summary and the
    API's deployments show."""

    statuses: dict[str, int]
    states: dict[str | None, int]
    pairs: dict[tuple[str, str | None], int]

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def probed(self) -> int:
        return self.total - self.states.get(None, 0)

    def in_states(self, states: Iterable[str], status: str | None = None) -> int:
        """How many items' latest probe is in one of `states` (of those at `status`, if given)."""
        if status is None:
            return sum(self.states.get(state, 0) for state in states)
        return sum(self.pairs.get((status, state), 0) for state in states)

    @classmethod
    def of(cls, deployments: Iterable[Deployment]) -> dict[int, ChecklistCounts]:
        """The counts of these deployments, by pk, each also kept on its deployment; and kept per
        checklist revision (which every change of a status or a probe state bumps), so that a team's
        list counts anew only the checklists changed since it was last read, not its 100,000 rules.
        Those are counted in one grouped query."""
        deployments = list(deployments)
        cache = caches["counts"]
        keys = {
            deployment.pk: f"checklist-counts-{deployment.pk}-{deployment.checklist_revision}"
            for deployment in deployments
        }
        found = cache.get_many(list(keys.values()))
        counts = {pk: found[key] for pk, key in keys.items() if key in found}
        missing = [pk for pk in keys if pk not in counts]
        if missing:
            items = ChecklistItem.objects.filter(deployment__in=missing).order_by()
            pairs: dict[int, dict[tuple, int]] = {pk: {} for pk in missing}
            for pk, *pair, n in items.values_list("deployment", *COUNTED).annotate(n=models.Count("pk")):
                pairs[pk][tuple(pair)] = n
            fresh = {pk: cls.counted(pairs_of) for pk, pairs_of in pairs.items()}
            cache.set_many({keys[pk]: value for pk, value in fresh.items()})
            counts |= fresh
        for deployment in deployments:  # each keeps its own (ChecklistCounts.of_one)
            deployment.checklist_counts = counts[deployment.pk]
        return counts

    @classmethod
    def counted(cls, pairs: dict[tuple[str, str | None], int]) -> ChecklistCounts:
        """The counts of items by (status, state) pairs (COUNTED)."""
        counts = cls(dict.fromkeys(ItemStatus.values, 0), {}, dict(pairs))
        for (status, state), n in pairs.items():
            counts.statuses[status] += n
            counts.states[state] = counts.states.get(state, 0) + n
        return counts

    @classmethod
    def of_versions(cls, rows: Iterable[tuple]) -> ChecklistCounts:
        """The counts of a checklist's items from their versions (ChecklistItemQuerySet.row_versions())."""
        return cls.counted(Counter(row[-len(COUNTED) :] for row in rows))

    @classmethod
    def of_one(cls, deployment: Deployment) -> ChecklistCounts:
        """The deployment's counts: kept on it if a list counted it (of), counted otherwise."""
        kept = getattr(deployment, "checklist_counts", None)
        return kept if kept is not None else cls.of([deployment])[deployment.pk]


class ChecklistItem(RuleColumns):
    """One concrete firewall rule of a deployment, derived from a requirement.

    The endpoints are copied from the deployment when the checklist is generated, so the
    checklist reads as one query and an export shows exactly what was asked for.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="checklist")
    # The rule's identity across regenerations (Rule.key): requirement, endpoints, protocol, ports.
    key = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
    # The rule number of every export and page. Items of the same flow (Rule.flow) share it,
    # and a flow keeps its number when the checklist is regenerated (new flows get new ones).
    number = models.PositiveIntegerField(default=0)
    # The endpoints' Address.sort_key: the checklist page sorts addresses as numbers.
    source_key = models.CharField(max_length=260, default="", editable=False)
    destination_key = models.CharField(max_length=260, default="", editable=False)
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.TODO)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Bumped on every status change; the ETag of the item, for optimistic concurrency.
    revision = models.PositiveIntegerField(default=1)
    # The deployment's checklist revision of its last status change (CHANGED_IN).
    changed_in = models.PositiveBigIntegerField(default=0, editable=False)

    objects = ChecklistItemQuerySet.as_manager()

    class Meta:
        ordering = ["deployment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "key"], name="checklistitem_unique_key"),
            models.CheckConstraint(condition=Q(number__gte=1), name="checklistitem_numbered"),
        ]
        indexes = [
            models.Index(fields=["deployment", "position"], name="checklistitem_ordering"),
            # The checklist page's first page, by rule number: read in order, not all sorted.
            models.Index(fields=["deployment", "number", "id"], name="checklistitem_by_number"),
            # The items changed since a revision (changed_since).
            models.Index(fields=["deployment", CHANGED_IN], name="checklistitem_changed_in"),
        ]

    def __str__(self) -> str:
        return f"{self.source} -> {self.destination} {self.ports}/{self.protocol}"

    @property
    def ports(self) -> PortRange:
        return PortRange(self.port_start, self.port_end)

    @property
    def latest_probe(self) -> object | None:
        """The current probe state, or None if never probed, with its `checked_at` the item's last
        check (LAST_CHECKED). Read only from the join of ChecklistItemQuerySet.with_latest_probe():
        never one query per item."""
        if CURRENT_PROBE not in self._state.fields_cache or not hasattr(self, LAST_CHECKED):
            raise LookupError("read items with_latest_probe() to show their latest probe")
        probe = getattr(self, CURRENT_PROBE, None)
        if probe is not None:
            probe.checked_at = getattr(self, LAST_CHECKED)
        return probe

    def rule_record(self) -> dict:
        """The rule as a change request keeps it (ChangeRequest.rules): read with its requirement."""
        return {
            "number": self.number,
            "source": self.source,
            "destination": self.destination,
            "ports": str(PortRange(self.port_start, self.port_end)),
            "protocol": self.protocol,
            "description": self.requirement.description,
        }

    @staticmethod
    def status_logged(
        deployment: Deployment, pk: int, number: int, was: str, status: str, comment: str, user: object
    ) -> ObjectChange:
        """The change log's entry (unsaved) of a rule's status change."""
        after = {"status": status} | ({"comment": comment} if comment else {})
        return ObjectChange.of(
            deployment.team_id,
            ChangeAction.UPDATED,
            ChangedObject.RULE,
            pk,
            f"rule {number}",
            {"status": was},
            after,
            deployment=deployment,
            user=user,
        )

    @property
    def etag(self) -> str:
        return f'"{self.pk}-{self.revision}"'

    def change_status(self, status: str, user: object, comment: str = "", expected_revision: int | None = None) -> bool:
        """Move the item to `status` and record who, when and why; whether it changed.

        With `expected_revision` (from If-Match), a change made by someone else in the
        meantime wins: StaleRevision is raised and nothing is written, whatever the status.
        An item already at `status` is left alone, comment or not: no history row, no new
        revision (the same ETag), as ChecklistItemQuerySet.change_status leaves it, so that the
        same change sent twice changes nothing the second time.
        """
        with transaction.atomic():
            current = ChecklistItem.objects.select_for_update().only("status", "revision").get(pk=self.pk)
            if expected_revision is not None and current.revision != expected_revision:
                raise StaleRevision(current.revision)
            self.revision = current.revision
            if current.status == status:
                return False
            now = timezone.now()
            StatusChange.objects.create(
                item=self, from_status=current.status, to_status=status, user=user, comment=comment
            )
            self.status, self.status_changed_at, self.revision = status, now, current.revision + 1
            self.save(update_fields=["status", "status_changed_at", "revision"])
            deployment = Deployment.objects.only("pk", "name", "team_id").get(pk=self.deployment_id)
            self.status_logged(deployment, self.pk, self.number, current.status, status, comment, user).save()
            Deployment.objects.filter(pk=self.deployment_id).checklist_changed([self.pk])
        return True


@dataclass(frozen=True)
class StatusChanges:
    """What ChecklistItemQuerySet.change_status did, or would do (a dry run)."""

    matched: int  # the items selected
    changed: list[int]  # the ids of those whose status changes, in pk order
    previous: Counter[str]  # the changed items' statuses before, e.g. how many waivers are overwritten
    dry_run: bool

    @property
    def unchanged(self) -> int:
        """The items selected that were already at the status."""
        return self.matched - len(self.changed)


class UnknownItems(ValueError):
    def __init__(self, ids: list[int]) -> None:
        shown = ", ".join(map(str, ids[:20])) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        super().__init__(f"Not items of this deployment's checklist: {shown}.")
        self.ids = ids


class StaleRevision(Exception):
    def __init__(self, current_revision: int) -> None:
        super().__init__(f"The item was changed meanwhile (now at revision {current_revision}).")
        self.current_revision = current_revision


class StatusChange(models.Model):
    """History of a checklist item: one row per status change, who, when and why."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=10, choices=ItemStatus.choices)
    to_status = models.CharField(max_length=10, choices=ItemStatus.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    comment = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "at", "pk"]
        indexes = [models.Index(fields=["item", "at"], name="statuschange_ordering")]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status}"
