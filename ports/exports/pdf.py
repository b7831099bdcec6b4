"""The PDF change request: rules grouped by firewall path, with what a firewall team needs
to approve and implement them."""

from __future__ import annotations

from collections import Counter, defaultdict

from django.template.loader import render_to_string
from django.utils import timezone

from . import RuleSet, Scope


def render_html(rule_set: RuleSet, params: dict, user: object) -> str:
    deployment = rule_set.deployment
    numbered = list(rule_set.numbered())
    delta = None
    if params.get("since"):
        delta = rule_set.diff(params["since"])
        added = {rule.identity() for rule in delta["added"]}
        numbered = [(number, item) for number, item in numbered if item.rule.identity() in added]
    rules = [item.rule for _, item in numbered]
    groups: dict[str, list] = defaultdict(list)
    for number, item in numbered:
        groups[item.rule.firewall].append((number, item))
    destinations = Counter((rule.destination.name, rule.destination.address) for rule in rules)
    requester = params.get("requester") or (user.get_full_name() or user.get_username() if user else "")
    context = {
        "deployment": deployment,
        "version": deployment.catalog_version,
        "rules": rules,
        "groups": [{"path": path, "rows": rows} for path, rows in sorted(groups.items())],
        "by_direction": sorted(Counter(rule.direction for rule in rules).items()),
        "by_destination": [(name, address, count) for (name, address), count in sorted(destinations.items())],
        "footnotes": sorted({note["text"] for rule in rules for note in rule.requirement.footnotes}),
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


def render_pdf(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()
