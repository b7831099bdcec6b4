"""The vendor's port matrix as versioned seed data: products, catalog versions, requirements."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils.functional import cached_property

from ..choices import (
    CatalogTable,
    Interface,
    Protocol,
    Role,
    Service,
)
from ..rules import FOOTNOTE_MARKS, PortRange

PORT_VALIDATORS = [MinValueValidator(1), MaxValueValidator(65535)]


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
