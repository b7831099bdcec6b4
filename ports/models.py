from __future__ import annotations

import datetime
import operator
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import reduce

from django.conf import settings
from django.core.cache import caches
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Lower
from django.db.models.lookups import IsNull
from django.utils import timezone
from django.utils.functional import cached_property

from .acting import current_actor
from .addresses import address_of
from .broker import BrokerUnavailable, send
from .choices import (
    CatalogTable,
    ChangeAction,
    ChangedObject,
    ChangeSource,
    Feature,
    Interface,
    ItemStatus,
    Outcome,
    ProbeSchedule,
    Protocol,
    RequestAction,
    RequestState,
    Role,
    Service,
    Stop,
    TeamRole,
)
from .rules import FOOTNOTE_MARKS, Endpoint, PortRange, Rule
from .signals import request_moved
from .validators import (
    parse_cron,
    validate_cron,
    validate_host,
    validate_name,
    validate_network,
    validate_site,
    validate_text,
)

PORT_VALIDATORS = [MinValueValidator(1), MaxValueValidator(65535)]


class TeamScopedQuerySet(models.QuerySet):
    """The one place that decides what a user may see, and change: the objects of the teams they
    belong to (with `role`, of those where their role is at least that: TeamRole)."""

    team_field = "team"  # the lookup from the model to its Team ("" for the teams themselves)

    def for_user(self, user: object, role: str = TeamRole.VIEWER) -> TeamScopedQuerySet:
        to_team = f"{self.team_field}__" if self.team_field else ""
        member = {f"{to_team}memberships__user": user}
        if role != TeamRole.VIEWER:  # in the same filter(): the same membership's role
            member[f"{to_team}memberships__role__in"] = TeamRole.at_least(role)
        return self.filter(**member)


class TeamQuerySet(TeamScopedQuerySet):
    team_field = ""


class DeploymentPartQuerySet(TeamScopedQuerySet):
    """Objects that belong to a deployment (items, runs, jobs, pins): its team's."""

    team_field = "deployment__team"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[validate_name])
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams", blank=True)
    # The probe schedule of the team's deployments that do not set their own.
    probe_schedule = models.CharField(max_length=10, choices=ProbeSchedule.choices, default=ProbeSchedule.OFF)
    probe_cron = models.CharField(max_length=100, blank=True, validators=[validate_cron])

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# --- Catalog -----------------------------------------------------------------------


