"""The PDF change request: what a change-advisory board asks for (impact, implementation,
rollback, test plan, risk, approval) and the firewall rules, numbered as in every export and
grouped by the firewall path that implements them."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from django.template.loader import render_to_string
from django.utils import timezone

from ..rules import PortRange
from . import Flow, RuleSet, Scope
from .firewall import SYNTAXES, Target

# Rules per table: WeasyPrint lays out a table that spans pages at a cost that grows with its
# pages, so long groups are cut into tables of about one page each (see bench/export_pdf.py).
ROWS_PER_TABLE = 25


def render_html(rule_set: RuleSet, params: dict, user: object) -> str:
    deployment = rule_set.deployment
    flows = rule_set.flows
    delta = None
    if params.get("since"):
        delta = rule_set.diff(params["since"])
        added = {rule.identity() for rule in delta["added"]}
        flows = [flow for flow in flows if any(item.rule.identity() in added for item in flow.items)]
    groups: dict[str, list[Flow]] = defaultdict(list)
    for flow in flows:
        groups[flow.rule.firewall].append(flow)
    destinations = Counter((flow.rule.destination.name, flow.rule.destination.address) for flow in flows)
    requester = params.get("requester") or (user.get_full_name() or user.get_username() if user else "")
    syntax = params.get("syntax")
    context = {
        "deployment": deployment,
        "version": deployment.catalog_version,
        "flows": flows,
        "item_count": sum(len(flow.items) for flow in flows),
        "groups": [
            {"path": path, "count": len(rows), "tables": page_tables(rows)} for path, rows in sorted(groups.items())
        ],
        "by_direction": sorted(Counter(flow.rule.direction for flow in flows).items()),
        "by_destination": [(name, address, count) for (name, address), count in sorted(destinations.items())],
        "impact": impact(flows),
        "risks": risks(flows),
        "test_plan": test_plan(rule_set, params, flows),
        "rollback": {
            "numbers": numbers_text(flows),
            "syntax": syntax,
            "text": "\n".join(SYNTAXES[syntax].rollback(flows, Target.of(rule_set, params))) if syntax else "",
        },
        "tls_numbers": numbers_text([flow for flow in flows if flow.carries_tls]),
        "removed": merged_removals(delta["removed"]) if delta else [],
        "footnotes": deployment.catalog_version.footnotes,
        "fingerprint": rule_set.fingerprint,
        "delta": delta,
        "scope_label": Scope.labels[rule_set.scope],
        "dlp_range": deployment.dlp_range,
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


def page_tables(flows: list[Flow]) -> list[list[Flow]]:
    return [flows[start : start + ROWS_PER_TABLE] for start in range(0, len(flows), ROWS_PER_TABLE)]


def numbers_text(flows: list[Flow]) -> str:
    """Rule numbers as runs: "1-4, 7, 9-12"."""
    runs: list[list[int]] = []
    for number in sorted(flow.number for flow in flows):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(str(PortRange(run[0], run[-1])) for run in runs)


def impact(flows: list[Flow]) -> list[dict]:
    """Per path of roles (who opens, who listens): the product functions that stop without its rules."""
    groups: dict[str, list[Flow]] = defaultdict(list)
    for flow in flows:
        groups[flow.rule.path].append(flow)
    return [
        {
            "path": path,
            "numbers": numbers_text(members),
            "functions": list(dict.fromkeys(r.description for flow in members for r in flow.requirements)),
        }
        for path, members in sorted(groups.items())
    ]


def risks(flows: list[Flow]) -> list[str]:
    """What a reviewer should weigh, derived from the rules themselves."""
    found = []
    anywhere = [flow for flow in flows if "any" in (flow.rule.source.address, flow.rule.destination.address)]
    if anywhere:
        found.append(
            f"Rules {numbers_text(anywhere)} allow any address on one side (sending mail servers, end users): "
            "that is what the product needs, and the only exposure beyond named hosts."
        )
    ranges = [flow for flow in flows if flow.rule.ports.count > 1]
    if ranges:
        found.append(f"Rules {numbers_text(ranges)} open port ranges, as the vendor requires; nothing else in them.")
    tls = [flow for flow in flows if flow.carries_tls]
    if tls:
        found.append(
            f"Rules {numbers_text(tls)} are exempt from SSL decryption: a middlebox does not see into that "
            "traffic. Decrypting it breaks the product (the vendor's warning)."
        )
    failing = [flow for flow in flows if flow.latest_probe and flow.latest_probe.state != "open"]
    if failing:
        found.append(f"Rules {numbers_text(failing)} failed their last probe: they are still closed or intercepted.")
    found.append(
        "Each rule allows one protocol and port (range) between exactly the addresses given; all are allow rules."
    )
    return found


def test_plan(rule_set: RuleSet, params: dict, flows: list[Flow]) -> dict:
    """The probe run that verifies the rules: what to run, from which sites."""
    deployment = rule_set.deployment
    ids = [item.pk for flow in flows for item in flow.items]
    whole = rule_set.scope == Scope.ALL and not params.get("since")
    body = {} if whole else {"items": ids}
    sites = Counter(flow.rule.source.site for flow in flows)
    return {
        "command": f"python manage.py probe {deployment.pk} --wait"
        + ("" if whole else f" --items {','.join(map(str, ids))}"),
        "api": f"POST /api/deployments/{deployment.pk}/probe-runs/",
        "body": json.dumps(body, separators=(",", ":")),
        "sites": sorted(sites.items()),
    }


def merged_removals(removed: list[dict]) -> list[dict]:
    """Rules removed since an earlier export (identities), merged by flow as every export does."""
    merged: dict[tuple, dict] = {}
    for rule in removed:
        key = (rule["source"], rule["destination"], rule["protocol"], rule["ports"])
        merged.setdefault(key, {**rule, "requirements": []})["requirements"].append(rule["requirement"])
    return list(merged.values())


def render_pdf(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()
