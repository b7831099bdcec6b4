"""A deployment's rules handed out: which items an export holds, in which order, and its fingerprint.

The formats are modules of this package: sheets (CSV, XLSX), firewall (nftables,
iptables, Cisco ASA, PAN-OS) and pdf (the change request). Every format numbers the
rules the same way (RuleSet.numbered()) and every export is kept under its fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..checklist import remember_rule_set
from ..choices import ItemStatus
from ..models import ChecklistItem, Deployment
from ..rules import IDENTITY_FIELDS, PortRange, Rule, fingerprint
from ..strict import Strict

# Latest probe states that mean the rule does not work (yet).
FAILING_STATES = {"refused", "filtered", "unreachable", "dns_error", "intercepted", "error"}


class Scope:
    ALL = "all"
    UNVERIFIED = "unverified"  # not yet verified (nor waived)
    FAILED = "failed"  # the latest probe failed
    SELECTION = "selection"  # the items given by id

    choices = [ALL, UNVERIFIED, FAILED, SELECTION]
    labels = {
        ALL: "all rules",
        UNVERIFIED: "rules not yet verified",
        FAILED: "rules whose last probe failed",
        SELECTION: "a selection of rules",
    }


@extend_schema_field({"type": "string", "example": "12,13,14"})
class ItemIdsField(serializers.Field):
    """Item ids as "1,2,3" (a query string) or [1, 2, 3] (JSON); given back as "1,2,3"."""

    default_error_messages = {"invalid": "Give item ids as numbers separated by commas."}

    def to_internal_value(self, data: object) -> list[int]:
        parts = data.split(",") if isinstance(data, str) else data
        if not isinstance(parts, list):
            self.fail("invalid")
        try:
            return [int(part) for part in parts if str(part).strip()]
        except (TypeError, ValueError):
            self.fail("invalid")

    def to_representation(self, value: list[int]) -> str:
        return ",".join(map(str, value))


class ExportParams(serializers.Serializer):
    """Which rules an export holds, and (for a change request) what it asks for."""

    scope = serializers.ChoiceField(Scope.choices, default=Scope.ALL)
    items = ItemIdsField(required=False, help_text="Item ids, comma-separated (scope=selection).")
    since = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, help_text="Fingerprint of an earlier export.")
    reference = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    requester = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    justification = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    requested_date = serializers.DateField(required=False, allow_null=True, default=None)
    expiry = serializers.DateField(required=False, allow_null=True, default=None)

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


class ExportRequest(Strict, ExportParams):
    """ExportParams as a request body (a change request rendered by a worker): nothing unknown."""


def select_items(deployment: Deployment, scope: str, ids: list[int] | None = None) -> QuerySet[ChecklistItem]:
    items = deployment.checklist.select_related("requirement").with_latest_probe()
    if scope == Scope.UNVERIFIED:
        return items.exclude(status__in=[ItemStatus.VERIFIED, ItemStatus.WAIVED])
    if scope == Scope.FAILED:
        return items.filter(probe_results__is_latest=True, probe_results__state__in=FAILING_STATES)
    if scope == Scope.SELECTION:
        return items.filter(pk__in=ids or [])
    return items


@dataclass
class RuleSet:
    """The items an export holds, in checklist order, with their latest probe results."""

    deployment: Deployment
    items: list[ChecklistItem]
    scope: str = Scope.ALL

    @classmethod
    def build(cls, deployment: Deployment, params: dict) -> RuleSet:
        return cls(deployment, list(select_items(deployment, params["scope"], params.get("items"))), params["scope"])

    @cached_property
    def rules(self) -> list[Rule]:
        return [item.rule for item in self.items]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.rules)

    def numbered(self) -> Iterator[tuple[int, ChecklistItem]]:
        """The rules' numbers: the same in every format of the same rule set."""
        return enumerate(self.items, start=1)

    def remember(self, kind: str, user: object) -> str:
        """Keep the rule set under its fingerprint, so that a later export can list the changes since."""
        return remember_rule_set(self.deployment, self.rules, kind, user)

    def diff(self, since: str) -> dict:
        """The rules added since an earlier export (Rule values) and removed (their identities)."""
        earlier = self.deployment.exports.filter(fingerprint=since).first()
        before = {tuple(rule[key] for key in IDENTITY_FIELDS): rule for rule in earlier.rules}
        now = {rule.identity(): rule for rule in self.rules}
        removed = [
            rule | {"ports": str(PortRange(rule["port_start"], rule["port_end"]))}
            for key, rule in before.items()
            if key not in now
        ]
        added = [rule for key, rule in now.items() if key not in before]
        return {"since": since, "now": self.fingerprint, "added": added, "removed": removed}
