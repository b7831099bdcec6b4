from __future__ import annotations

import json
from collections import Counter

from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from probes.choices import ProbeState
from probes.serializers import LatestResultSerializer, ResultHistorySerializer

from .checklist import regenerate_checklist
from .choices import HOST_ROLES, NETWORK_ROLES, Feature, ItemStatus
from .models import (
    Appliance,
    CatalogVersion,
    ChangeRequestJob,
    ChecklistItem,
    Deployment,
    Host,
    PeerNetwork,
    Product,
    Requirement,
    StatusChange,
    Team,
)

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


class ApplianceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Appliance
        fields = ["hostname", "c_address", "p1_address", "p2_address", "site"]

    def validate(self, attrs: dict) -> dict:
        if not any(attrs.get(f"{interface}_address") for interface in ("c", "p1", "p2")):
            raise serializers.ValidationError({"c_address": "An appliance needs an address on C, P1 or P2."})
        return attrs


class HostSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=[(role.value, role.label) for role in HOST_ROLES])

    class Meta:
        model = Host
        fields = ["role", "name", "address", "site"]


class PeerNetworkSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=[(role.value, role.label) for role in NETWORK_ROLES])

    class Meta:
        model = PeerNetwork
        fields = ["role", "name", "network", "site"]


def duplicate_errors(rows: list[dict], fields: tuple[str, ...], message: str) -> list[dict]:
    """Per-row errors for rows whose `fields` repeat an earlier row's, or [] if none do."""
    seen = Counter()
    errors = []
    for row in rows:
        key = tuple(row.get(f) for f in fields)
        seen[key] += 1
        errors.append({fields[-1]: [message]} if seen[key] > 1 else {})
    return errors if any(errors) else []


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class CatalogVersionField(serializers.Field):
    """A catalog version by id or by version string; the current version when omitted."""

    default_error_messages = {"unknown": "No catalog version {value!r}."}

    def to_internal_value(self, data: object) -> CatalogVersion:
        versions = CatalogVersion.objects.select_related("product")
        text = str(data)
        version = (
            versions.filter(pk=int(text)).first() if text.isascii() and text.isdigit() and len(text) < 10 else None
        )
        version = version or versions.filter(version=str(data)).order_by("-loaded_at").first()
        if version is None:
            self.fail("unknown", value=data)
        return version

    def to_representation(self, value: CatalogVersion) -> str:
        return value.version


