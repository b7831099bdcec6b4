"""The API's views of a checklist: each item with its latest probe result, from both layers."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.http import QueryDict
from django_filters import MultipleChoiceFilter
from django_filters.utils import translate_validation
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ports.checklist import NumberedRule
from ports.choices import ItemStatus, Outcome, RequestAction, RequestState
from ports.deployments import Plan
from ports.models import (
    SITED_PARTS,
    ApiToken,
    ChangeRequest,
    ChecklistItem,
    Deployment,
    Membership,
    ObjectChange,
    RequestTransition,
    StatusChanges,
    UnknownItems,
)
from ports.serializers import (
    DeploymentSerializer,
    RuleSerializer,
    StatusChangeSerializer,
    StatusUpdateSerializer,
)
from ports.strict import Strict
from ports.validators import validate_token_days
from probes.serializers import DATETIME, LatestResultSerializer, ResultHistorySerializer

from .filters import ChecklistItemFilterSet, PortFilter
from .outcomes import OUTCOME_HELP


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


class PlannedRuleSerializer(RuleSerializer):
    """A rule of a plan, as the checklist shows a rule: its number and its columns."""

    number = serializers.IntegerField(
        help_text="The rule number: for a rule added, the one the write will give it; for a rule removed, its own."
    )

    def to_representation(self, numbered: NumberedRule) -> dict:
        return {"number": numbered.number, **numbered.rule.as_dict()}


class PlanChangesSerializer(serializers.Serializer):
    added = PlannedRuleSerializer(many=True, help_text="The rules the write adds, by number.")
    removed = PlannedRuleSerializer(many=True, help_text="The rules the write removes, by number.")
    unchanged = serializers.IntegerField(
        help_text="How many rules stay (with their status and history; a renamed host relabels its rules)."
    )


class PlanSerializer(serializers.Serializer):
    """What a write would do (`?dry_run=true`): validated as the write is, done, and rolled back:
    nothing was saved. The same write afterwards does exactly this, unless something changed
    meanwhile."""

    dry_run = serializers.BooleanField(help_text="Always true: nothing was saved.")
    outcome = serializers.ChoiceField(
        Outcome.choices, help_text="What the write would do: created, updated or unchanged."
    )
    plan = PlanChangesSerializer()

    def to_representation(self, plan: Plan) -> dict:
        return {
            "dry_run": True,
            "outcome": plan.outcome,
            "plan": {
                "added": PlannedRuleSerializer(plan.added, many=True).data,
                "removed": PlannedRuleSerializer(plan.removed, many=True).data,
                "unchanged": plan.unchanged,
            },
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


# --- Status of many rules -------------------------------------------------------------

# The checklist's filters a bulk change takes: those of its GET, but the deployment, which is the path's.
CHECKLIST_FILTERS = {name: f for name, f in ChecklistItemFilterSet.base_filters.items() if name != "deployment"}
# The most changed ids an answer lists: a page of rows to show again, not a whole checklist.
ANSWERED_IDS = 500


def filter_schema(name: str) -> dict:
    """One of the checklist's filters in the schema: the values its query parameter takes."""
    found = CHECKLIST_FILTERS[name]
    described = {"description": str(found.extra["help_text"])} if "help_text" in found.extra else {}
    if isinstance(found, PortFilter):
        return {"type": "integer", "minimum": 0, "maximum": 65535, **described}
    if "choices" not in found.extra:
        return {"type": "string", **described}
    choice = {"type": "string", "enum": [value for value, _ in found.extra["choices"]]}
    if isinstance(found, MultipleChoiceFilter):
        return {"oneOf": [choice, {"type": "array", "items": choice}], **described}
    return {**choice, **described}


