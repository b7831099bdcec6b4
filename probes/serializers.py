from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ports.choices import ItemStatus, Outcome
from ports.models import ChecklistItem, Deployment, Team
from ports.scoping import owning_team
from ports.strict import Strict

from .choices import AlertKind, ProbeState
from .engine import parse_pin
from .models import Alert, AlertChannel, AlertDelivery, LatestProbe, ProbeRun, TlsPin, WorkerHeartbeat
from .validators import validate_channel_target

DATETIME = serializers.DateTimeField()


class PreviousStateField(serializers.ChoiceField):
    """The item's state before this result: null for its first result (stored blank)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(ProbeState.choices, allow_null=True, read_only=True, **kwargs)

    def to_representation(self, value: str) -> str | None:
        return value or None


OUTCOME_HELP = {
    "changed": "The state differs from the item's previous one.",
    "regression": "It was open and now is not.",
    "evidence_words": "The evidence as sentences, for people.",
}


class OutcomeSerializer(serializers.Serializer):
    """What a probe found (probes.models.ProbeOutcome): a run's result, an item's current state
    or one of its state changes."""

    run = serializers.IntegerField(source="run_id", allow_null=True, read_only=True)
    site = serializers.CharField(read_only=True)
    state = serializers.ChoiceField(ProbeState.choices, read_only=True)
    summary = serializers.CharField(read_only=True)
    latency_ms = serializers.FloatField(allow_null=True, read_only=True)
    checked_at = serializers.DateTimeField(allow_null=True, read_only=True)
    previous_state = PreviousStateField()
    changed = serializers.BooleanField(read_only=True, help_text=OUTCOME_HELP["changed"])
    regression = serializers.BooleanField(read_only=True, help_text=OUTCOME_HELP["regression"])


class LatestResultSerializer(OutcomeSerializer):
    """An item's current probe state, as the checklist shows it."""

    since = serializers.DateTimeField(read_only=True, help_text="When the item came into this state.")

    @staticmethod
    def represent(result: LatestProbe) -> dict:
        """The same as .data, built directly: a checklist shows thousands (a test holds them equal)."""
        return {
            "run": result.run_id,
            "site": result.site,
            "state": result.state,
            "summary": result.summary,
            "latency_ms": result.latency_ms,
            "checked_at": DATETIME.to_representation(result.checked_at) if result.checked_at else None,
            "previous_state": result.previous_state or None,
            "changed": result.changed,
            "regression": result.regression,
            "since": DATETIME.to_representation(result.since) if result.since else None,
        }


class EvidenceSerializer(OutcomeSerializer):
    address = serializers.CharField(read_only=True)
    worker = serializers.CharField(read_only=True)
    evidence = serializers.DictField(read_only=True)
    evidence_words = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text=OUTCOME_HELP["evidence_words"]
    )


class ResultHistorySerializer(EvidenceSerializer):
    """One change of an item's probe state, with what the probe saw: its history, newest first."""


