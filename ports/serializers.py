from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models.manager import BaseManager
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .addresses import is_ip_address
from .choices import (
    HOST_ROLES,
    NETWORK_ROLES,
    CatalogTable,
    Feature,
    Interface,
    ItemStatus,
    ProbeSchedule,
    Protocol,
    Role,
    Service,
)
from .models import (
    SITED_PARTS,
    Appliance,
    CatalogVersion,
    ChangeRequestJob,
    ChecklistCounts,
    Deployment,
    Host,
    PeerNetwork,
    Product,
    Requirement,
    StatusChange,
    Team,
)
from .rules import FROM_APPLIANCE, TO_APPLIANCE, Rule
from .scoping import owning_team
from .strict import Strict
from .validators import normalize_address

# --- Catalog ------------------------------------------------------------------------


class CatalogVersionSerializer(serializers.ModelSerializer):
    product = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    product_name = serializers.CharField(source="product.name", read_only=True)
    requirement_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = CatalogVersion
        fields = [
            "id",
            "product",
            "product_name",
            "version",
            "source_title",
            "source_file",
            "warning",
            "configurable_base_default",
            "content_sha256",
            "loaded_at",
            "requirement_count",
        ]


class RequirementSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="uid", help_text="Stable id, the same in every catalog version.")
    product = serializers.CharField(source="version.product.slug")
    version = serializers.CharField(source="version.version")
    interfaces = serializers.ListField(child=serializers.CharField())
    features = serializers.ListField(child=serializers.CharField())
    notes = serializers.SerializerMethodField(help_text="The row's footnotes, then how the row was read.")
    warning = serializers.CharField(source="version.warning", help_text="Do not drop, block or decrypt.")

    class Meta:
        model = Requirement
        fields = [
            "id",
            "product",
            "version",
            "table",
            "row",
            "interface_text",
            "interfaces",
            "recommended_interface",
            "port_text",
            "port_start",
            "port_end",
            "protocol",
            "protocol_inferred",
            "direction",
            "initiator",
            "listener",
            "description",
            "footnotes",
            "notes",
            "features",
            "service",
            "warning",
        ]

    def get_notes(self, requirement: Requirement) -> list[str]:
        return [note["text"] for note in requirement.footnotes] + list(requirement.notes)


# --- Deployments --------------------------------------------------------------------


class ApplianceSerializer(Strict, serializers.ModelSerializer):
    class Meta:
        model = Appliance
        fields = ["hostname", "c_address", "p1_address", "p2_address", "site"]
        validators = []  # uniqueness across the list: DeploymentSerializer.validate_appliances

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, dict):  # before DRF's address field drops a zone id silently
            errors = {
                f"{interface}_address": [f'"{data[key]}" has a zone id (%...): give the address alone.']
                for interface in ("c", "p1", "p2")
                if isinstance(data.get(key := f"{interface}_address"), str) and "%" in data[key]
            }
            if errors:
                raise serializers.ValidationError(errors)
        attrs = super().to_internal_value(data)
        errors = {}
        for name in ("c_address", "p1_address", "p2_address"):
            if attrs.get(name):
                try:
                    attrs[name] = normalize_address(attrs[name])
                except DjangoValidationError as invalid:
                    errors[name] = invalid.messages
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def validate(self, attrs: dict) -> dict:
        if not any(attrs.get(f"{interface}_address") for interface in ("c", "p1", "p2")):
            raise serializers.ValidationError({"c_address": "An appliance needs an address on C, P1 or P2."})
        return attrs


class HostSerializer(Strict, serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=[(role.value, role.label) for role in HOST_ROLES])

    class Meta:
        model = Host
        fields = ["role", "name", "address", "site"]
        validators = []

    def validate_address(self, value: str) -> str:
        return normalize_address(value) if is_ip_address(value) else value


class PeerNetworkSerializer(Strict, serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=[(role.value, role.label) for role in NETWORK_ROLES])

    class Meta:
        model = PeerNetwork
        fields = ["role", "name", "network", "site"]
        validators = []


