"""A deployment's rules handed out: which items an export holds, merged into firewall rules
(flows), in which order, and its fingerprint.

The formats are modules of this package: sheets (CSV, XLSX), firewall (nftables,
iptables, Cisco ASA, PAN-OS) and pdf (the change request). Every format shows the same
flows under the same numbers (ChecklistItem.number, as the checklist page does), and
every export is kept under its fingerprint.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from probes.choices import FAILING_STATES

from ..checklist import remember_rule_set
from ..choices import ItemStatus
from ..models import ChecklistItem, Deployment, Requirement
from ..rules import IDENTITY_FIELDS, PortRange, Rule, fingerprint
from ..strict import Strict


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


# The firewall syntaxes (firewall.SYNTAXES), for a change request's rollback commands.
SYNTAX_NAMES = ["nftables", "iptables", "ip6tables", "asa", "panos"]

# A firewall zone (PAN-OS) or interface name (ASA nameif): a token, never a live line.
ZONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}")


@extend_schema_field({"type": "string", "example": "central:trust,dmz:dmz"})
class SiteZonesField(serializers.Field):
    """The firewall's zone or interface of each site, as "site:zone,site:zone" (a query string)
    or {"site": "zone"} (JSON); given back as text."""

    default_error_messages = {"invalid": 'Give zones as "site:zone" pairs separated by commas.'}

    def to_internal_value(self, data: object) -> dict[str, str]:
        if isinstance(data, str):
            pairs = [part.partition(":") for part in data.split(",") if part.strip()]
            if any(not sep for _, sep, _ in pairs):
                self.fail("invalid")
            data = {site.strip(): zone.strip() for site, _, zone in pairs}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            self.fail("invalid")
        wrong = [zone for zone in data.values() if not ZONE_NAME.fullmatch(zone)]
        if wrong:
            raise serializers.ValidationError(
                f"Not a zone or interface name: {wrong[0]!r}. Use up to 31 letters, digits, '_', '.' or '-'."
            )
        return data

    def to_representation(self, value: dict[str, str]) -> str:
        return ",".join(f"{site}:{zone}" for site, zone in value.items())


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
    rollback = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="How to back the change out."
    )
    syntax = serializers.ChoiceField(
        SYNTAX_NAMES,
        required=False,
        help_text="The firewall syntax of the change request's rollback commands.",
    )
    zones = SiteZonesField(
        required=False,
        help_text="The firewall zone (PAN-OS) or interface (ASA access-group) of each site; "
        'default "any" and no access-group.',
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["scope"] == Scope.SELECTION and not attrs.get("items"):
            raise serializers.ValidationError({"items": ["Name the items of the selection."]})
        if attrs["expiry"] and attrs["requested_date"] and attrs["expiry"] <= attrs["requested_date"]:
            raise serializers.ValidationError({"expiry": ["The expiry must come after the requested date."]})
        deployment: Deployment = self.context["deployment"]
        if "since" in attrs and not deployment.exports.filter(fingerprint=attrs["since"]).exists():
            raise serializers.ValidationError({"since": ["No earlier export of this deployment has this fingerprint."]})
        if attrs.get("zones"):
            sites = set(deployment.sites())
            unknown = sorted(set(attrs["zones"]) - sites)
            if unknown:
                raise serializers.ValidationError(
                    {"zones": [f"No site {unknown[0]!r} in this deployment; its sites: {', '.join(sorted(sites))}."]}
                )
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
        return items.filter(current_probe__state__in=FAILING_STATES)
    if scope == Scope.SELECTION:
        return items.filter(pk__in=ids or [])
    return items


@dataclass
class Flow:
    """One firewall rule as every export shows it: the checklist items (one per requirement)
    with the same source, destination, protocol and ports (Rule.flow), under their number."""

    number: int
    items: list[ChecklistItem]

    @cached_property
    def rule(self) -> Rule:
        """The flow's endpoints, interface, protocol and ports: the same in each of its rules."""
        return self.items[0].rule

    @cached_property
    def requirements(self) -> list[Requirement]:
        return list({item.requirement_id: item.requirement for item in self.items}.values())

    @property
    def uids(self) -> str:
        return ", ".join(requirement.uid for requirement in self.requirements)

    @property
    def purpose(self) -> str:
        return "; ".join(dict.fromkeys(requirement.description for requirement in self.requirements))

    @property
    def carries_tls(self) -> bool:
        return any(item.rule.carries_tls for item in self.items)

    @property
    def footnotes(self) -> list[dict]:
        notes = {note["kind"]: note for requirement in self.requirements for note in requirement.footnotes}
        return list(notes.values())

    @cached_property
    def latest_probe(self) -> object | None:
        """The newest of its items' latest probe results (they test the same flow)."""
        results = [item.latest_probe for item in self.items if item.latest_probe is not None]
        return max(results, key=lambda result: result.checked_at.timestamp() if result.checked_at else 0, default=None)

    @property
    def status(self) -> str:
        """The items' status, or each status with its count when they differ."""
        counts = defaultdict(int)
        for item in self.items:
            counts[item.get_status_display()] += 1
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{label} ({count})" for label, count in counts.items())


@dataclass
class RuleSet:
    """The items an export holds, in checklist order, with their latest probe results."""

    deployment: Deployment
    items: list[ChecklistItem]
    scope: str = Scope.ALL

    @classmethod
    def build(cls, deployment: Deployment, params: dict) -> RuleSet:
        return cls(deployment, list(select_items(deployment, params["scope"], params.get("items"))), params["scope"])

    @property
    def title(self) -> str:
        deployment = self.deployment
        return f"{deployment.name} ({deployment.team}), {deployment.catalog_version}"

    def about(self) -> list[tuple[str, str]]:
        """What a sheet says about its rules: where they come from, the warning and the notes."""
        version = self.deployment.catalog_version
        return [
            ("Checklist", self.title),
            ("Catalog", f"{version.product} {version.version} ({version.source_title}, {version.source_file})"),
            ("Rules", f"{len(self.flows)} firewall rules ({len(self.items)} checklist items merged by flow)"),
            ("Fingerprint (SHA-256 of the rule set)", self.fingerprint),
            ("Vendor warning", version.warning),
            ("Decryption", "Rules that carry TLS must be exempt from SSL decryption and inspection."),
            *((f"Note {note['sign']}", note["text"]) for note in version.footnotes),
        ]

    @cached_property
    def rules(self) -> list[Rule]:
        return [item.rule for item in self.items]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.rules)

    @cached_property
    def flows(self) -> list[Flow]:
        """The items merged into firewall rules, by number: the same numbers in every format."""
        merged: dict[int, list[ChecklistItem]] = defaultdict(list)
        for item in self.items:
            merged[item.number].append(item)
        return [Flow(number, items) for number, items in sorted(merged.items())]

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
