"""The PDF change request: what a change-advisory board asks for (impact, risk, implementation,
test plan, rollback, approval) and the firewall rules, numbered as in every export and grouped
by the firewall path that implements them.

`change_request()` gathers the content; `layout.render_pdf()` lays it out with ReportLab. The rule
tables are plain strings wrapped by width, never a paragraph per cell: a change request of
thousands of rules renders in a few times what a bare ReportLab table of the same rows takes
(bench/export_pdf.py). Everything a user typed is escaped before it reaches a paragraph's markup.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC

from django.utils import timezone

from ..addresses import Kind
from ..choices import RequestState, Stop
from ..models import ChangeRequest
from ..ranges import number_runs
from ..rules import PortRange
from . import Flow, RuleSet, Scope
from .firewall import SYNTAXES, Target

TLS_MARK = "◆"


def when(moment: object) -> str:
    """A time as a change request shows it: 2026-11-29 16:49 UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


@dataclass(frozen=True)
class Step:
    """A step of a change request's record, as its PDF lists it."""

    step: str  # the state it reached, in words: "Approved"
    by: str  # who took it: a username, or "portal" for the portal itself
    at: str  # when(): UTC, as every time of the document
    comment: str


@dataclass
class RequestDocument:
    """What the document says, gathered from a rule set and the request's parameters; for a
    change request of the portal (ports.models.ChangeRequest), its title, state and record too.
    A checklist exported as a change request has no record (None): it ends with empty signature
    lines for people to sign; a request of the portal ends with who took each step instead."""

    rule_set: RuleSet
    params: dict
    requester: str
    flows: list[Flow]
    delta: dict | None = None  # {"since": fingerprint} of a delta request
    removed: list[dict] = field(default_factory=list)  # flows of the earlier rule set that are gone
    changed: list[tuple[Flow, list[str], list[str]]] = field(default_factory=list)  # requirements added, gone
    generated: str = ""
    title: str = ""
    state: str = ""  # the request's state in words ("Approved"); "" for a checklist export
    record: list[Step] | None = None
    request_id: int | None = None  # the portal's change request, for its API's steps

    @property
    def deployment(self) -> object:
        return self.rule_set.deployment

    @property
    def reference(self) -> str:
        return self.params.get("reference") or f"CR-{self.deployment.pk}"

    @property
    def item_count(self) -> int:
        return sum(len(flow.items) for flow in self.flows)

    def groups(self) -> list[tuple[str, list[Flow]]]:
        """Flows by the firewall path that implements them (source site → destination site)."""
        found: dict[str, list[Flow]] = defaultdict(list)
        for flow in self.flows:
            found[flow.rule.firewall].append(flow)
        return sorted(found.items())

    def tls_numbers(self) -> str:
        return numbers_text([flow for flow in self.flows if flow.carries_tls], SHORT)

    def impact(self) -> list[tuple[str, str, str]]:
        """Per path of roles (who opens, who listens): its rules and the functions that stop without them."""
        found: dict[str, list[Flow]] = defaultdict(list)
        for flow in self.flows:
            found[flow.rule.path].append(flow)
        return [
            (path, numbers_text(members, SHORT), "; ".join(dict.fromkeys(f.purpose for f in members)))
            for path, members in sorted(found.items())
        ]

    def risks(self) -> list[str]:
        """What a reviewer should weigh, derived from the rules themselves."""

        def rules(flows: list[Flow], one: str, many: str) -> str:  # "Rule 3 allows", "Rules 1-3 allow"
            return (
                f"Rule {numbers_text(flows, SHORT)} {one}"
                if len(flows) == 1
                else f"Rules {numbers_text(flows, SHORT)} {many}"
            )

        flows, found = self.flows, []
        anywhere = [f for f in flows if Kind.ANY in (f.rule.source.kind, f.rule.destination.kind)]
        if anywhere:
            found.append(
                f"{rules(anywhere, 'allows', 'allow')} any address on one side (sending mail servers, end users): "
                "that is what the product needs, and the only exposure beyond named hosts."
            )
        ranges = [f for f in flows if f.rule.ports.count > 1]
        if ranges:
            found.append(f"{rules(ranges, 'opens a port range', 'open port ranges')}, as the vendor requires.")
        tls = [f for f in flows if f.carries_tls]
        if tls:
            found.append(
                f"{rules(tls, 'is', 'are')} exempt from SSL decryption: a middlebox does not see into that "
                "traffic. Decrypting it breaks the product (the vendor's warning)."
            )
        # Failing as the checklist counts it: one-way UDP (unverifiable) has not failed.
        failing = [f for f in flows if f.latest_probe and f.latest_probe.failing]
        if failing:
            found.append(f"{rules(failing, 'failed its', 'failed their')} last probe: still closed or intercepted.")
        found.append("Each rule allows one protocol and port (range) between exactly the addresses given.")
        return found

    def test_plan(self) -> dict:
        """The probe run that verifies the rules: its command, its API call and the sites it runs from."""
        pk = self.deployment.pk
        ids = ",".join(str(item.pk) for flow in self.flows for item in flow.items)
        if not self.flows:
            return {"command": "", "api": "", "body": "", "sites": []}
        whole = self.rule_set.scope == Scope.ALL and not self.delta
        return {
            "command": f"python manage.py probe {pk} --wait" + ("" if whole else f" --items {ids}"),
            "api": f"POST /api/deployments/{pk}/probe-runs/",
            "body": "{}"
            if whole
            else json.dumps({"items": [int(i) for i in ids.split(",") if i]}, separators=(",", ":")),
            "sites": sorted(Counter(flow.rule.source.site for flow in self.flows).items()),
        }

    def stops(self) -> list[str]:
        """The failing rules by the device where their traffic stops, most rules first, each a sentence
        that names whom to ask: "Rules 3-5 stop after 10.0.1.1: ask the owner of 10.0.1.1.\" """
        found: dict[tuple[str, Stop], list[Flow]] = defaultdict(list)
        for flow in self.flows:
            if flow.stop:
                found[flow.stop].append(flow)
        ordered = sorted(found.items(), key=lambda stop: (-len(stop[1]), stop[0][0], stop[0][1]))
        return [
            f"{Stop.rules(len(flows)).capitalize()} {numbers_text(flows, SHORT)} {how.verb(len(flows))} {address}: "
            f"ask the owner of {address}."
            for (address, how), flows in ordered
        ]

    def rollback(self) -> list[str]:
        syntax = self.params.get("syntax")
        return SYNTAXES[syntax].rollback(self.flows, Target.of(self.rule_set, self.params)) if syntax else []


