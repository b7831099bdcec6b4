from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ports.choices import ItemStatus
from ports.models import ChecklistItem, Deployment
from ports.strict import Strict

from .choices import ProbeState
from .engine import parse_pin
from .models import ProbeResult, ProbeRun, TlsPin, WorkerHeartbeat

DATETIME = serializers.DateTimeField()


class PreviousStateField(serializers.ChoiceField):
    """The item's state before this result: null for its first result (stored blank)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(ProbeState.choices, allow_null=True, read_only=True, **kwargs)

    def to_representation(self, value: str) -> str | None:
        return value or None


class ProbeResultSerializer(serializers.ModelSerializer):
    requirement = serializers.CharField(source="item.requirement.uid", read_only=True)
    source = serializers.CharField(source="item.source", read_only=True)
    destination = serializers.CharField(source="item.destination", read_only=True)
    protocol = serializers.CharField(source="item.protocol", read_only=True)
    ports = serializers.CharField(source="item.ports", read_only=True)
    previous_state = PreviousStateField()
    changed = serializers.BooleanField(read_only=True, help_text="The state differs from the item's previous one.")
    regression = serializers.BooleanField(read_only=True, help_text="It was open and now is not.")
    evidence_words = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The evidence as sentences, for people."
    )

    class Meta:
        model = ProbeResult
        fields = [
            "run",
            "item",
            "requirement",
            "source",
            "destination",
            "protocol",
            "ports",
            "site",
            "state",
            "summary",
            "latency_ms",
            "address",
            "worker",
            "evidence",
            "evidence_words",
            "checked_at",
            "previous_state",
            "changed",
            "regression",
        ]
        read_only_fields = fields


class LatestResultSerializer(serializers.ModelSerializer):
    """An item's latest probe result, as the checklist shows it."""

    previous_state = PreviousStateField()
    changed = serializers.BooleanField(read_only=True)
    regression = serializers.BooleanField(read_only=True)

    @staticmethod
    def represent(result: ProbeResult) -> dict:
        """The same as .data, built directly: a checklist shows thousands (a test holds them equal)."""
        return {
            "run": result.run_id,
            "state": result.state,
            "summary": result.summary,
            "latency_ms": result.latency_ms,
            "site": result.site,
            "checked_at": DATETIME.to_representation(result.checked_at) if result.checked_at else None,
            "previous_state": result.previous_state or None,
            "changed": result.changed,
            "regression": result.regression,
        }

    class Meta:
        model = ProbeResult
        fields = [
            "run",
            "state",
            "summary",
            "latency_ms",
            "site",
            "checked_at",
            "previous_state",
            "changed",
            "regression",
        ]
        read_only_fields = fields


class ResultHistorySerializer(LatestResultSerializer):
    """One entry of an item's probe history, with its evidence."""

    evidence_words = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The evidence as sentences, for people."
    )

    class Meta(LatestResultSerializer.Meta):
        fields = [*LatestResultSerializer.Meta.fields, "address", "worker", "evidence", "evidence_words"]
        read_only_fields = fields


class ProbeRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField(help_text="Items done and in all.")

    class Meta:
        model = ProbeRun
        fields = [
            "id",
            "deployment",
            "status",
            "progress",
            "timeout",
            "created",
            "started",
            "finished",
            "deadline",
            "cancel_requested",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}})
    def get_progress(self, run: ProbeRun) -> dict:
        return run.progress()


class ProbeRunDetailSerializer(ProbeRunSerializer):
    by_state = serializers.SerializerMethodField(help_text="Items per probe state.")
    sites = serializers.SerializerMethodField(help_text="The run's sites, and whether a worker serves each now.")
    results = ProbeResultSerializer(many=True, read_only=True)

    class Meta(ProbeRunSerializer.Meta):
        fields = [*ProbeRunSerializer.Meta.fields, "by_state", "sites", "results"]
        read_only_fields = fields

    def get_by_state(self, run: ProbeRun) -> dict[str, int]:
        return run.counts()

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"site": {"type": "string"}, "live_worker": {"type": "boolean"}},
                "required": ["site", "live_worker"],
            },
        }
    )
    def get_sites(self, run: ProbeRun) -> list[dict]:
        live = WorkerHeartbeat.objects.live_sites()
        sites = sorted({result.site for result in run.results.all()})
        return [{"site": site, "live_worker": site in live} for site in sites]


class ProbeRunRequestSerializer(Strict, serializers.Serializer):
    """Which items to probe: all of them, the listed ids, or those with the listed statuses."""

    items = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, allow_empty=False
    )
    status = serializers.ListField(child=serializers.ChoiceField(ItemStatus.choices), required=False, allow_empty=False)

    def to_internal_value(self, data: object) -> dict:
        # Counted before each id is validated: a million ids would take their time first.
        limit = settings.MAX_PROBE_ITEMS
        if isinstance(data, dict) and isinstance(data.get("items"), list) and len(data["items"]) > limit:
            message = f"At most {limit} items per probe run (MAX_PROBE_ITEMS); this names {len(data['items'])}."
            raise serializers.ValidationError({"items": [message]})
        return super().to_internal_value(data)

    def validate_items(self, ids: list[int]) -> list[int]:
        deployment: Deployment = self.context["deployment"]
        known = set(deployment.checklist.filter(pk__in=ids).values_list("pk", flat=True))
        unknown = sorted(set(ids) - known)
        if unknown:
            raise serializers.ValidationError(
                f"Not items of this deployment's checklist: {', '.join(map(str, unknown))}. "
                "Probes only test the deployment's own rules."
            )
        return ids

    def selected_items(self) -> list[ChecklistItem]:
        items = self.context["deployment"].checklist.all()
        if "items" in self.validated_data:
            items = items.filter(pk__in=self.validated_data["items"])
        if "status" in self.validated_data:
            items = items.filter(status__in=self.validated_data["status"])
        items = list(items)
        if not items:
            raise serializers.ValidationError({"items": ["No checklist item matches this selection."]})
        return items


class WorkerHeartbeatSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkerHeartbeat
        fields = ["site", "worker", "started", "last_seen"]


class ProbeSiteSerializer(serializers.Serializer):
    site = serializers.CharField()
    live_worker = serializers.BooleanField()
    used_by_your_deployments = serializers.BooleanField()
    workers = WorkerHeartbeatSerializer(many=True)


class ProbeSitesSerializer(serializers.Serializer):
    """The probe sites your deployments use, and whether a live worker serves each."""

    sites = ProbeSiteSerializer(many=True)


class TlsPinSerializer(Strict, serializers.ModelSerializer):
    # Longer than what is stored: hex with colons is accepted, and stored as sha256/<base64>.
    pin = serializers.CharField(max_length=100, help_text="sha256/<base64>, or 64 hex digits (colons allowed).")

    class Meta:
        model = TlsPin
        fields = ["id", "host", "port", "pin", "issuer", "source", "created"]
        read_only_fields = ["id", "issuer", "source", "created"]

    def validate_pin(self, value: str) -> str:
        try:
            return parse_pin(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