@extend_schema_field(
    {
        "type": "object",
        "properties": {name: filter_schema(name) for name in CHECKLIST_FILTERS},
        "additionalProperties": False,
    }
)
class ChecklistFilterField(serializers.Field):
    """The checklist's filters as an object, read as the GET reads its query: a value is a string or
    a number, or a list of them where the filter takes several (`status`)."""

    def to_internal_value(self, data: object) -> QueryDict:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                "An object of the checklist's filters; {} for every rule.", code="invalid"
            )
        query, errors = QueryDict(mutable=True), {}
        for name, value in data.items():
            values = value if isinstance(value, list) else [value]
            if name not in CHECKLIST_FILTERS:
                # Were it ignored, a misspelt filter would select every rule of the deployment.
                errors[name] = [f"Unknown filter; known: {', '.join(CHECKLIST_FILTERS)}."]
            elif isinstance(value, list) and not isinstance(CHECKLIST_FILTERS[name], MultipleChoiceFilter):
                errors[name] = ["One value, not a list."]
            elif not all(isinstance(one, str | int) and not isinstance(one, bool) for one in values):
                errors[name] = ["A string or a whole number."]
            else:
                query.setlist(name, [str(one) for one in values])
        if errors:
            raise serializers.ValidationError(errors, code="invalid")
        return query