def duplicate_errors(rows: list[dict], fields: tuple[str, ...], message: str) -> list[dict]:
    """Per-row errors for rows whose `fields` repeat an earlier row's (names compared without
    regard to case, as DNS and the database constraints do), or [] if none do."""
    seen = Counter()
    errors = []
    for row in rows:
        key = tuple(str(row.get(f)).casefold() for f in fields)
        seen[key] += 1
        errors.append({fields[-1]: [message]} if seen[key] > 1 else {})
    return errors if any(errors) else []


def duplicate_address_errors(appliances: list[dict]) -> list[dict]:
    """Per-appliance errors for an interface address that another interface already has."""
    seen: set[str] = set()
    errors = []
    for appliance in appliances:
        row = {}
        for interface in ("c", "p1", "p2"):
            address = appliance.get(f"{interface}_address")
            if address and address in seen:
                row[f"{interface}_address"] = [f"{address} is already the address of another interface."]
            if address:
                seen.add(address)
        errors.append(row)
    return errors if any(errors) else []


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class CatalogVersionField(serializers.Field):
    """A catalog version by id or by version string; the current version when omitted."""

    default_error_messages = {"unknown": "No catalog version {value!r}."}

    def to_internal_value(self, data: object) -> CatalogVersion:
        versions = CatalogVersion.objects.select_related("product")
        text = str(data)
        if not text.isprintable():
            self.fail("unknown", value=data)
        version = (
            versions.filter(pk=int(text)).first() if text.isascii() and text.isdigit() and len(text) < 10 else None
        )
        version = version or versions.filter(version=str(data)).order_by("-loaded_at").first()
        if version is None:
            self.fail("unknown", value=data)
        return version

    def to_representation(self, value: CatalogVersion) -> str:
        return value.version


class ChecklistSummarySerializer(serializers.Serializer):
    """How far a deployment's checklist is: items per status, and what could not become a rule."""

    total = serializers.IntegerField()
    todo = serializers.IntegerField()
    requested = serializers.IntegerField()
    opened = serializers.IntegerField()
    verified = serializers.IntegerField()
    waived = serializers.IntegerField()
    generated_at = serializers.DateTimeField(allow_null=True)
    fingerprint = serializers.CharField(help_text="SHA-256 of the checklist's rule set.")
    warnings = serializers.ListField(child=serializers.CharField())

    def to_representation(self, deployment: Deployment) -> dict:
        counts = ChecklistCounts.of_one(deployment).statuses
        generated = deployment.checklist_generated_at
        return {
            "total": sum(counts.values()),
            **counts,
            "generated_at": self.fields["generated_at"].to_representation(generated) if generated else None,
            "fingerprint": deployment.checklist_fingerprint,
            "warnings": deployment.checklist_warnings,
        }


class DeploymentListSerializer(serializers.ListSerializer):
    """Deployments as a list: their checklists counted together (ChecklistCounts.of), not one by one."""

    def to_representation(self, data: Iterable[Deployment]) -> list[dict]:
        deployments = list(data.all() if isinstance(data, BaseManager) else data)
        ChecklistCounts.of(deployments)
        return super().to_representation(deployments)