class ProbeResultSerializer(EvidenceSerializer):
    """One item's result in a run."""

    run = serializers.IntegerField(read_only=True)
    item = serializers.IntegerField(source="item.pk", allow_null=True, read_only=True)
    # The rule as the result keeps it: still there when the item has gone (item is then null).
    requirement = serializers.CharField(source="rule.requirement", default="", read_only=True)
    source = serializers.CharField(source="rule.source", default="", read_only=True)
    destination = serializers.CharField(source="rule.destination", default="", read_only=True)
    protocol = serializers.CharField(source="rule.protocol", default="", read_only=True)
    ports = serializers.CharField(source="rule.ports", default="", read_only=True)


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
    by_state = serializers.DictField(child=serializers.IntegerField(), read_only=True, help_text="Items per state.")
    sites = serializers.SerializerMethodField(help_text="The run's sites, and whether a worker serves each now.")
    results = serializers.SerializerMethodField(
        help_text=f"Each item's result (kept {settings.PROBE_RESULT_RETENTION_DAYS:g} days), pending ones last."
    )

    class Meta(ProbeRunSerializer.Meta):
        fields = [*ProbeRunSerializer.Meta.fields, "by_state", "sites", "results"]
        read_only_fields = fields

    @extend_schema_field(ProbeResultSerializer(many=True))
    def get_results(self, run: ProbeRun) -> list[dict]:
        return ProbeResultSerializer(self.results_of(run), many=True).data

    def results_of(self, run: ProbeRun) -> list:
        if not hasattr(run, "_results"):
            run._results = run.results()
        return run._results

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
        sites = sorted({result.site for result in self.results_of(run)})
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
        items = self.context["deployment"].checklist.only(*ProbeRun.ITEM_FIELDS)
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
    answer_keys = ("outcome",)  # a write's answer, sent back as it is, is a pin too

    class Meta:
        model = TlsPin
        fields = ["id", "host", "port", "pin", "issuer", "source", "created"]
        read_only_fields = ["id", "issuer", "source", "created"]

    def validate_pin(self, value: str) -> str:
        try:
            return parse_pin(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def create(self, validated_data: dict) -> TlsPin:
        """Expect the pin (TlsPin.expect): a second identical create changes nothing (`outcome`)."""
        pin, self.outcome = TlsPin.expect(
            validated_data["deployment"], validated_data["host"], validated_data["port"], validated_data["pin"]
        )
        return pin


class AlertChannelSerializer(Strict, serializers.ModelSerializer):
    """Where a team's alerts go. A webhook's `secret` signs each body (X-Portal-Signature:
    sha256=<HMAC-SHA256 of the body, hex>): check it on the receiving side."""

    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.none(), required=False)
    kinds = serializers.ListField(
        child=serializers.ChoiceField(AlertKind.choices),
        required=False,
        max_length=len(AlertKind.choices),
        help_text="The kinds of alert it carries; empty or left out: every kind.",
    )
    answer_keys = ("outcome",)  # a write's answer, sent back as it is, is a channel too

    class Meta:
        model = AlertChannel
        fields = ["id", "team", "name", "kind", "target", "enabled", "kinds", "secret", "created"]
        read_only_fields = ["id", "secret", "created"]
        validators = []  # the team is optional here (yours, if you have one): validate() checks the name

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            self.fields["team"].queryset = Team.objects.for_user(request.user)

    def validate_kinds(self, kinds: list[str]) -> list[str]:
        return sorted(set(kinds))  # in one order: the same channel sent again is that channel

    def validate(self, attrs: dict) -> dict:
        instance: AlertChannel | None = self.instance
        team = attrs["team"] = owning_team(self, attrs)
        kind = attrs.get("kind", instance.kind if instance else None)
        target = attrs.get("target", instance.target if instance else "")
        try:
            validate_channel_target(kind, target)
        except DjangoValidationError as invalid:
            raise serializers.ValidationError({"target": invalid.messages}) from invalid
        name = attrs.get("name", instance.name if instance else None)
        clash = AlertChannel.objects.filter(team=team, name=name).exclude(pk=instance.pk if instance else None)
        clash = clash.first()
        # A create of a channel that exists as given is that channel again (create() answers it);
        # another channel under its name is refused.
        if clash is not None and not (instance is None and clash.has_settings(attrs)):
            raise name_taken(team, name)
        return attrs

    def create(self, validated_data: dict) -> AlertChannel:
        """The channel, or the same channel again: a create sent twice makes one channel, and
        `outcome` says created, then unchanged."""
        values = dict(validated_data)
        team, name = values.pop("team"), values.pop("name")
        channel, created = AlertChannel.objects.get_or_create(team=team, name=name, defaults=values)
        if not created and not channel.has_settings(values):  # another create of the name came first
            raise name_taken(team, name)
        self.outcome = Outcome.CREATED if created else Outcome.UNCHANGED
        return channel

    def update(self, instance: AlertChannel, validated_data: dict) -> AlertChannel:
        """The channel brought to what was sent; written only if that changes it (`outcome`)."""
        changed = {name: value for name, value in validated_data.items() if getattr(instance, name) != value}
        self.outcome = Outcome.UPDATED if changed else Outcome.UNCHANGED
        return super().update(instance, changed) if changed else instance


def name_taken(team: Team, name: str) -> serializers.ValidationError:
    return serializers.ValidationError({"name": f"Team {team} already has a channel named {name!r}."})


class AlertDeliverySerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.name", read_only=True)

    class Meta:
        model = AlertDelivery
        fields = ["channel", "status", "attempts", "last_error", "sent_at", "next_attempt_at"]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.name", read_only=True)
    deliveries = AlertDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Alert
        fields = ["id", "team", "kind", "deployment", "site", "subject", "body", "details", "created", "deliveries"]
        read_only_fields = fields