class DeploymentSerializer(serializers.ModelSerializer):
    """A deployment as a whole document: appliances, hosts and networks are replaced, not merged."""

    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all(), required=False)
    catalog_version = CatalogVersionField(required=False)
    features = serializers.ListField(
        child=serializers.ChoiceField(Feature.choices), required=False, help_text="Optional features in use."
    )
    appliances = ApplianceSerializer(many=True, required=False)
    hosts = HostSerializer(many=True, required=False)
    peer_networks = PeerNetworkSerializer(many=True, required=False)
    checklist = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "team",
            "name",
            "description",
            "catalog_version",
            "dlp_base_port",
            "features",
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
        if request is not None and request.user.is_authenticated:
            self.fields["team"].queryset = Team.objects.filter(members=request.user)

    @extend_schema_field(
        {"type": "object", "properties": {"total": {"type": "integer"}, "warnings": {"type": "array"}}}
    )
    def get_checklist(self, deployment: Deployment) -> dict:
        counts = deployment.status_counts()
        return {
            "total": sum(counts.values()),
            **counts,
            "generated_at": deployment.checklist_generated_at,
            "warnings": deployment.checklist_warnings,
        }

    def validate_features(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate(self, attrs: dict) -> dict:
        instance: Deployment | None = self.instance
        team = attrs.get("team") or (instance.team if instance else None)
        if team is None:
            teams = list(self.fields["team"].queryset[:2])
            if len(teams) != 1:
                raise serializers.ValidationError({"team": "Name the team: you belong to none or to several."})
            team = attrs["team"] = teams[0]
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

        errors = {}
        for field, keys, message in [
            ("appliances", ("hostname",), "Another appliance has this hostname."),
            ("hosts", ("role", "name"), "Another host of this role has this name."),
            ("peer_networks", ("role", "name"), "Another network of this role has this name."),
        ]:
            if duplicates := duplicate_errors(attrs.get(field, []), keys, message):
                errors[field] = duplicates
        if address_errors := duplicate_address_errors(attrs.get("appliances", [])):
            errors["appliances"] = address_errors
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def save(self, **kwargs: object) -> Deployment:
        try:
            return super().save(**kwargs)
        except IntegrityError as exc:
            # Two requests creating the same name at once: validate() passed for both.
            raise serializers.ValidationError({"name": ["A deployment of this name was just created."]}) from exc

    @transaction.atomic
    def create(self, validated_data: dict) -> Deployment:
        children = {field: validated_data.pop(field, []) for field in CHILDREN}
        deployment = Deployment.objects.create(**validated_data)
        replace_children(deployment, children)
        self.sync = regenerate_checklist(deployment)
        return deployment

    @transaction.atomic
    def update(self, deployment: Deployment, validated_data: dict) -> Deployment:
        children = {field: validated_data.pop(field) for field in CHILDREN if field in validated_data}
        for name, value in validated_data.items():
            setattr(deployment, name, value)
        deployment.save()
        replace_children(deployment, children)
        self.sync = regenerate_checklist(deployment)
        return deployment

    def is_unchanged(self) -> bool:
        """Whether saving would leave the deployment as it is (for an idempotent upsert)."""
        current = self.to_representation(self.instance)
        for name, value in self.validated_data.items():
            field = self.fields[name]
            if name in CHILDREN:
                # Through an unsaved row, so that model defaults (site) count as given.
                rows = [dict(field.child.to_representation(CHILDREN[name](**row))) for row in value]
                if sorted_rows(rows) != sorted_rows(current[name]):
                    return False
            elif field.to_representation(value) != current[name]:
                return False
        return True


CHILDREN = {"appliances": Appliance, "hosts": Host, "peer_networks": PeerNetwork}


def sorted_rows(rows: list[dict]) -> list[str]:
    """Rows in a comparable order (their values may be None or text)."""
    return sorted(json.dumps(dict(row), sort_keys=True) for row in rows)


def replace_children(deployment: Deployment, children: dict[str, list[dict]]) -> None:
    for field, rows in children.items():
        model = CHILDREN[field]
        model.objects.filter(deployment=deployment).delete()
        model.objects.bulk_create(model(deployment=deployment, **row) for row in rows)


def default_catalog_version() -> CatalogVersion | None:
    product = Product.objects.filter(slug="forcepoint-email-security").first()
    return CatalogVersion.objects.current().filter(product=product).first()


def dlp_range_clashes(version: CatalogVersion, base: int) -> list[str]:
    """Why a DLP base port cannot be used: the moved range must stay a valid, unused range."""
    requirements = list(version.requirements.all())
    configurable = [r for r in requirements if r.base_configurable]
    if not configurable:
        return []
    width = max(r.port_end - r.port_start for r in configurable)
    end = base + width
    if end > 65535:
        return [f"The range {base}-{end} ends above 65535; the highest base port is {65535 - width}."]
    return [
        f"The range {base}-{end} overlaps {r.ports}/{r.protocol} ({r.description}, {r.uid})."
        for r in requirements
        if not r.base_configurable
        and r.protocol == configurable[0].protocol
        and r.port_start <= end
        and base <= r.port_end
    ]


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


# --- Checklist ----------------------------------------------------------------------


class ChecklistItemSerializer(serializers.ModelSerializer):
    requirement = serializers.CharField(source="requirement.uid", read_only=True)
    table = serializers.CharField(source="requirement.table", read_only=True)
    direction = serializers.CharField(source="requirement.direction", read_only=True)
    description = serializers.CharField(source="requirement.description", read_only=True)
    notes = serializers.SerializerMethodField()
    ports = serializers.CharField(read_only=True)
    etag = serializers.CharField(read_only=True)
    probe = serializers.SerializerMethodField(help_text="The latest probe result, or null if never probed.")

    class Meta:
        model = ChecklistItem
        fields = [
            "id",
            "deployment",
            "requirement",
            "table",
            "source_role",
            "source_name",
            "source",
            "source_site",
            "destination_role",
            "destination_name",
            "destination",
            "destination_site",
            "interface",
            "protocol",
            "port_start",
            "port_end",
            "ports",
            "direction",
            "description",
            "notes",
            "status",
            "status_changed_at",
            "revision",
            "etag",
            "probe",
        ]
        read_only_fields = fields

    @extend_schema_field(LatestResultSerializer(allow_null=True))
    def get_probe(self, item: ChecklistItem) -> dict | None:
        # The view passes every item's latest result, fetched in one query.
        result = self.context.get("latest_results", {}).get(item.pk)
        return LatestResultSerializer(result).data if result else None

    def get_notes(self, item: ChecklistItem) -> list[str]:
        return [note["text"] for note in item.requirement.footnotes]

    def to_representation(self, item: ChecklistItem) -> dict:
        # A checklist has thousands of items: build each one directly rather than
        # field by field, which is several times faster. Same keys as Meta.fields
        # (a test holds them together).
        requirement = item.requirement
        return {
            "id": item.pk,
            "deployment": item.deployment_id,
            "requirement": requirement.uid,
            "table": requirement.table,
            "source_role": item.source_role,
            "source_name": item.source_name,
            "source": item.source,
            "source_site": item.source_site,
            "destination_role": item.destination_role,
            "destination_name": item.destination_name,
            "destination": item.destination,
            "destination_site": item.destination_site,
            "interface": item.interface,
            "protocol": item.protocol,
            "port_start": item.port_start,
            "port_end": item.port_end,
            "ports": item.ports,
            "direction": requirement.direction,
            "description": requirement.description,
            "notes": self.get_notes(item),
            "status": item.status,
            "status_changed_at": DATETIME.to_representation(item.status_changed_at) if item.status_changed_at else None,
            "revision": item.revision,
            "etag": item.etag,
            "probe": self.get_probe(item),
        }


DATETIME = serializers.DateTimeField()


class StatusChangeSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None, read_only=True)

    class Meta:
        model = StatusChange
        fields = ["from_status", "to_status", "user", "comment", "at"]


