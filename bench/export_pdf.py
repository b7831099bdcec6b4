#!/usr/bin/env python
"""Time to produce the change request PDF for 100, 1,000 and 5,000 rules, against a plain
ReportLab table of the same rows, and how it grows.

For each size, a deployment with that many rules is built in a throwaway test database. In
the same run, the same rules are rendered as the reference, a bare ReportLab document of one
table of the rows as plain strings (the floor of what a PDF of these rows costs here), and
as the change request (content gathered from the database, then laid out with its cover,
CAB sections and per-path tables): without rollback commands, with them (nftables, a line per
rule), and as the worker's job does it for the export dialog (ports.tasks.render_change_request
called in process, no broker: the job row, the rules read, the layout with its progress
written, the PDF and the rule set saved). The ratios are over the reference; the ms/rule
columns show whether time per rule stays flat as rules grow (linear). No network.

The database is the configured one (PostgreSQL under `make bench`); the same sizes are then
timed on SQLite, `make run`'s database (a file of its own under /tmp), in a process of their
own since Django's database is fixed at setup.

    make bench      # or: python bench/export_pdf.py [--sizes 100,1000,5000] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import bench_database, document_at_scale

# isort: split
from django.db import connection
from pypdf import PdfReader

from ports.deployments import save_deployment
from ports.exports import ExportParams, RuleSet, Scope
from ports.exports.layout import TABLE_COLUMNS, render_pdf
from ports.exports.pdf import change_request
from ports.models import ChangeRequestJob, Deployment
from ports.tasks import render_change_request

ROLLBACK = "nftables"  # the export dialog's "Rollback commands": a line per rule


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


def worker_job(rule_set: RuleSet, params: dict, user: object) -> tuple[float, int, bytes]:
    """The worker's job for these rules with a rollback: seconds, progress writes during layout, PDF."""
    params = {**params, "syntax": ROLLBACK, "requester": "bench"}
    job = ChangeRequestJob.objects.create(
        deployment=rule_set.deployment, requested_by=user, params=ExportParams(params).data
    )
    writes = []
    advance = ChangeRequestJob.advance

    def counted(job: ChangeRequestJob, progress: int, stage: str, **fields: object) -> None:
        writes.append(progress)
        advance(job, progress, stage, **fields)

    ChangeRequestJob.advance = counted
    try:
        seconds, _ = timed(lambda: render_change_request(job.pk))
    finally:
        ChangeRequestJob.advance = advance
    job.refresh_from_db()
    assert job.status == ChangeRequestJob.Status.DONE, job.error
    return seconds, len([progress for progress in writes if 40 < progress < 100]), bytes(job.pdf)


def measure(sizes: list[int]) -> None:
    with bench_database() as user:
        print(
            f"On {connection.vendor}; the job: ports.tasks.render_change_request with {ROLLBACK} rollback "
            "commands; writes: its progress written while the PDF is laid out"
        )
        print(
            f"{'rules':>6} {'ReportLab s':>12} {'CR PDF s':>9} {'CR/RL':>6} {'CR ms/rule':>11} "
            f"{'+rollback s':>12} {'rb/RL':>6} {'job s':>6} {'job/RL':>7} {'job ms/rule':>12} "
            f"{'writes':>7} {'pages':>6}"
        )
        warm, warm_params = rules_of(10)  # fonts loaded, code paths warm: the sizes compare steady states
        reference_pdf(warm), render_pdf(change_request(warm, warm_params, None))
        for size in sizes:
            rule_set, params = rules_of(size)
            rule_set.flows  # noqa: B018 (the renderings start from the same merged rows)
            reference_s, _ = timed(lambda: reference_pdf(rule_set))  # noqa: B023
            pdf_s, _ = timed(lambda: render_pdf(change_request(rule_set, params, None)))  # noqa: B023
            rollback = {**params, "syntax": ROLLBACK}
            rollback_s, _ = timed(lambda: render_pdf(change_request(rule_set, rollback, None)))  # noqa: B023
            job_s, writes, job_pdf = worker_job(rule_set, params, user)
            pages = len(PdfReader(io.BytesIO(job_pdf)).pages)
            rules = len(rule_set.flows)
            print(
                f"{rules:>6} {reference_s:>12.2f} {pdf_s:>9.2f} {pdf_s / reference_s:>5.1f}x "
                f"{pdf_s * 1000 / rules:>11.2f} {rollback_s:>12.2f} {rollback_s / reference_s:>5.1f}x "
                f"{job_s:>6.2f} {job_s / reference_s:>6.1f}x {job_s * 1000 / rules:>12.2f} {writes:>7} {pages:>6}"
            )


def on_sqlite(sizes: str) -> None:
    """The same sizes on SQLite, in a process of its own (no DATABASE_URL)."""
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    subprocess.run([sys.executable, __file__, "--sizes", sizes, "--no-sqlite"], env=environment, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", default="100,1000,5000", help="rule counts (default 100,1000,5000)")
    parser.add_argument("--no-sqlite", action="store_true", help="only the configured database")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        if connection.vendor == "sqlite":
            # A file, as make run's database, rather than Django's test database in memory.
            connection.settings_dict["TEST"]["NAME"] = str(Path(scratch) / "bench.sqlite3")
        measure(sizes)
    if connection.vendor != "sqlite" and not args.no_sqlite:
        on_sqlite(args.sizes)


if __name__ == "__main__":
    main()
