"""Deployments: appliances with their interfaces, the hosts of the other roles, peer networks."""

from __future__ import annotations

import datetime
import operator
from collections.abc import Collection
from functools import reduce

from django.db import models, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Lower

from ..addresses import address_of
from ..choices import (
    Feature,
    ProbeSchedule,
    Role,
)
from ..rules import PortRange
from ..validators import (
    parse_cron,
    validate_cron,
    validate_host,
    validate_name,
    validate_network,
    validate_site,
    validate_text,
)
from .catalog import PORT_VALIDATORS, CatalogVersion, Requirement
from .teams import Team, TeamScopedQuerySet

# A deployment's parts that sit in a probe site, by their related names.
SITED_PARTS = ("appliances", "hosts", "peer_networks")


class DeploymentQuerySet(TeamScopedQuerySet):
    def checklist_changed(self, items: Collection[int] = ()) -> None:
        """Say that these deployments' checklists show something new, once the transaction commits,
        in a transaction of its own: their revision moves on, and `items` (the pks of theirs that
        changed) are marked changed in it (ports.models.CHANGED_IN), under the deployments' locks,
        so that a reader that has their rows as of a revision finds them among those changed since.
        Not in the writer's transaction, which may hold what a writer holding a deployment waits
        for (its items, a change request)."""

        def changed() -> None:
            with transaction.atomic():
                self.update(checklist_revision=F("checklist_revision") + 1)
                if items:
                    marked = self.model._meta.get_field("checklist").related_model.objects.filter(pk__in=items)
                    marked.update(changed_in=self.revision_now())

        transaction.on_commit(changed)

    def revision_now(self) -> Subquery:
        """The checklist revision of the deployment of each row of an update of its parts."""
        return Subquery(self.filter(pk=OuterRef("deployment_id")).values("checklist_revision")[:1])

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