class DeploymentSerializer(Strict, serializers.ModelSerializer):
    """A deployment as a whole document: appliances, hosts and networks are replaced, not merged.

    It validates and represents; ports.deployments.save_deployment() is what saves.
    """

    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all(), required=False)
    catalog_version = CatalogVersionField(required=False)
    features = serializers.ListField(
        child=serializers.ChoiceField(Feature.choices), required=False, help_text="Optional features in use."
    )
    appliances = ApplianceSerializer(many=True, required=False)
    hosts = HostSerializer(many=True, required=False)
    peer_networks = PeerNetworkSerializer(many=True, required=False)
    checklist = ChecklistSummarySerializer(source="*", read_only=True)
    answer_keys = ("outcome",)  # a write's answer, sent back as it is, is a document too

    class Meta:
        model = Deployment
        list_serializer_class = DeploymentListSerializer
        fields = [
            "id",
            "team",
            "name",
            "description",
            "catalog_version",
            "dlp_base_port",
            "features",
            "probe_schedule",
            "probe_cron",
            "appliances",
            "hosts",
            "peer_networks",
            "checklist",
            "created",
            "updated",
        ]
        # Uniqueness of (team, name) is checked in validate(), where team may default.
        validators = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = self.context.get("user") or (request.user if request is not None else None)
        if user is not None and user.is_authenticated:
            self.fields["team"].queryset = Team.objects.for_user(user)

    def save(self, **kwargs: object) -> None:
        raise NotImplementedError("Deployments are saved by ports.deployments.save_deployment().")

    def validate_features(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate_appliances(self, rows: list[dict]) -> list[dict]:
        at_most(rows, settings.MAX_APPLIANCES, "appliances", "MAX_APPLIANCES")
        errors = duplicate_errors(rows, ("hostname",), "Another appliance has this hostname.")
        errors = errors or duplicate_address_errors(rows)
        if errors:
            raise serializers.ValidationError(errors)
        return rows

    def validate_hosts(self, rows: list[dict]) -> list[dict]:
        at_most(rows, settings.MAX_HOSTS, "hosts", "MAX_HOSTS")
        if errors := duplicate_errors(rows, ("role", "name"), "Another host of this role has this name."):
            raise serializers.ValidationError(errors)
        return rows

    def validate_peer_networks(self, rows: list[dict]) -> list[dict]:
        at_most(rows, settings.MAX_HOSTS, "peer networks", "MAX_HOSTS")
        if errors := duplicate_errors(rows, ("role", "name"), "Another network of this role has this name."):
            raise serializers.ValidationError(errors)
        return rows

    def validate(self, attrs: dict) -> dict:
        instance: Deployment | None = self.instance
        team = attrs["team"] = owning_team(self, attrs)
        schedule = attrs.get("probe_schedule", instance.probe_schedule if instance else "")
        cron = attrs.get("probe_cron", instance.probe_cron if instance else "")
        if schedule == ProbeSchedule.CRON and not cron:
            raise serializers.ValidationError({"probe_cron": ["Give the cron expression of the schedule."]})
        name = attrs.get("name", instance.name if instance else None)
        clash = Deployment.objects.filter(team=team, name=name).exclude(pk=instance.pk if instance else None)
        if clash.exists():
            raise serializers.ValidationError({"name": f"Team {team} already has a deployment named {name!r}."})

        version = attrs.get("catalog_version") or (instance.catalog_version if instance else None)
        if version is None:
            version = attrs["catalog_version"] = default_catalog_version()
            if version is None:
                raise serializers.ValidationError({"catalog_version": "No catalog is loaded yet."})
        base = attrs.get("dlp_base_port", instance.dlp_base_port if instance else 17500)
        if "dlp_base_port" in attrs or "catalog_version" in attrs:
            clashes = dlp_range_clashes(version, base)
            if clashes:
                raise serializers.ValidationError({"dlp_base_port": clashes})
        return attrs

    def is_unchanged(self) -> bool:
        """Whether saving would leave the deployment as it is (for an idempotent upsert)."""
        current = self.to_representation(self.instance)
        for name, value in self.validated_data.items():
            field = self.fields[name]
            if name in SITED_PARTS:
                # Through an unsaved row, so that model defaults (site) count as given.
                model = field.child.Meta.model
                rows = [dict(field.child.to_representation(model(**row))) for row in value]
                if sorted_rows(rows) != sorted_rows(current[name]):
                    return False
            elif field.to_representation(value) != current[name]:
                return False
        return True


def at_most(rows: list, limit: int, what: str, setting: str) -> None:
    if len(rows) > limit:
        raise serializers.ValidationError(f"At most {limit} {what} per deployment ({setting}); this has {len(rows)}.")


def sorted_rows(rows: list[dict]) -> list[str]:
    """Rows in a comparable order (their values may be None or text)."""
    return sorted(json.dumps(dict(row), sort_keys=True) for row in rows)


def default_catalog_version() -> CatalogVersion | None:
    product = Product.objects.filter(slug="forcepoint-email-security").first()
    return CatalogVersion.objects.current().filter(product=product).first()


def dlp_range_clashes(version: CatalogVersion, base: int) -> list[str]:
    """Why a DLP base port cannot be used: the moved range must stay within the port space and
    clear of the other ports its listener (the DLP server) answers on."""
    default = version.configurable_range
    if default is None:
        return []
    moved = default.shifted(base - default.start)
    if moved.end > 65535:
        return [f"The range {moved} ends above 65535; the highest base port is {65535 - moved.count + 1}."]
    configurable = [r for r in version.requirements.all() if r.base_configurable]
    listeners = {(r.listener, r.protocol) for r in configurable}
    return [
        f"The range {moved} overlaps {r.ports}/{r.protocol} ({r.description}, {r.uid})."
        for r in version.requirements.all()
        if not r.base_configurable and (r.listener, r.protocol) in listeners and r.ports.overlaps(moved)
    ]


# --- Checklist ----------------------------------------------------------------------


class RuleSerializer(serializers.Serializer):
    """A firewall rule, flat: the columns of rules.Rule.as_dict()."""

    requirement = serializers.CharField(help_text="The catalog requirement's stable id.")
    table = serializers.ChoiceField(CatalogTable.choices)
    source_role = serializers.ChoiceField(Role.choices)
    source_name = serializers.CharField()
    source = serializers.CharField(help_text="An address, hostname, CIDR or any.")
    source_site = serializers.CharField()
    destination_role = serializers.ChoiceField(Role.choices)
    destination_name = serializers.CharField()
    destination = serializers.CharField(help_text="An address, hostname, CIDR or any.")
    destination_site = serializers.CharField()
    interface = serializers.ChoiceField(Interface.choices, help_text="The appliance's interface the rule uses.")
    protocol = serializers.ChoiceField(Protocol.choices)
    port_start = serializers.IntegerField()
    port_end = serializers.IntegerField()
    ports = serializers.CharField(help_text='The port or range as text: "25", "17500-17515".')
    direction = serializers.ChoiceField(
        [TO_APPLIANCE, FROM_APPLIANCE], help_text="The flow as a firewall sees it: to or from the appliance."
    )
    path = serializers.CharField(help_text="Initiator → listener, by role.")
    vendor_direction = serializers.CharField(help_text="The vendor page's own direction word, as written there.")
    description = serializers.CharField(help_text="The vendor page's description: why the rule is needed.")
    notes = serializers.ListField(child=serializers.CharField(), help_text="The row's footnotes.")
    service = serializers.ChoiceField(Service.choices, help_text="What answers on the port.")
    carries_tls = serializers.BooleanField(
        help_text="It carries TLS (directly or by STARTTLS): exempt it from SSL decryption and inspection."
    )

    def to_representation(self, rule: Rule) -> dict:
        return rule.as_dict()


class StatusChangeSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = StatusChange
        fields = ["from_status", "to_status", "user", "comment", "at"]


class StatusUpdateSerializer(Strict, serializers.Serializer):
    status = serializers.ChoiceField(ItemStatus.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, attrs: dict) -> dict:
        # A waived rule is one the firewall will not get: the reason is what an auditor asks for.
        if attrs["status"] == ItemStatus.WAIVED and not attrs["comment"].strip():
            raise serializers.ValidationError({"comment": ["Say why the rule is waived: a waiver needs a reason."]})
        return attrs


class FieldChangeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The requirement's stable id.")
    changes = serializers.DictField(
        child=serializers.DictField(child=serializers.JSONField()), help_text="{field: {from, to}}"
    )


class CatalogDiffSerializer(serializers.Serializer):
    """What a newer catalog version adds, removes and changes (CatalogVersion.diff)."""

    from_ = serializers.CharField()
    to = serializers.CharField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = FieldChangeSerializer(many=True)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")  # a keyword in Python, a field name in the answer
        return fields


class RuleIdentitySerializer(serializers.Serializer):
    """What makes a rule the rule it is (rules.IDENTITY_FIELDS), as an export keeps it."""

    requirement = serializers.CharField()
    source = serializers.CharField()
    destination = serializers.CharField()
    protocol = serializers.ChoiceField(Protocol.choices)
    port_start = serializers.IntegerField()
    port_end = serializers.IntegerField()
    ports = serializers.CharField()


class ChecklistDiffSerializer(serializers.Serializer):
    since = serializers.CharField(help_text="The earlier export's fingerprint.")
    now = serializers.CharField(help_text="The fingerprint of the rules now.")
    added = RuleSerializer(many=True)
    removed = RuleIdentitySerializer(many=True)


class ChangeRequestJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChangeRequestJob
        fields = [
            "id",
            "deployment",
            "status",
            "progress",
            "stage",
            "rule_count",
            "fingerprint",
            "error",
            "created",
            "finished",
        ]
        read_only_fields = fields