class Product(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    vendor = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CatalogVersionQuerySet(models.QuerySet):
    def current(self) -> CatalogVersionQuerySet:
        """Each product's most recently loaded version."""
        newer = CatalogVersion.objects.filter(product=OuterRef("product"), loaded_at__gt=OuterRef("loaded_at"))
        return self.filter(~Exists(newer))


class CatalogVersion(models.Model):
    """One revision of a vendor's port matrix, loaded from a data file; never edited after."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=50)
    source_title = models.CharField(max_length=200)
    source_file = models.CharField(max_length=200)
    warning = models.TextField(help_text="The vendor's warning that holds for every rule.")
    # SHA-256 of the canonical content, so that reloading the same file is a no-op and
    # loading a different file under the same version is refused.
    content_sha256 = models.CharField(max_length=64)
    # The vendor's default start of the configurable DLP range (17500), if the version has one.
    configurable_base_default = models.PositiveIntegerField(null=True, blank=True)
    loaded_at = models.DateTimeField(auto_now_add=True)

    objects = CatalogVersionQuerySet.as_manager()

    class Meta:
        ordering = ["product", "-loaded_at"]
        constraints = [models.UniqueConstraint(fields=["product", "version"], name="catalogversion_unique_version")]

    def __str__(self) -> str:
        return f"{self.product} {self.version}"

    def diff(self, newer: CatalogVersion) -> dict:
        """What a newer vendor revision adds, removes and changes, by requirement id."""
        before = {r.uid: r for r in self.requirements.all()}
        after = {r.uid: r for r in newer.requirements.all()}
        changed = []
        for uid in sorted(before.keys() & after.keys()):
            fields = {
                name: {"from": getattr(before[uid], name), "to": getattr(after[uid], name)}
                for name in Requirement.COMPARED_FIELDS
                if getattr(before[uid], name) != getattr(after[uid], name)
            }
            if fields:
                changed.append({"id": uid, "changes": fields})
        return {
            "from": self.version,
            "to": newer.version,
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": changed,
        }

    @cached_property
    def configurable_range(self) -> PortRange | None:
        """The vendor's default of the range whose start a deployment may move (17500-17515)."""
        ranges = [r.ports for r in self.requirements.all() if r.base_configurable]
        return max(ranges, key=len) if ranges else None

    @cached_property
    def footnotes(self) -> list[dict]:
        """The catalog's footnotes, each once, in the order of their signs: [{kind, sign, mark, text}]."""
        notes: dict[str, dict] = {}
        for requirement in self.requirements.all():
            for note in requirement.footnotes:
                notes.setdefault(note["kind"], note)
        return sorted(notes.values(), key=lambda note: FOOTNOTE_MARKS.index(note["sign"]))


class Requirement(models.Model):
    """A flow the product needs: one row of the vendor's page per port and protocol."""

    version = models.ForeignKey(CatalogVersion, on_delete=models.CASCADE, related_name="requirements")
    uid = models.CharField(max_length=100, help_text="Stable id, the same in every catalog version.")
    table = models.CharField(max_length=20, choices=CatalogTable.choices)
    row = models.PositiveSmallIntegerField(help_text="Row of the table on the vendor's page, from 1.")
    interface_text = models.CharField(max_length=50, help_text="The page's own interface column.")
    interfaces = models.JSONField(help_text="Appliance interfaces allowed, in the page's order.")
    recommended_interface = models.CharField(max_length=2, choices=Interface.choices, blank=True)
    port_text = models.CharField(max_length=50, help_text="The page's own port column.")
    port_start = models.PositiveIntegerField(validators=PORT_VALIDATORS)
    port_end = models.PositiveIntegerField(validators=PORT_VALIDATORS)
    protocol = models.CharField(max_length=3, choices=Protocol.choices)
    protocol_inferred = models.BooleanField(default=True)
    direction = models.CharField(max_length=20, help_text="The page's own direction word.")
    initiator = models.CharField(max_length=20, choices=Role.choices)
    listener = models.CharField(max_length=20, choices=Role.choices)
    description = models.TextField(help_text="The page's own description.")
    footnotes = models.JSONField(
        default=list, help_text="[{kind, mark, text, sign}] of the row's asterisks: the vendor's mark, our sign."
    )
    notes = models.JSONField(default=list, help_text="Why an interpretation was chosen.")
    features = models.JSONField(default=list, help_text="Applies when any of these is in use; [] = always.")
    service = models.CharField(max_length=20, choices=Service.choices)

    # What a catalog diff compares: what a firewall rule follows from, and its wording.
    COMPARED_FIELDS = [
        "table",
        "interfaces",
        "port_start",
        "port_end",
        "protocol",
        "direction",
        "initiator",
        "listener",
        "description",
    ]

    class Meta:
        ordering = ["version", "table", "row", "uid"]
        constraints = [
            models.UniqueConstraint(fields=["version", "uid"], name="requirement_unique_uid"),
            models.CheckConstraint(condition=Q(port_end__gte=models.F("port_start")), name="requirement_port_order"),
        ]
        indexes = [models.Index(fields=["version", "table", "row", "uid"], name="requirement_ordering")]

    def __str__(self) -> str:
        return f"{self.uid} ({self.ports}/{self.protocol})"

    @property
    def ports(self) -> PortRange:
        return PortRange(self.port_start, self.port_end)

    @property
    def footnote_kinds(self) -> set[str]:
        return {note["kind"] for note in self.footnotes}

    @property
    def whole_range_required(self) -> bool:
        return "whole_range" in self.footnote_kinds

    @property
    def base_configurable(self) -> bool:
        return "configurable_base" in self.footnote_kinds

    def applies_to(self, features: list[str]) -> bool:
        return not self.features or bool(set(self.features) & set(features))


# --- Deployments --------------------------------------------------------------------


# A deployment's parts that sit in a probe site, by their related names.
SITED_PARTS = ("appliances", "hosts", "peer_networks")


class DeploymentQuerySet(TeamScopedQuerySet):
    def checklist_changed(self) -> None:
        """Say that these deployments' checklists show something new, once the transaction
        commits: after it, so that this never waits for a deployment row that a regeneration
        holds while it waits for the same items."""
        transaction.on_commit(lambda: self.update(checklist_revision=F("checklist_revision") + 1))

    def sites(self) -> set[str]:
        """The probe sites these deployments' appliances, hosts and peer networks are in: where a
        firewall zone is needed, and which deployments a site's workers serve."""
        found = (self.order_by().values_list(f"{part}__site", flat=True) for part in SITED_PARTS)
        return {site for sites in found for site in sites if site is not None}

    def probed_from(self) -> set[str]:
        """The sites these deployments' rules are probed from: their sources' sites."""
        return set(self.order_by().values_list("checklist__source_site", flat=True).distinct()) - {None}

    def in_site(self, site: str) -> DeploymentQuerySet:
        """The deployments with an appliance, host or peer network in the site (a subquery per
        kind of part: joining all three would multiply their rows)."""
        found = (self.model.objects.filter(**{f"{part}__site": site}).values("pk") for part in SITED_PARTS)
        return self.filter(reduce(operator.or_, (Q(pk__in=deployments) for deployments in found)))


def default_features() -> list[str]:
    return [Feature.PEM, Feature.SMD]


class Deployment(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=100, validators=[validate_name])
    description = models.TextField(blank=True, validators=[validate_text])
    catalog_version = models.ForeignKey(CatalogVersion, on_delete=models.PROTECT, related_name="deployments")
    dlp_base_port = models.PositiveIntegerField(
        default=17500,
        validators=PORT_VALIDATORS,
        help_text="Start of the configurable DLP range; the range's ports move with it.",
    )
    features = models.JSONField(default=default_features, help_text="Optional features in use.")
    # The checklist's derivation: what could not become a rule (no host for a role, an
    # appliance without an address on the interfaces a rule needs), for the admin to fix.
    checklist_warnings = models.JSONField(default=list, editable=False)
    checklist_generated_at = models.DateTimeField(null=True, editable=False)
    # SHA-256 of the whole checklist's rule set (rules.fingerprint), kept with every regeneration.
    checklist_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    # Bumped whenever what the checklist shows changes (rules, a status, a latest probe), so
    # that a rendering of it can be kept and reused until then (and answered with 304).
    checklist_revision = models.PositiveBigIntegerField(default=0, editable=False)
    # Bumped by each batch of a probe run that keeps its checks on itself (a sweep, not a small
    # run): the last check of any of its rules may have moved. Rows kept of the checklist
    # (ports.rows) are of one probe revision; within it, a row moves only with its own item.
    probe_revision = models.PositiveBigIntegerField(default=0, editable=False)
    # Continuous verification: blank takes the team's schedule. Beat starts a run when
    # next_probe_at has come, claiming it with a conditional update (Deployment.claim_probe).
    probe_schedule = models.CharField(max_length=10, choices=ProbeSchedule.choices, blank=True, default="")
    probe_cron = models.CharField(max_length=100, blank=True, validators=[validate_cron])
    next_probe_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    # The highest rule number ever given to one of its flows: a number is never given twice,
    # so "rule 73" of an earlier change request never names another flow.
    last_rule_number = models.PositiveIntegerField(default=0, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="deployment_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def checklist_generation(self) -> tuple:
        """What names one generation of its checklist: when it was generated, from which catalog
        version. All of its rules but their status and probe moves only with a new one (ports.rows)."""
        return (self.checklist_generated_at, self.catalog_version_id)

    @cached_property
    def checklist_counts(self) -> ChecklistCounts:
        """Its checklist in numbers, as of its revision (ChecklistCounts.of counts a list's at once)."""
        return ChecklistCounts.of([self])[self.pk]

    def status_counts(self) -> dict[str, int]:
        """Checklist items per status."""
        return self.checklist_counts.statuses

    def ports_for(self, requirement: Requirement) -> PortRange:
        """The requirement's ports in this deployment: a configurable range moves with its base."""
        if not requirement.base_configurable:
            return requirement.ports
        return requirement.ports.shifted(self.dlp_offset)

    @property
    def dlp_offset(self) -> int:
        return self.dlp_base_port - (self.catalog_version.configurable_base_default or self.dlp_base_port)

    def schedule(self) -> tuple[str, str]:
        """The probe schedule in force, and its cron expression: the deployment's, or its team's."""
        if self.probe_schedule:
            return self.probe_schedule, self.probe_cron
        return self.team.probe_schedule, self.team.probe_cron

    def next_probe(self, after: datetime.datetime) -> datetime.datetime | None:
        """When the schedule in force next asks for a probe run after `after`; None when off."""
        schedule, cron = self.schedule()
        if schedule == ProbeSchedule.HOURLY:
            return after + datetime.timedelta(hours=1)
        if schedule == ProbeSchedule.DAILY:
            return after + datetime.timedelta(days=1)
        if schedule == ProbeSchedule.CRON and cron:
            due = after + parse_cron(cron).remaining_estimate(after)
            return due.replace(microsecond=0) + datetime.timedelta(seconds=1)
        return None

    def claim_probe(self, now: datetime.datetime) -> bool:
        """Take this due run for the caller: moves next_probe_at on only if nobody else did since
        it was read, so two beats (or two workers of one beat) never start the same run twice."""
        claimed = Deployment.objects.filter(pk=self.pk, next_probe_at=self.next_probe_at).update(
            next_probe_at=self.next_probe(now)
        )
        return bool(claimed)

    def sites(self) -> set[str]:
        """The network sites its appliances, hosts and peer networks are in."""
        return Deployment.objects.filter(pk=self.pk).sites()

    @property
    def dlp_range(self) -> PortRange | None:
        """The configurable DLP range at this deployment's base port, if its catalog has one."""
        default = self.catalog_version.configurable_range
        return default.shifted(self.dlp_offset) if default else None


class Appliance(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="appliances")
    hostname = models.CharField(max_length=253, validators=[validate_host])
    c_address = models.GenericIPAddressField("C address", null=True, blank=True)
    p1_address = models.GenericIPAddressField("P1 address", null=True, blank=True)
    p2_address = models.GenericIPAddressField("P2 address", null=True, blank=True)
    site = models.CharField(max_length=50, default="default", validators=[validate_site])

    class Meta:
        ordering = ["deployment", "hostname"]
        constraints = [
            # Hostnames are case-insensitive: ESA1 and esa1 are the same appliance.
            models.UniqueConstraint("deployment", Lower("hostname"), name="appliance_unique_hostname"),
            models.CheckConstraint(
                condition=Q(c_address__isnull=False) | Q(p1_address__isnull=False) | Q(p2_address__isnull=False),
                name="appliance_has_address",
            ),
        ]

    def __str__(self) -> str:
        return self.hostname

    def address(self, interface: str) -> str | None:
        return getattr(self, f"{interface.lower()}_address")

    def interface_for(self, requirement: Requirement, family: int | None = None) -> str | None:
        """The interface a rule uses on this appliance: the recommended one if it has an
        address, otherwise the first of the page's allowed interfaces that has one; with a
        `family` (4 or 6, the peer's), only an interface whose address is of that family."""
        preferred = [requirement.recommended_interface] if requirement.recommended_interface else []
        for interface in preferred + list(requirement.interfaces):
            address = self.address(interface)
            if address and (family is None or address_of(address).family == family):
                return interface
        return None


class Host(models.Model):
    """A host playing an off-appliance role (Security Manager, Log Server, DNS, ...)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="hosts")
    role = models.CharField(max_length=20, choices=Role.choices)
    name = models.CharField(max_length=100, validators=[validate_name])
    address = models.CharField(max_length=253, validators=[validate_host], help_text="IP address or hostname.")
    site = models.CharField(max_length=50, default="default", validators=[validate_site])

    class Meta:
        ordering = ["deployment", "role", "name"]
        constraints = [models.UniqueConstraint("deployment", "role", Lower("name"), name="host_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()})"


class PeerNetwork(models.Model):
    """Where peers come from (end users, sending mail servers): a CIDR or "any"."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="peer_networks")
    role = models.CharField(max_length=20, choices=Role.choices)
    name = models.CharField(max_length=100, validators=[validate_name])
    network = models.CharField(max_length=50, validators=[validate_network], help_text='CIDR, or "any".')
    site = models.CharField(max_length=50, default="default", validators=[validate_site])

    class Meta:
        ordering = ["deployment", "role", "name"]
        constraints = [models.UniqueConstraint("deployment", "role", Lower("name"), name="peernetwork_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.network})"


# --- Checklist ----------------------------------------------------------------------


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


class ChecklistItemQuerySet(DeploymentPartQuerySet):
    def row_versions(self) -> models.QuerySet:
        """(pk, number, version) of each item read with_latest_probe(), in the query's order: what
        says whether a rendering of its row is still the one a reader would get (ports.rows). A
        few columns a row, several times cheaper to read than the items."""
        return self.values_list("pk", "number", *ROW_VERSION)

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
            deployments.checklist_changed()
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
            fresh = {pk: cls(dict.fromkeys(ItemStatus.values, 0), {}, {}) for pk in missing}
            items = ChecklistItem.objects.filter(deployment__in=missing).order_by()
            pairs = items.values_list("deployment", "status", f"{CURRENT_PROBE}__state").annotate(n=models.Count("pk"))
            for pk, status, state, n in pairs:
                counts_of = fresh[pk]
                counts_of.pairs[status, state] = n
                counts_of.statuses[status] += n
                counts_of.states[state] = counts_of.states.get(state, 0) + n
            cache.set_many({keys[pk]: value for pk, value in fresh.items()})
            counts |= fresh
        for deployment in deployments:  # each keeps its own (Deployment.checklist_counts)
            deployment.checklist_counts = counts[deployment.pk]
        return counts


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
            Deployment.objects.filter(pk=self.deployment_id).checklist_changed()
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


class ObjectChange(models.Model):
    """One change of one of a team's objects: who made it, when, through what, in which request,
    and the object's fields before and after. The change log, as NetBox's ObjectChange keeps it.

    Written by the write itself, in its transaction (a change and its entry land together or not
    at all), and never changed after: no page, API or admin edits an entry; entries older than
    CHANGE_LOG_RETENTION_DAYS are purged (ports.tasks). A deployment is named by its id and
    name, not a key, so that its entries outlive it: its deletion keeps its last state.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    deployment_id = models.PositiveBigIntegerField(null=True, blank=True)
    deployment_name = models.CharField(max_length=100, blank=True)
    time = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user_name = models.CharField(max_length=150, blank=True)  # as it was: kept when the user goes
    source = models.CharField(max_length=12, choices=ChangeSource.choices)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=8, choices=ChangeAction.choices)
    object_type = models.CharField(max_length=15, choices=ChangedObject.choices)
    object_id = models.PositiveBigIntegerField()
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)  # the object's fields; None for a creation
    after = models.JSONField(null=True, blank=True)  # None for a deletion

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [
            models.Index(fields=["team", "-time", "-id"], name="objectchange_by_team"),
            models.Index(fields=["deployment_id", "-time", "-id"], name="objectchange_by_deployment"),
            models.Index(fields=["time"], name="objectchange_by_age"),
        ]

    def __str__(self) -> str:
        return f"{self.get_object_type_display()} {self.object_repr} {self.action}"

    @classmethod
    def of(
        cls,
        team_id: int,
        action: str,
        object_type: str,
        object_id: int,
        object_repr: str,
        before: dict | None,
        after: dict | None,
        deployment: Deployment | None = None,
        user: object = None,
    ) -> ObjectChange:
        """An entry (unsaved) of a change made now by the current actor (ports.acting); `user`
        where the write names its user and no request does (a status change in a worker)."""
        actor = current_actor()
        who, source = actor.who()
        who = who or user
        return cls(
            team_id=team_id,
            deployment_id=deployment.pk if deployment else None,
            deployment_name=deployment.name if deployment else "",
            user=who,
            user_name=who.get_username() if who else "",
            source=source,
            request_id=actor.request_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=str(object_repr)[:200],
            before=before,
            after=after,
        )

    @classmethod
    def log(cls, *args: object, **kwargs: object) -> ObjectChange:
        """Write the entry of a change (ObjectChange.of's arguments)."""
        entry = cls.of(*args, **kwargs)
        entry.save()
        return entry

    @property
    def diff(self) -> dict[str, dict[str, object]]:
        """The fields that changed, by name, each with its value before and after (None where the
        object was not: its fields set, for a creation or a deletion; an empty one, None or "" or
        [], is no change). By name, as the databases keep a JSON object's keys in orders of their own."""
        before, after = self.before or {}, self.after or {}
        return {
            name: {"before": before.get(name), "after": after.get(name)}
            for name in sorted(before.keys() | after.keys())
            if not_empty(before.get(name)) != not_empty(after.get(name))
        }


def not_empty(value: object) -> object:
    """The value, or None for an empty one (None, "", [], {}): a field nobody filled in."""
    return None if value in (None, "", [], {}) else value


class Logged(models.Model):
    """A model whose saves and deletes each write the change log (ObjectChange) in their own
    transaction, with the LOGGED fields as read before and as saved after; a save that changes
    none of them writes no entry. Writes that bypass save() and delete() (bulk_create, update())
    log themselves."""

    LOGGED: tuple[str, ...] = ()
    CHANGED_OBJECT: str = ""

    class Meta:
        abstract = True

    def save(self, *args: object, **kwargs: object) -> None:
        before = None if self._state.adding else getattr(self, "logged_before", None)
        with transaction.atomic():
            super().save(*args, **kwargs)
            after = self.logged()
            if before is not None:  # a field not read (only(), defer()) is not known to have changed
                before = {name: before.get(name, value) for name, value in after.items()}
            if before != after:
                self.log(ChangeAction.CREATED if before is None else ChangeAction.UPDATED, before, after)
        self.logged_before = after

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        with transaction.atomic():
            self.log(ChangeAction.DELETED, self.logged(), None)
            return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: str | None, field_names: list[str], values: list) -> Logged:
        instance = super().from_db(db, field_names, values)
        loaded = dict(zip(field_names, values, strict=True))
        instance.logged_before = {name: loaded[name] for name in cls.LOGGED if name in loaded}
        return instance

    def logged(self) -> dict:
        return {name: getattr(self, name) for name in self.LOGGED}

    def log(self, action: str, before: dict | None, after: dict | None) -> ObjectChange:
        """Write the change log's entry of this object's change (its team, and deployment if any)."""
        deployment = getattr(self, "deployment", None)
        team_id = deployment.team_id if deployment is not None else self.team_id
        return ObjectChange.log(
            team_id, action, self.CHANGED_OBJECT, self.pk, str(self), before, after, deployment=deployment
        )


class Membership(Logged):
    """A user's place in a team: their role says what they may do with the team's objects. A
    member added without one (team.members.add) is an editor, as every member was before roles.
    The team's admins give the roles (Membership.give, leave); a team keeps at least one admin."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=TeamRole.choices, default=TeamRole.EDITOR)

    LOGGED = ("role",)
    CHANGED_OBJECT = ChangedObject.MEMBERSHIP

    class Meta:
        ordering = ["team", "user"]
        unique_together = [("team", "user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"

    @classmethod
    def role_of(cls, user: object, team_id: int) -> str | None:
        """The user's role in the team (a TeamRole), None for a user who is not its member."""
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return cls.objects.filter(team_id=team_id, user=user).values_list("role", flat=True).first()

    @classmethod
    def give(cls, team: Team, user: object, role: str) -> tuple[Membership, str]:
        """Make `user` a member of `team` with `role`, or give a member that role; what it did
        (an Outcome). LastAdmin if that would leave the team without an admin."""
        with transaction.atomic():
            found, created = cls.objects.select_for_update().get_or_create(
                team=team, user=user, defaults={"role": role}
            )
            if created:
                return found, Outcome.CREATED
            if found.role == role:
                return found, Outcome.UNCHANGED
            found.keep_an_admin()
            found.role = role
            found.save(update_fields=["role"])
            return found, Outcome.UPDATED

    def leave(self) -> None:
        """Take the member out of the team (LastAdmin if they are its last admin)."""
        with transaction.atomic():
            self.keep_an_admin()
            self.delete()

    def keep_an_admin(self) -> None:
        admins = Membership.objects.select_for_update().filter(team_id=self.team_id, role=TeamRole.ADMIN)
        if self.role == TeamRole.ADMIN and not admins.exclude(pk=self.pk).exists():
            raise LastAdmin(f"{self.user} is the last admin of team {self.team}: make another member admin first.")


class LastAdmin(ValueError):
    """A change that would leave a team without an admin."""


class ChecklistExport(models.Model):
    """A rule set handed out (change request, firewall syntax), kept by its fingerprint so
    that a later export can say what changed since."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="exports")
    fingerprint = models.CharField(max_length=64)
    kind = models.CharField(max_length=20)
    rules = models.JSONField(help_text="The rules' identities: [{requirement, source, destination, protocol, ...}].")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "-created"]
        # One row per rule set: exporting it again (or polling the checklist) adds nothing.
        constraints = [
            models.UniqueConstraint(fields=["deployment", "fingerprint"], name="checklistexport_unique_fingerprint")
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.deployment} ({self.fingerprint[:12]})"


@dataclass(frozen=True)
class Transition:
    """A step of a change request's life: from which states, to which, and the role it needs."""

    sources: tuple[str, ...]
    target: str
    role: str


class ChangeRequestQuerySet(DeploymentPartQuerySet):
    def expiring(self, by: datetime.date) -> ChangeRequestQuerySet:
        """The requests whose rules are in place (implemented and after) and expire by `by`,
        with no rollback drafted yet: each is warned of once (ChangeRequest.draft_rollback)."""
        in_place = [RequestState.IMPLEMENTED, RequestState.VERIFIED, RequestState.CLOSED]
        return self.filter(expiry__lte=by, state__in=in_place, rollback_of=None).exclude(rollbacks__isnull=False)


class ChangeRequest(models.Model):
    """A firewall change request for some of a deployment's rules, taken through its life:
    draft -> submitted -> approved or rejected -> implemented -> verified -> closed
    (TRANSITIONS), each step by whom its role allows and kept as a RequestTransition, as the
    change log keeps it too. Approval needs four eyes: neither the requester nor whoever
    submitted it approves or rejects it. "Verified" is reached only when every rule of the
    request probes open or is waived (holding_back() names the others); the probes layer starts
    the probe run when a request is implemented and verifies it when the run proves it."""

    TRANSITIONS = {
        RequestAction.SUBMIT: Transition((RequestState.DRAFT,), RequestState.SUBMITTED, TeamRole.EDITOR),
        RequestAction.APPROVE: Transition((RequestState.SUBMITTED,), RequestState.APPROVED, TeamRole.APPROVER),
        RequestAction.REJECT: Transition((RequestState.SUBMITTED,), RequestState.REJECTED, TeamRole.APPROVER),
        RequestAction.IMPLEMENT: Transition((RequestState.APPROVED,), RequestState.IMPLEMENTED, TeamRole.EDITOR),
        RequestAction.VERIFY: Transition((RequestState.IMPLEMENTED,), RequestState.VERIFIED, TeamRole.EDITOR),
        RequestAction.CLOSE: Transition(
            (RequestState.VERIFIED, RequestState.REJECTED), RequestState.CLOSED, TeamRole.EDITOR
        ),
    }
    FOUR_EYES = (RequestAction.APPROVE, RequestAction.REJECT)
    # What a draft says for the change advisory board (the PDF's fields of the same names).
    FIELDS = ("title", "reference", "justification", "requested_date", "expiry", "rollback")

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="change_requests")
    title = models.CharField(max_length=200, validators=[validate_text])
    reference = models.CharField(max_length=60, blank=True, validators=[validate_text])
    justification = models.TextField(max_length=2000, blank=True)
    requested_date = models.DateField(null=True, blank=True, help_text="When the change is wanted.")
    expiry = models.DateField(null=True, blank=True, help_text="When the rules are to be removed (temporary rules).")
    rollback = models.TextField(max_length=2000, blank=True)
    state = models.CharField(max_length=12, choices=RequestState.choices, default=RequestState.DRAFT)
    items = models.ManyToManyField("ChecklistItem", related_name="change_requests", blank=True)
    # The rules as drafted (number, source, destination, ports, protocol, description): the record
    # of what was asked for, kept when a new generation of the checklist drops an item.
    rules = models.JSONField(default=list)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rollback_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rollbacks")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = ChangeRequestQuerySet.as_manager()

    class Meta:
        ordering = ["deployment", "-created", "-id"]
        indexes = [models.Index(fields=["deployment", "-created", "-id"], name="changerequest_ordering")]

    def __str__(self) -> str:
        return f"CR-{self.pk}: {self.title}"

    @classmethod
    def draft(cls, deployment: Deployment, user: object, items: list[ChecklistItem], **fields: object) -> ChangeRequest:
        """A new draft of these rules, with its CAB fields (FIELDS), in the change log."""
        with transaction.atomic():
            request = cls.objects.create(
                deployment=deployment, requested_by=user, rules=[item.rule_record() for item in items], **fields
            )
            request.items.set(items)
            request.log(ChangeAction.CREATED, None, request.logged())
        return request

    def draft_rollback(self) -> ChangeRequest | None:
        """The draft that removes this request's temporary rules before they expire, drafted by
        the portal; None if one is drafted already (under the request's lock: once)."""
        with transaction.atomic():
            ChangeRequest.objects.select_for_update().filter(pk=self.pk).exists()
            if self.rollbacks.exists():
                return None
            return ChangeRequest.draft(
                self.deployment,
                None,
                list(self.items.select_related("requirement").order_by("number")),
                title=f"Rollback of CR-{self.pk}: {self.title}"[:200],
                reference=self.reference,
                justification=f"The rules of CR-{self.pk} were asked for until {self.expiry}: remove them.",
                requested_date=self.expiry,
                rollback=f"Allow the rules of CR-{self.pk} again.",
                rollback_of=self,
            )

    def logged(self) -> dict:
        fields = {name: getattr(self, name) for name in self.FIELDS}
        dates = {name: value.isoformat() for name, value in fields.items() if isinstance(value, datetime.date)}
        return {**fields, **dates, "state": self.state, "rules": [rule["number"] for rule in self.rules]}

    def log(self, action: str, before: dict | None, after: dict | None) -> ObjectChange:
        return ObjectChange.log(
            self.deployment.team_id,
            action,
            ChangedObject.CHANGE_REQUEST,
            self.pk,
            str(self),
            before,
            after,
            deployment=self.deployment,
        )

    def allowed(self, user: object) -> list[str]:
        """The actions `user` may take now (the page's buttons, the API's `actions`)."""
        role = Membership.role_of(user, self.deployment.team_id)
        return [action for action in self.TRANSITIONS if self.refusal(action, user, role) is None]

    def refusal(self, action: str, user: object, role: str | None) -> RequestRefused | None:
        """Why `user` (of `role` in the team) may not take `action` now; None if they may."""
        step = self.TRANSITIONS[action]
        if self.state not in step.sources:
            return RequestRefused(
                f"A request that is {self.get_state_display().lower()} cannot be taken to "
                f"{RequestState(step.target).label.lower()}.",
                conflict=True,
            )
        if role not in TeamRole.at_least(step.role):
            return RequestRefused(
                f"This needs the role {TeamRole(step.role).label.lower()} in team {self.deployment.team}.",
                forbidden=True,
            )
        if action in self.FOUR_EYES and user is not None and user.pk in self.requesters():
            return RequestRefused(
                "Four eyes: someone other than who requested or submitted it approves or rejects it.", forbidden=True
            )
        return None

    def requesters(self) -> set[int]:
        submitted = self.transitions.filter(action=RequestAction.SUBMIT).values_list("user_id", flat=True)
        return {self.requested_by_id, *submitted} - {None}

    def take(self, action: str, user: object, comment: str = "") -> RequestTransition:
        """Move the request by `action` as `user` (None: the portal itself, which verifies a
        request its probe run proved), saying why in `comment`; RequestRefused if the state, the
        role, four eyes or the rules' probes do not allow it, and nothing changes."""
        with transaction.atomic():
            locked = ChangeRequest.objects.select_for_update().get(pk=self.pk)
            self.state = locked.state
            role = TeamRole.ADMIN if user is None else Membership.role_of(user, self.deployment.team_id)
            refused = self.refusal(action, user, role)
            if refused is not None:
                raise refused
            if action == RequestAction.REJECT and not comment.strip():
                raise RequestRefused("Say why it is rejected (comment).")
            if action == RequestAction.VERIFY and (held := self.holding_back()):
                raise RequestRefused(
                    f"Not verified: {len(held)} of its rules do not probe open ({held_back_words(held)}).",
                    conflict=True,
                    held=held,
                )
            before, self.state = self.state, self.TRANSITIONS[action].target
            self.save(update_fields=["state", "updated"])
            step = self.transitions.create(
                action=action,
                from_state=before,
                to_state=self.state,
                user=user,
                user_name=user.get_username() if user else "",
                comment=comment,
            )
            after = {"state": self.state} | ({"comment": comment} if comment else {})
            self.log(ChangeAction.UPDATED, {"state": before}, after)
            request_moved.send(ChangeRequest, request=self, step=step)
        return step

    def holding_back(self) -> list[tuple[int, str]]:
        """The rules of the request that keep it from being verified, each with why: (number, why);
        a rule is verified by a latest probe that found it open, or by its waiver."""
        held = []
        for item in self.items.with_latest_probe().order_by("number"):
            probe = item.latest_probe
            if item.status == ItemStatus.WAIVED or (probe is not None and probe.state == "open"):
                continue
            held.append((item.number, f"probe {probe.state}" if probe else "never probed"))
        return held


def held_back_words(held: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"rule {number}: {why}" for number, why in held[:10])
    return shown + (f" and {len(held) - 10} more" if len(held) > 10 else "")


class RequestRefused(Exception):
    """A step a change request may not take now: a conflict with its state (409), a role or
    four eyes (403), or anything else (400)."""

    def __init__(self, message: str, conflict: bool = False, forbidden: bool = False, held: list | None = None) -> None:
        super().__init__(message)
        self.conflict, self.forbidden, self.held = conflict, forbidden, held or []


class RequestTransition(models.Model):
    """A change request's step: from which state to which, by whom, when and why (its record)."""

    request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="transitions")
    action = models.CharField(max_length=10, choices=RequestAction.choices)
    from_state = models.CharField(max_length=12, choices=RequestState.choices)
    to_state = models.CharField(max_length=12, choices=RequestState.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user_name = models.CharField(max_length=150, blank=True)  # as it was; "" for the portal itself
    comment = models.TextField(max_length=2000, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["request", "at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"


class ChangeRequestJob(models.Model):
    """A change request rendered by a worker (large checklists), then downloaded."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="change_request_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    params = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent.")
    stage = models.CharField(max_length=100, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    rule_count = models.PositiveIntegerField(null=True)
    pdf = models.BinaryField(null=True, editable=False)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True)

    objects = DeploymentPartQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Change request job {self.pk} of {self.deployment}"

    def advance(self, progress: int, stage: str, **fields: object) -> None:
        ChangeRequestJob.objects.filter(pk=self.pk).update(progress=progress, stage=stage, **fields)

    def send(self) -> None:
        """Hand the job to a worker; if the broker cannot take it, fail the job saying so (and in `unsent`)."""
        self.unsent = ""
        try:
            send("ports.tasks.render_change_request", (self.pk,), task_id=f"change-request-{self.pk}")
        except BrokerUnavailable as unavailable:
            self.unsent = f"not sent to a worker: {unavailable}"
            self.advance(0, "failed", status=self.Status.FAILED, error=self.unsent, finished=timezone.now())
