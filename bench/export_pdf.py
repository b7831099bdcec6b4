#!/usr/bin/env python
"""Time to produce the change request PDF for 100, 1,000 and 5,000 rules, against a plain
ReportLab table of the same rows, and how it grows.

For each size, a deployment with that many rules is built in a throwaway test database. In
the same run, the same rules are rendered twice: as the reference, a bare ReportLab document
of one table of the rows as plain strings (the floor of what a PDF of these rows costs here),
and as the change request (content gathered from the database, then laid out with its cover,
CAB sections and per-path tables). The ratio is the change request over the reference; the
ms/rule column shows whether time per rule stays flat as rules grow (linear). No network.

    make bench      # or: python bench/export_pdf.py [--sizes 100,1000,5000]
"""

from __future__ import annotations

import argparse
import io
import math
import time

from harness import bench_database, document_at_scale

# isort: split
from pypdf import PdfReader

from ports.deployments import save_deployment
from ports.exports import RuleSet, Scope
from ports.exports.layout import TABLE_COLUMNS, render_pdf
from ports.exports.pdf import change_request
from ports.models import Deployment


def build(name: str, appliances: int) -> Deployment:
    # Four DNS and four LDAP servers, so that 5,000 rules fit within MAX_APPLIANCES.
    return save_deployment(document_at_scale(name, appliances, copies=4)).deployment


def rules_of(size: int) -> tuple[RuleSet, dict]:
    """The first `size` firewall rules (merged flows) of a deployment built to have them."""
    per_appliance = build(f"probe for {size}", 1)
    count = per_appliance.checklist.values("number").distinct().count()
    per_appliance.delete()
    deployment = build(f"{size} rules", math.ceil(size / count))
    flows = RuleSet.build(deployment, {"scope": Scope.ALL}).flows[:size]
    params = {"scope": Scope.SELECTION, "items": [item.pk for flow in flows for item in flow.items]}
    return RuleSet.build(deployment, params), params


def reference_pdf(rule_set: RuleSet) -> bytes:
    """A bare ReportLab document: one table of the rules' cells as plain strings, header repeated."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import LongTable, SimpleDocTemplate, TableStyle

    rows = [[heading for heading, _ in TABLE_COLUMNS]]
    for flow in rule_set.flows:
        rule = flow.rule
        rows.append(
            [
                str(flow.number),
                f"{rule.source.address}\n{rule.source.name}",
                f"{rule.destination.address}\n{rule.destination.name}",
                rule.protocol,
                str(rule.ports),
                rule.direction,
                rule.interface,
                flow.purpose[:40],
                flow.uids[:30],
                "not probed",
            ]
        )
    table = LongTable(rows, colWidths=[width * mm for _, width in TABLE_COLUMNS], repeatRows=1)
    table.setStyle(TableStyle([("FONTSIZE", (0, 0), (-1, -1), 7.5), ("GRID", (0, 0), (-1, -1), 0.5, "#999999")]))
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=landscape(A4)).build([table])
    return out.getvalue()


def timed(render: object) -> tuple[float, bytes]:
    started = time.perf_counter()
    pdf = render()
    return time.perf_counter() - started, pdf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", default="100,1000,5000", help="rule counts (default 100,1000,5000)")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    with bench_database():
        print(f"{'rules':>6} {'ReportLab s':>12} {'CR PDF s':>9} {'CR/RL':>6} {'CR ms/rule':>11} {'pages':>6}")
        warm, warm_params = rules_of(10)  # fonts loaded, code paths warm: the sizes compare steady states
        reference_pdf(warm), render_pdf(change_request(warm, warm_params, None))
        for size in sizes:
            rule_set, params = rules_of(size)
            rule_set.flows  # noqa: B018 (both renderings start from the same merged rows)
            reference_s, _ = timed(lambda: reference_pdf(rule_set))  # noqa: B023
            pdf_s, pdf = timed(lambda: render_pdf(change_request(rule_set, params, None)))  # noqa: B023
            pages = len(PdfReader(io.BytesIO(pdf)).pages)
            rules = len(rule_set.flows)
            print(
                f"{rules:>6} {reference_s:>12.2f} {pdf_s:>9.2f} {pdf_s / reference_s:>5.1f}x "
                f"{pdf_s * 1000 / rules:>11.2f} {pages:>6}"
            )


if __name__ == "__main__":
    main()