def change_request(rule_set: RuleSet, params: dict, user: object) -> RequestDocument:
    requester = params.get("requester") or (user.get_full_name() or user.get_username() if user else "")
    request = RequestDocument(rule_set, params, requester, rule_set.flows, generated=when(timezone.now()))
    if params.get("since"):
        request.delta = {"since": params["since"]}
        request.flows, request.removed, request.changed = delta(rule_set, params["since"])
    return request


def of_change_request(asked: ChangeRequest) -> RequestDocument:
    """The PDF of a change request of the portal: exactly its rules (those still in the checklist),
    its CAB fields as an export's parameters, and its state and record; its requester is who drafted
    it, whoever downloads it. The transitions are read as prefetched, if they were."""
    params = {
        "scope": Scope.SELECTION,
        "items": list(asked.items.values_list("pk", flat=True)),
        **{name: getattr(asked, name) for name in ChangeRequest.FIELDS if name != "title"},
        # Without a reference of its own, its name in the portal (CR-<id>, as ChangeRequest.__str__
        # has it): RequestDocument's default names the deployment, which has many requests.
        "reference": asked.reference or f"CR-{asked.pk}",
    }
    document = change_request(RuleSet.build(asked.deployment, params), params, asked.requested_by)
    document.title, document.state, document.request_id = asked.title, asked.get_state_display(), asked.pk
    drafter = asked.requested_by.get_username() if asked.requested_by else ""
    drafted = Step("Drafted", drafter, when(asked.created), "")  # its creation: no transition of its own
    document.record = [drafted] + [
        Step(RequestState(step.to_state).label, step.user_name or "portal", when(step.at), step.comment)
        for step in asked.transitions.all()
    ]
    return document


def delta(rule_set: RuleSet, since: str) -> tuple[list[Flow], list[dict], list[tuple[Flow, list[str], list[str]]]]:
    """What changed since an earlier export, as a firewall sees it: flows added (whose source,
    destination, protocol and ports were not allowed before), flows gone, and flows that stay
    but now serve other requirements. A flow that loses one of its requirements is not removed."""
    earlier = rule_set.deployment.exports.get(fingerprint=since).rules
    before: dict[tuple, list[str]] = defaultdict(list)
    for rule in earlier:
        before[(rule["source"], rule["destination"], rule["protocol"], rule["port_start"], rule["port_end"])].append(
            rule["requirement"]
        )
    now = {flow.rule.flow: flow for flow in rule_set.flows}
    added = [flow for key, flow in now.items() if key not in before]
    removed = [
        {
            "source": src,
            "destination": dst,
            "protocol": proto,
            "ports": str(PortRange(start, end)),
            "requirements": uids,
        }
        for (src, dst, proto, start, end), uids in before.items()
        if (src, dst, proto, start, end) not in now
    ]
    changed = []
    for key, flow in now.items():
        uids = [requirement.uid for requirement in flow.requirements]
        if key in before and set(uids) != set(before[key]):
            changed.append((flow, sorted(set(uids) - set(before[key])), sorted(set(before[key]) - set(uids))))
    return added, removed, changed


SHORT = 240  # characters of a list of rule numbers in a table cell or a sentence


def numbers_text(flows: list[Flow], limit: int | None = None) -> str:
    """Rule numbers as runs: "1-4, 7, 9-12"; cut after `limit` characters with the count in all."""
    text = number_runs(flow.number for flow in flows)
    if limit and len(text) > limit:
        text = f"{text[: text.rfind(', ', 0, limit)]}, … ({len(flows)} rules in all)"
    return text