class BulkStatusSerializer(StatusUpdateSerializer):
    """A status for many of a deployment's rules at once: those listed by id, or those the checklist's
    filters select. `status` and `comment` as for one item (a waiver needs its reason)."""

    items = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        allow_empty=False,
        help_text="The ids of the rules, all of this deployment's checklist.",
    )
    filter = ChecklistFilterField(
        required=False,
        help_text="The rules the checklist's filters select, as its GET takes them; {} selects every rule.",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Answer what would change; change nothing.")

    def to_internal_value(self, data: object) -> dict:
        # Counted before each id is validated: a million ids would take their time first. No
        # checklist has more than MAX_RULES rules, and `filter` selects any number of them.
        limit = settings.MAX_RULES
        if isinstance(data, dict) and isinstance(data.get("items"), list) and len(data["items"]) > limit:
            message = f"At most {limit} items at once (MAX_RULES); this names {len(data['items'])}. Use `filter`."
            raise serializers.ValidationError({"items": [message]}, code="max_length")
        return super().to_internal_value(data)

    def validate_filter(self, query: QueryDict) -> QuerySet[ChecklistItem]:
        deployment: Deployment = self.context["deployment"]
        found = ChecklistItemFilterSet(query, queryset=deployment.checklist.all())
        if not found.is_valid():
            raise translate_validation(found.errors)
        return found.qs

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if ("items" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError(
                "Select the rules with either `items` (their ids) or `filter` (the checklist's filters; {} for all).",
                code="selection",
            )
        # Listed items are looked for among the deployment's under their lock (UnknownItems), not here.
        attrs["selection"] = attrs.pop("filter") if "filter" in attrs else self.context["deployment"].checklist.all()
        return attrs


class StatusOverwritesSerializer(serializers.Serializer):
    waived = serializers.IntegerField()
    verified = serializers.IntegerField()


class BulkStatusResultSerializer(serializers.Serializer):
    """What a bulk status change did, or would do (`dry_run`): ChecklistItemQuerySet.change_status."""

    matched = serializers.IntegerField(help_text="The rules selected.")
    changed = serializers.IntegerField(help_text="Those whose status changed (would change, in a dry run).")
    unchanged = serializers.IntegerField(help_text="Those already at the status: left as they are, no history.")
    overwrites = StatusOverwritesSerializer(
        help_text="Of the changed, how many were waived or verified: a person's decision that the change replaces."
    )
    dry_run = serializers.BooleanField()
    outcome = serializers.ChoiceField(
        Outcome.choices,
        help_text=f"{OUTCOME_HELP} Updated when any rule changed (in a dry run: would change); never created.",
    )
    items = serializers.ListField(
        child=serializers.IntegerField(),
        allow_null=True,
        help_text=f"The ids of the changed rules when at most {ANSWERED_IDS} (a page shows their rows anew); "
        "null above that.",
    )

    def to_representation(self, changes: StatusChanges) -> dict:
        return {
            "matched": changes.matched,
            "changed": len(changes.changed),
            "unchanged": changes.unchanged,
            "overwrites": {
                "waived": changes.previous[ItemStatus.WAIVED],
                "verified": changes.previous[ItemStatus.VERIFIED],
            },
            "dry_run": changes.dry_run,
            "outcome": bulk_outcome(changes),
            "items": changes.changed if len(changes.changed) <= ANSWERED_IDS else None,
        }


def bulk_outcome(changes: StatusChanges) -> str:
    """A bulk change's outcome: updated when any rule changed (or would, in a dry run)."""
    return Outcome.UPDATED if changes.changed else Outcome.UNCHANGED


class DeploymentSummarySerializer(DeploymentSerializer):
    """A deployment as a list shows it: its settings and its checklist in numbers, with the URL of
    its whole document (appliances, hosts, peer networks). A team's list of 110,000 rules is then
    a page of summaries, not of documents."""

    url = serializers.HyperlinkedIdentityField(view_name="deployment-detail")
    appliances = hosts = peer_networks = None  # in the document at `url`

    class Meta(DeploymentSerializer.Meta):
        # The document's fields but its parts, and the URL of the whole document after the id.
        fields = ["id", "url", *(name for name in DeploymentSerializer.Meta.fields if name not in {"id", *SITED_PARTS})]


# --- Change log -----------------------------------------------------------------------


class ChangedFieldSerializer(serializers.Serializer):
    """One field of a change: its value before and after, any JSON (null where the object was not)."""

    # Not allow_null: drf-spectacular would say oneOf [any, null], which a null matches twice.
    before = serializers.JSONField()
    after = serializers.JSONField()


@extend_schema_field(serializers.DictField(child=ChangedFieldSerializer()))
class DiffField(serializers.ReadOnlyField):
    """ObjectChange.diff: already the {field: {before, after}} it shows."""


# An object's logged fields as they were (or are): an object of any keys, or null.
FIELDS_SCHEMA = {"type": ["object", "null"], "additionalProperties": True}


@extend_schema_field(FIELDS_SCHEMA)
class LoggedFieldsField(serializers.ReadOnlyField):
    """ObjectChange.before or after, as stored."""


class ObjectChangeSerializer(serializers.ModelSerializer):
    """One entry of the change log: who changed which object, when, through what (`source`) and in
    which request (`request_id`, the answer's X-Request-ID), with its fields before and after."""

    team = serializers.CharField(source="team.name", read_only=True)
    deployment = serializers.IntegerField(
        source="deployment_id",
        allow_null=True,
        read_only=True,
        help_text="The deployment's id (null for a team's object, such as an alert channel); kept after "
        "the deployment is deleted.",
    )
    user = serializers.CharField(
        source="user_name",
        read_only=True,
        help_text="The username as it was at the change; blank for the portal's own work.",
    )
    diff = DiffField(help_text="The fields that differ, each with its value before and after.")
    before = LoggedFieldsField(help_text="The object's fields before the change; null for a creation.")
    after = LoggedFieldsField(help_text="The object's fields after the change; null for a deletion.")

    class Meta:
        model = ObjectChange
        fields = [
            "id",
            "time",
            "team",
            "deployment",
            "deployment_name",
            "user",
            "source",
            "request_id",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "diff",
            "before",
            "after",
        ]
        read_only_fields = fields


class RequestStepSerializer(serializers.ModelSerializer):
    """A change request's step, as its record shows it."""

    user = serializers.CharField(source="user_name", help_text="Who took it; empty for the portal itself.")

    class Meta:
        model = RequestTransition
        fields = ["action", "from_state", "to_state", "user", "comment", "at"]


class HeldRuleSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    why = serializers.CharField()


class ChangeRequestSerializer(Strict, serializers.ModelSerializer):
    """A change request: its CAB fields, rules, state and record; `actions` are the steps the
    caller may take now. A draft is created from rules of the deployment's checklist: by their ids
    (`items`, as the checklist lists them) or by their numbers (`numbers`, as a plan lists the rules
    that a write adds: plan, apply, then draft the request of what it added)."""

    deployment = serializers.PrimaryKeyRelatedField(read_only=True)
    items = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        write_only=True,
        required=False,
        allow_empty=False,
        max_length=settings.MAX_RULES,
        help_text="The ids of the rules it asks for, all of this deployment's checklist.",
    )
    numbers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
        write_only=True,
        required=False,
        allow_empty=False,
        max_length=settings.MAX_RULES,
        help_text="Or the numbers of the rules it asks for (every item of each), as a plan's `added` gives them.",
    )
    rules = serializers.ListField(child=serializers.DictField(), read_only=True, help_text="The rules as drafted.")
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    transitions = RequestStepSerializer(many=True, read_only=True)
    holding_back = serializers.SerializerMethodField(help_text="The rules that keep it from being verified.")
    actions = serializers.SerializerMethodField(help_text="The steps you may take now (POST .../{action}/).")
    probe_runs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "deployment",
            *ChangeRequest.FIELDS,
            "state",
            "items",
            "numbers",
            "rules",
            "requested_by",
            "rollback_of",
            "created",
            "updated",
            "transitions",
            "holding_back",
            "actions",
            "probe_runs",
        ]
        read_only_fields = ["state", "rollback_of", "created", "updated"]

    def validate_items(self, ids: list[int]) -> list[ChecklistItem]:
        deployment: Deployment = self.context["deployment"]
        found = {item.pk: item for item in deployment.checklist.filter(pk__in=ids).select_related("requirement")}
        if unknown := sorted(set(ids) - found.keys()):
            raise serializers.ValidationError(str(UnknownItems(unknown)))
        return sorted(found.values(), key=lambda item: item.number)

    def validate_numbers(self, numbers: list[int]) -> list[ChecklistItem]:
        deployment: Deployment = self.context["deployment"]
        found = list(deployment.checklist.filter(number__in=numbers).select_related("requirement").order_by("number"))
        if unknown := sorted(set(numbers) - {item.number for item in found}):
            shown = ", ".join(map(str, unknown[:20])) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
            raise serializers.ValidationError(f"No rule of this deployment's checklist has the number {shown}.")
        return found

    @extend_schema_field(HeldRuleSerializer(many=True))
    def get_holding_back(self, request: ChangeRequest) -> list[dict]:
        if request.state not in (RequestState.IMPLEMENTED, RequestState.APPROVED):
            return []
        return [{"number": number, "why": why} for number, why in request.holding_back()]

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(RequestAction.choices)))
    def get_actions(self, request: ChangeRequest) -> list[str]:
        if "request" not in self.context:
            return []
        user, team = self.context["request"].user, request.deployment.team_id
        roles = self.context.setdefault("roles", {})  # the caller's role, read once for a list
        if team not in roles:
            roles[team] = Membership.role_of(user, team)
        return request.allowed(user, roles[team])

    def validate(self, attrs: dict) -> dict:
        if self.instance is None and ("items" in attrs) == ("numbers" in attrs):
            raise serializers.ValidationError(
                "Name its rules with either `items` (their ids) or `numbers` (their numbers).", code="selection"
            )
        attrs["items"] = attrs.pop("numbers", None) or attrs.get("items")
        requested, expiry = attrs.get("requested_date"), attrs.get("expiry")
        if requested and expiry and expiry <= requested:
            raise serializers.ValidationError({"expiry": ["The expiry must come after the requested date."]})
        return attrs


