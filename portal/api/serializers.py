"""The API's views of a checklist: each item with its latest probe result, from both layers."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ports.choices import ItemStatus
from ports.models import ChecklistItem, Deployment
from ports.serializers import RuleSerializer, StatusChangeSerializer
from probes.serializers import DATETIME, LatestResultSerializer, ResultHistorySerializer


class ChecklistItemSerializer(RuleSerializer):
    """A checklist item: its rule's columns, its status and its latest probe result."""

    id = serializers.IntegerField()
    deployment = serializers.IntegerField()
    number = serializers.IntegerField(
        help_text="The rule number of every export: items of the same flow (source, destination, protocol, "
        "ports) share it, as one firewall rule."
    )
    status = serializers.ChoiceField(ItemStatus.choices)
    status_changed_at = serializers.DateTimeField(allow_null=True)
    revision = serializers.IntegerField()
    etag = serializers.CharField(help_text="Send it as If-Match with a status change.")
    probe = LatestResultSerializer(allow_null=True, help_text="The latest probe result, or null if never probed.")

    def to_representation(self, item: ChecklistItem) -> dict:
        # A checklist has thousands of items: each is built directly rather than field by
        # field, which is several times faster. Same keys as the fields (a test holds them).
        probe = item.latest_probe
        changed = item.status_changed_at
        return {
            "id": item.pk,
            "deployment": item.deployment_id,
            "number": item.number,
            **item.rule.as_dict(),
            "status": item.status,
            "status_changed_at": DATETIME.to_representation(changed) if changed else None,
            "revision": item.revision,
            "etag": item.etag,
            "probe": LatestResultSerializer.represent(probe) if probe else None,
        }


class ChecklistItemDetailSerializer(ChecklistItemSerializer):
    history = StatusChangeSerializer(many=True, help_text="Status changes, oldest first.")
    probe_history = ResultHistorySerializer(
        many=True, help_text="Changes of the probe state, newest first (at most 50)."
    )

    def to_representation(self, item: ChecklistItem) -> dict:
        results = item.probe_flips.all()[:50]
        return super().to_representation(item) | {
            "history": StatusChangeSerializer(item.history.all(), many=True).data,
            "probe_history": ResultHistorySerializer(results, many=True).data,
        }


class FootnoteSerializer(serializers.Serializer):
    kind = serializers.CharField()
    sign = serializers.CharField(help_text="The note's sign in the portal's exports and in items' notes.")
    mark = serializers.CharField(help_text="The mark the vendor's page uses.")
    text = serializers.CharField()


class ChecklistSerializer(serializers.Serializer):
    """A deployment's checklist: the rules and what they were derived from."""

    deployment = serializers.IntegerField(source="id")
    name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    product = serializers.CharField(source="catalog_version.product.name")
    catalog_version = serializers.CharField(source="catalog_version.version")
    dlp_base_port = serializers.IntegerField()
    generated_at = serializers.DateTimeField(source="checklist_generated_at", allow_null=True)
    fingerprint = serializers.SerializerMethodField(help_text="SHA-256 of these items' rule set; see checklist/diff/.")
    warning = serializers.CharField(source="catalog_version.warning")
    footnotes = FootnoteSerializer(many=True, source="catalog_version.footnotes")
    warnings = serializers.ListField(child=serializers.CharField(), source="checklist_warnings")
    items = serializers.SerializerMethodField()

    def get_fingerprint(self, deployment: Deployment) -> str:
        return self.context["fingerprint"]

    @extend_schema_field(ChecklistItemSerializer(many=True))
    def get_items(self, deployment: Deployment) -> list[dict]:
        return ChecklistItemSerializer(self.context["items"], many=True).data
