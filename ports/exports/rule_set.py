"""A deployment's rules handed out: which items an export holds (its scope), merged into
firewall rules (flows), in which order, and its fingerprint. Every format of the package reads
its rules from a RuleSet: the same flows under the same numbers (ChecklistItem.number, as the
checklist page does), and every export is kept under its fingerprint.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from ..checklist import remember_rule_set
from ..choices import ItemStatus, Stop
from ..models import STOP_AT, STOP_HOW, ChecklistItem, Deployment, Requirement
from ..rules import IDENTITY_FIELDS, PortRange, Rule, fingerprint


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


# An item's status as people read it; get_status_display() costs more than the rest of a sheet's row.
STATUS_LABELS = dict(ItemStatus.choices)


def select_items(deployment: Deployment, scope: str, ids: list[int] | None = None) -> list[ChecklistItem]:
    # Up to MAX_RULES items share a few dozen requirements: prefetching builds each requirement
    # (and decodes its JSON fields) once, where select_related built one per item.
    # Where a failing rule stops is read with the items (two strings out of each probe's evidence,
    # in the same query): the change request names the device to ask (Flow.stop).
    items = deployment.checklist.prefetch_related("requirement").with_latest_probe().with_stop()
    if scope == Scope.UNVERIFIED:
        items = items.exclude(status__in=[ItemStatus.VERIFIED, ItemStatus.WAIVED])
    elif scope == Scope.SELECTION:
        items = items.filter(pk__in=ids or [])
    elif scope == Scope.FAILED:
        # What fails is the probes' word (a result's `failing`): asked of each joined result.
        return [item for item in items if item.latest_probe is not None and item.latest_probe.failing]
    return list(items)


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
    def stop(self) -> tuple[str, Stop] | None:
        """Where the flow's traffic stops, (address, how), if its latest probe fails and says where.
        Read by select_items (with_stop); a rule set of items read otherwise knows no stop."""
        probe = self.latest_probe
        if probe is None or not probe.failing:
            return None
        item = next(item for item in self.items if item.latest_probe is probe)
        address = getattr(item, STOP_AT, None)
        return (address, Stop(getattr(item, STOP_HOW))) if address else None

    @property
    def status(self) -> str:
        """The items' status, or each status with its count when they differ."""
        counts = defaultdict(int)
        for item in self.items:
            counts[STATUS_LABELS[item.status]] += 1
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
        return cls(deployment, select_items(deployment, params["scope"], params.get("items")), params["scope"])

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
        # Most exports hand out a rule set on record already (the whole checklist is kept when it
        # is generated): one query says so, where keeping it hashes and lists every rule again.
        if self.deployment.exports.filter(fingerprint=self.fingerprint).exists():
            return self.fingerprint
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
