"""The PDF change request: rules grouped by firewall path, with what a firewall team needs
to approve and implement them."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils import timezone
from rest_framework import serializers

from .exports import ExportRule, Scope, export_rules, fingerprint, select_items
from .models import CatalogVersion, ChecklistExport, Deployment

SCOPE_LABELS = {
    Scope.ALL: "all rules",
    Scope.UNVERIFIED: "rules not yet verified",
    Scope.FAILED: "rules whose last probe failed",
    Scope.SELECTION: "a selection of rules",
}
IDENTITY = ["requirement", "source", "destination", "protocol", "port_start", "port_end"]


class ExportParams(serializers.Serializer):
    """Which rules an export holds, and (for a change request) what it asks for."""

    scope = serializers.ChoiceField(Scope.choices, default=Scope.ALL)
    items = serializers.CharField(required=False, help_text="Item ids, comma-separated (scope=selection).")
    since = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, help_text="Fingerprint of an earlier export.")
    reference = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    requester = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    justification = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    requested_date = serializers.DateField(required=False, allow_null=True, default=None)
    expiry = serializers.DateField(required=False, allow_null=True, default=None)

    def validate_items(self, value: str) -> list[int]:
        try:
            return [int(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            raise serializers.ValidationError("Give item ids as numbers separated by commas.") from exc

    def validate(self, attrs: dict) -> dict:
        if attrs["scope"] == Scope.SELECTION and not attrs.get("items"):
            raise serializers.ValidationError({"items": ["Name the items of the selection."]})
        if attrs["expiry"] and attrs["requested_date"] and attrs["expiry"] <= attrs["requested_date"]:
            raise serializers.ValidationError({"expiry": ["The expiry must come after the requested date."]})
        deployment: Deployment = self.context["deployment"]
        if "since" in attrs and not deployment.exports.filter(fingerprint=attrs["since"]).exists():
            raise serializers.ValidationError({"since": ["No earlier export of this deployment has this fingerprint."]})
        if attrs.get("items"):
            unknown = set(attrs["items"]) - set(
                deployment.checklist.filter(pk__in=attrs["items"]).values_list("pk", flat=True)
            )
            if unknown:
                raise serializers.ValidationError({"items": [f"Not items of this deployment: {sorted(unknown)}."]})
        return attrs


@dataclass
class RuleSet:
    deployment: Deployment
    rules: list[ExportRule]
    fingerprint: str
    scope: str

    @classmethod
    def build(cls, deployment: Deployment, params: dict) -> RuleSet:
        from probes.models import ProbeResult

        items = select_items(deployment, params["scope"], params.get("items"))
        rules = export_rules(items, ProbeResult.objects.latest_for(deployment))
        return cls(deployment, rules, fingerprint(rules), params["scope"])

    def remember(self, kind: str, user: object) -> None:
        """Keep the rule set, so that a later export can list the changes since."""
        identities = [dict(zip(IDENTITY, rule.identity(), strict=True)) for rule in self.rules]
        ChecklistExport.objects.create(
            deployment=self.deployment, fingerprint=self.fingerprint, kind=kind, rules=identities, created_by=user
        )

    def diff(self, since: str) -> dict:
        earlier = self.deployment.exports.filter(fingerprint=since).first()
        before = {tuple(rule[key] for key in IDENTITY): rule for rule in earlier.rules}
        now = {tuple(rule.identity()): rule for rule in self.rules}
        removed = [before[key] | {"ports": _ports(before[key])} for key in before if key not in now]
        added = [now[key] for key in now if key not in before]
        return {"since": since, "now": self.fingerprint, "added": added, "removed": removed}


def _ports(rule: dict) -> str:
    start, end = rule["port_start"], rule["port_end"]
    return str(start) if start == end else f"{start}-{end}"


def render_html(rule_set: RuleSet, params: dict, user: object) -> str:
    deployment = rule_set.deployment
    rules = rule_set.rules
    delta = None
    if params.get("since"):
        delta = rule_set.diff(params["since"])
        rules = delta["added"]
    groups: dict[str, list[ExportRule]] = defaultdict(list)
    for rule in rules:
        groups[rule.firewall].append(rule)
    destinations = Counter((rule.destination_name, rule.destination) for rule in rules)
    requester = params.get("requester") or (user.get_full_name() or user.get_username() if user else "")
    context = {
        "deployment": deployment,
        "version": deployment.catalog_version,
        "rules": rules,
        "groups": [{"path": path, "rules": members} for path, members in sorted(groups.items())],
        "by_direction": sorted(Counter(rule.direction for rule in rules).items()),
        "by_destination": [(name, address, count) for (name, address), count in sorted(destinations.items())],
        "footnotes": sorted({note for rule in rules for note in rule.notes}),
        "fingerprint": rule_set.fingerprint,
        "delta": delta,
        "scope_label": SCOPE_LABELS[rule_set.scope],
        "dlp_end": deployment.dlp_base_port + 15,
        "generated": timezone.now(),
        "meta": {
            **params,
            "requester": requester,
            "reference": params.get("reference") or f"CR-{deployment.pk}",
            # Dates as ISO text, whether they come parsed (a request) or as JSON (a queued job).
            "requested_date": str(params["requested_date"]) if params.get("requested_date") else "",
            "expiry": str(params["expiry"]) if params.get("expiry") else "",
        },
    }
    return render_to_string("ports/change_request.html", context)


def render_pdf(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()


CATALOG_FIELDS = [
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


def catalog_diff(old: CatalogVersion, new: CatalogVersion) -> dict:
    """What a new vendor revision adds, removes and changes, by requirement id."""
    before = {r.uid: r for r in old.requirements.all()}
    after = {r.uid: r for r in new.requirements.all()}
    changed = []
    for uid in sorted(before.keys() & after.keys()):
        fields = {
            name: {"from": getattr(before[uid], name), "to": getattr(after[uid], name)}
            for name in CATALOG_FIELDS
            if getattr(before[uid], name) != getattr(after[uid], name)
        }
        if fields:
            changed.append({"id": uid, "changes": fields})
    return {
        "from": old.version,
        "to": new.version,
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": changed,
    }
