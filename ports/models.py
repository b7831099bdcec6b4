from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .choices import CatalogTable, Feature, Interface, ItemStatus, Protocol, Role, Service
from .validators import validate_host, validate_network, validate_site

PORT_VALIDATORS = [MinValueValidator(1), MaxValueValidator(65535)]


def format_ports(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

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
    footnotes = models.JSONField(default=list, help_text="[{kind, mark, text}] of the row's asterisks.")
    notes = models.JSONField(default=list, help_text="Why an interpretation was chosen.")
    features = models.JSONField(default=list, help_text="Applies when any of these is in use; [] = always.")
    service = models.CharField(max_length=20, choices=Service.choices)

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
    def ports(self) -> str:
        return format_ports(self.port_start, self.port_end)

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


class DeploymentQuerySet(models.QuerySet):
    def for_user(self, user: object) -> DeploymentQuerySet:
        return self.filter(team__members=user)

    def with_status_counts(self) -> DeploymentQuerySet:
        # Meta.ordering does not apply to aggregating queries: order explicitly.
        return self.annotate(
            **{f"count_{s}": models.Count("checklist", filter=Q(checklist__status=s)) for s in ItemStatus.values}
        ).order_by("team__name", "name")


def default_features() -> list[str]:
    return [Feature.PEM, Feature.SMD]


class Deployment(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    catalog_version = models.ForeignKey(CatalogVersion, on_delete=models.PROTECT, related_name="deployments")
    dlp_base_port = models.PositiveIntegerField(
        default=17500,
        validators=[MinValueValidator(1), MaxValueValidator(65535 - 15)],
        help_text="Start of the configurable DLP range; the range's 16 ports move with it.",
    )
    features = models.JSONField(default=default_features, help_text="Optional features in use.")
    # The checklist's derivation: what could not become a rule (no host for a role, an
    # appliance without an address on the interfaces a rule needs), for the admin to fix.
    checklist_warnings = models.JSONField(default=list, editable=False)
    checklist_generated_at = models.DateTimeField(null=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="deployment_unique_name")]

    def __str__(self) -> str:
        return self.name

    def status_counts(self) -> dict[str, int]:
        """Checklist items per status (annotated by DeploymentQuerySet.with_status_counts, or queried)."""
        if hasattr(self, "count_todo"):
            return {status: getattr(self, f"count_{status}") for status in ItemStatus.values}
        counts = dict(self.checklist.order_by().values_list("status").annotate(n=models.Count("pk")))
        return {status: counts.get(status, 0) for status in ItemStatus.values}

    def dlp_ports(self, requirement: Requirement) -> tuple[int, int]:
        """The requirement's ports in this deployment: a configurable range moves with its base."""
        if not requirement.base_configurable:
            return requirement.port_start, requirement.port_end
        offset = self.dlp_base_port - (self.catalog_version.configurable_base_default or self.dlp_base_port)
        return requirement.port_start + offset, requirement.port_end + offset


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
            models.UniqueConstraint(fields=["deployment", "hostname"], name="appliance_unique_hostname"),
            models.CheckConstraint(
                condition=Q(c_address__isnull=False) | Q(p1_address__isnull=False) | Q(p2_address__isnull=False),
                name="appliance_has_address",
            ),
        ]

    def __str__(self) -> str:
        return self.hostname

    def address(self, interface: str) -> str | None:
        return getattr(self, f"{interface.lower()}_address")

    def interface_for(self, requirement: Requirement) -> str | None:
        """The interface a rule uses on this appliance: the recommended one if it has an
        address, otherwise the first of the page's allowed interfaces that has one."""
        preferred = [requirement.recommended_interface] if requirement.recommended_interface else []
        for interface in preferred + list(requirement.interfaces):
            if self.address(interface):
                return interface
        return None


class Host(models.Model):
    """A host playing an off-appliance role (Security Manager, Log Server, DNS, ...)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="hosts")
    role = models.CharField(max_length=20, choices=Role.choices)
    name = models.CharField(max_length=100)
    address = models.CharField(max_length=253, validators=[validate_host], help_text="IP address or hostname.")
    site = models.CharField(max_length=50, default="default", validators=[validate_site])

    class Meta:
        ordering = ["deployment", "role", "name"]
        constraints = [models.UniqueConstraint(fields=["deployment", "role", "name"], name="host_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()})"


class PeerNetwork(models.Model):
    """Where peers come from (end users, sending mail servers): a CIDR or "any"."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="peer_networks")
    role = models.CharField(max_length=20, choices=Role.choices)
    name = models.CharField(max_length=100)
    network = models.CharField(max_length=50, validators=[validate_network], help_text='CIDR, or "any".')
    site = models.CharField(max_length=50, default="default", validators=[validate_site])

    class Meta:
        ordering = ["deployment", "role", "name"]
        constraints = [models.UniqueConstraint(fields=["deployment", "role", "name"], name="peernetwork_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.network})"


# --- Checklist ----------------------------------------------------------------------


class ChecklistItem(models.Model):
    """One concrete firewall rule of a deployment, derived from a requirement.

    The endpoints are copied from the deployment when the checklist is generated, so the
    checklist reads as one query and an export shows exactly what was asked for.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="checklist")
    requirement = models.ForeignKey(Requirement, on_delete=models.PROTECT, related_name="+")
    # Identity of the rule across regenerations: requirement uid, endpoints, protocol, ports.
    key = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
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
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.TODO)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Bumped on every status change; the ETag of the item, for optimistic concurrency.
    revision = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["deployment", "position"]
        constraints = [models.UniqueConstraint(fields=["deployment", "key"], name="checklistitem_unique_key")]
        indexes = [models.Index(fields=["deployment", "position"], name="checklistitem_ordering")]

    def __str__(self) -> str:
        return f"{self.source} -> {self.destination} {self.ports}/{self.protocol}"

    @property
    def ports(self) -> str:
        return format_ports(self.port_start, self.port_end)

    @property
    def etag(self) -> str:
        return f'"{self.pk}-{self.revision}"'

    def change_status(self, status: str, user: object, comment: str = "", expected_revision: int | None = None) -> None:
        """Move the item to `status` and record who, when and why.

        With `expected_revision` (from If-Match), a change made by someone else in the
        meantime wins: StaleRevision is raised and nothing is written.
        """
        with transaction.atomic():
            current = ChecklistItem.objects.select_for_update().only("status", "revision").get(pk=self.pk)
            if expected_revision is not None and current.revision != expected_revision:
                raise StaleRevision(current.revision)
            self.revision = current.revision
            if current.status == status and not comment:
                return
            now = timezone.now()
            StatusChange.objects.create(
                item=self, from_status=current.status, to_status=status, user=user, comment=comment
            )
            self.status, self.status_changed_at, self.revision = status, now, current.revision + 1
            self.save(update_fields=["status", "status_changed_at", "revision"])


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


class ChecklistExport(models.Model):
    """A rule set handed out (change request, firewall syntax), kept by its fingerprint so
    that a later export can say what changed since."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="exports")
    fingerprint = models.CharField(max_length=64)
    kind = models.CharField(max_length=20)
    rules = models.JSONField(help_text="[{requirement, source, destination, protocol, port_start, port_end}]")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "-created"]
        indexes = [models.Index(fields=["deployment", "fingerprint"], name="checklistexport_fingerprint")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.deployment} ({self.fingerprint[:12]})"


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

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Change request job {self.pk} of {self.deployment}"

    def advance(self, progress: int, stage: str, **fields: object) -> None:
        ChangeRequestJob.objects.filter(pk=self.pk).update(progress=progress, stage=stage, **fields)