class ChecklistItemDetailSerializer(ChecklistItemSerializer):
    history = StatusChangeSerializer(many=True, read_only=True)
    probe_history = serializers.SerializerMethodField(help_text="Probe results, newest first (at most 50).")

    def to_representation(self, item: ChecklistItem) -> dict:
        return super().to_representation(item) | {
            "history": self.fields["history"].to_representation(item.history),
            "probe_history": self.get_probe_history(item),
        }

    @extend_schema_field(ResultHistorySerializer(many=True))
    def get_probe_history(self, item: ChecklistItem) -> list[dict]:
        results = item.probe_results.exclude(state=ProbeState.PENDING).order_by("-checked_at", "-pk")[:50]
        return ResultHistorySerializer(results, many=True).data

    class Meta(ChecklistItemSerializer.Meta):
        fields = [*ChecklistItemSerializer.Meta.fields, "history", "probe_history"]
        read_only_fields = fields


class StatusUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(ItemStatus.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ChecklistSerializer(serializers.Serializer):
    """A deployment's checklist: the rules and what they were derived from."""

    deployment = serializers.IntegerField(source="id")
    name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    product = serializers.CharField(source="catalog_version.product.name")
    catalog_version = serializers.CharField(source="catalog_version.version")
    dlp_base_port = serializers.IntegerField()
    generated_at = serializers.DateTimeField(source="checklist_generated_at")
    warning = serializers.CharField(source="catalog_version.warning")
    warnings = serializers.ListField(child=serializers.CharField(), source="checklist_warnings")
    items = serializers.SerializerMethodField()

    @extend_schema_field(ChecklistItemSerializer(many=True))
    def get_items(self, deployment: Deployment) -> list[dict]:
        return ChecklistItemSerializer(self.context["items"], many=True, context=self.context).data


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