class RequestStepBodySerializer(Strict, serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ApiTokenSerializer(Strict, serializers.ModelSerializer):
    """An API token as its user, and the admins of their teams, see it: never its key (shown once,
    when it is made) nor its hash. `token_key`, the key's first characters, names it."""

    user = serializers.SlugRelatedField(slug_field="username", read_only=True, help_text="Whose token it is.")
    expired = serializers.BooleanField(
        source="is_expired", read_only=True, help_text="It no longer authenticates: make a new one."
    )
    days = serializers.IntegerField(
        write_only=True,
        required=False,
        validators=[validate_token_days],
        help_text="How many days it lives: API_TOKEN_DAYS (default 90) unless given, at most "
        "API_TOKEN_MAX_DAYS (default 365).",
    )

    class Meta:
        model = ApiToken
        fields = ["token_key", "name", "user", "created", "expiry", "last_used", "expired", "days"]
        read_only_fields = ["token_key", "created", "expiry", "last_used"]
        extra_kwargs = {
            "token_key": {"help_text": "The key's first characters: they name the token (to revoke it, say)."},
            "last_used": {"help_text": "Its latest use, to the minute; null: never used."},
        }


class NewApiTokenSerializer(ApiTokenSerializer):
    """A token just made, with its key: the only answer that ever holds the key."""

    key = serializers.CharField(
        read_only=True, help_text="Send it as `Authorization: Token <key>`. Shown this once: keep it now."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = ["key", *ApiTokenSerializer.Meta.fields]
