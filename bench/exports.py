#!/usr/bin/env python
"""Every export of a deployment at the rule limit (MAX_RULES, 20,000 checklist items).

Builds, in a throwaway test database (PostgreSQL under `make bench`), a deployment of exactly
MAX_RULES items (200 appliances, half of the items with a current probe state), then times
each format through Django's full request handling in process (no network), the body read to
its last byte (a streamed one included): the checklist as JSON and CSV, the CSV and XLSX
exports, every firewall syntax, and the synchronous change request (which hands a rule set
this large to a worker). The reference of the same run is the checklist JSON rendered anew
(its kept rendering dropped before each request): it reads the same items. Each format must
answer within the web worker's timeout (gunicorn's default, 30 s; a sync worker is killed
after that even while it streams). openpyxl's write-only mode writing the same cells as plain
values shows how much of the XLSX is the library's own. Last, the worker's change request of
the whole rule set (the body of ports.tasks.render_change_request) is timed once: it must end
within the worker's soft time limit (CELERY_TASK_SOFT_TIME_LIMIT).

    make bench      # or: python bench/exports.py [--requests N] [--skip-pdf-job]
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time

from harness import bench_database, document_at_scale

# isort: split
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.utils import timezone

from ports.deployments import save_deployment
from ports.exports import RuleSet, Scope
from ports.exports.firewall import SYNTAXES
from ports.exports.layout import render_pdf
from ports.exports.pdf import change_request
from ports.exports.sheets import SHEET_COLUMNS, flow_row, xlsx_cell
from ports.models import ApiToken, ChecklistItem, Deployment
from probes.models import ProbeRun

GUNICORN_TIMEOUT = 30  # seconds: gunicorn's default, which the Dockerfile keeps
APPLIANCES = 200  # MAX_APPLIANCES


def build() -> Deployment:
    """200 appliances with 100 rules each: every host once, 19 more DNS and LDAP servers (4
    rules an appliance each) and one more DNS server (2), without Personal Email Manager (no
    peer-appliance mesh). The three DLP requirements of a range merge into one flow."""
    extra = ({"role": "dns", "name": "dns-extra", "address": "127.7.99.1"},)
    document = document_at_scale("At the limit", APPLIANCES, copies=20, extra_hosts=extra)
    deployment = save_deployment(document).deployment
    items = list(ChecklistItem.objects.filter(deployment=deployment).values_list("pk", flat=True))
    probed = items[::2]
    run = ProbeRun.objects.create(
        deployment=deployment, timeout=1, deadline=timezone.now(), total=len(probed), pending={"default": probed}
    )
    ProbeRun.record(run.pk, "bench", {pk: {"state": "refused", "summary": "refused"} for pk in probed})
    return Deployment.objects.get(pk=deployment.pk)


def bare_xlsx(rule_set: RuleSet) -> tuple[float, int]:
    """openpyxl's write-only mode writing the XLSX export's cells as plain values, untyped and
    unstyled: what openpyxl itself takes for these cells (seconds, cells)."""
    from openpyxl import Workbook

    rows = [[xlsx_cell(row[name]) for name, _ in SHEET_COLUMNS] for row in map(flow_row, rule_set.flows)]
    started = time.perf_counter()
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Rules")
    for row in rows:
        sheet.append(row)
    workbook.save(io.BytesIO())
    return time.perf_counter() - started, len(rows) * len(SHEET_COLUMNS)


def fetch(client: Client, url: str) -> tuple[float, int, int, bool]:
    """Seconds to the last byte, status, size, and whether the body was streamed."""
    started = time.perf_counter()
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return time.perf_counter() - started, response.status_code, len(body), response.streaming


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3, help="timed requests per format (default 3)")
    parser.add_argument("--skip-pdf-job", action="store_true", help="leave out the worker's change request")
    args = parser.parse_args()
    logging.getLogger("django.request").setLevel(logging.ERROR)  # the change request's expected 400s

    with bench_database() as user:
        started = time.perf_counter()
        deployment = build()
        items = deployment.checklist.count()
        assert items == settings.MAX_RULES, items
        flows = deployment.checklist.values("number").distinct().count()
        print(
            f"database: {connection.vendor}; {items} checklist items ({flows} firewall rules), "
            f"built in {time.perf_counter() - started:.0f} s"
        )
        client = Client(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user, 'Bench')[1]}")
        base = f"/api/deployments/{deployment.pk}"
        cases = {
            "/api/me/": "/api/me/",
            "checklist JSON (reference)": f"{base}/checklist/",
            "checklist CSV": f"{base}/checklist/?format=csv",
            "CSV export": f"{base}/checklist.csv",
            "XLSX export": f"{base}/checklist.xlsx",
            **{f"firewall {name}": f"{base}/firewall/{name}/" for name in SYNTAXES},
            "change request PDF": f"{base}/change-request.pdf",
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        answers: dict[str, tuple[int, int, bool]] = {}
        fetch(client, cases["/api/me/"])  # connections and code paths warm
        for _ in range(args.requests):  # interleaved: any drift of the machine weighs on all alike
            for name, url in cases.items():
                caches["checklists"].clear()  # the checklist rendered anew, as after a change
                seconds, code, size, streamed = fetch(client, url)
                samples[name].append(seconds)
                answers[name] = (code, size, streamed)

        reference = statistics.median(samples["checklist JSON (reference)"])
        print(f"{'format':<28} {'median s':>9} {'max s':>7} {'vs JSON':>8} {'status':>6} {'MB':>6} {'streamed':>8}")
        for name, values in samples.items():
            code, size, streamed = answers[name]
            median = statistics.median(values)
            print(
                f"{name:<28} {median:>9.2f} {max(values):>7.2f} {median / reference:>7.1f}x {code:>6} "
                f"{size / 1e6:>6.1f} {'yes' if streamed else 'no':>8}"
            )
        slowest = max(max(values) for values in samples.values())
        verdict = "within" if slowest < GUNICORN_TIMEOUT else "OVER"
        print(
            f"({args.requests} requests per format; slowest {slowest:.1f} s, {verdict} gunicorn's {GUNICORN_TIMEOUT} s)"
        )
        print("The synchronous change request refuses more than EXPORT_SYNC_RULES rules (a 400 naming the job).")
        seconds, cells = bare_xlsx(RuleSet.build(deployment, {"scope": Scope.ALL}))
        xlsx = statistics.median(samples["XLSX export"])
        print(
            f"openpyxl alone (write-only, the same {cells:,} cells as plain values): {seconds:.2f} s; "
            f"the XLSX export takes {xlsx / seconds:.1f}x that"
        )

        if not args.skip_pdf_job:
            # What the worker does for POST .../change-requests/ (ports.tasks.render_change_request).
            started = time.perf_counter()
            params = {"scope": Scope.ALL}
            rule_set = RuleSet.build(deployment, params)
            pdf = render_pdf(change_request(rule_set, params, user))
            rule_set.remember("pdf", user)
            seconds = time.perf_counter() - started
            print(
                f"change request PDF by the worker: {len(rule_set.flows)} rules in {seconds:.1f} s "
                f"({seconds / reference:.0f}x the JSON; {len(pdf) / 1e6:.1f} MB), soft time limit "
                f"{settings.CELERY_TASK_SOFT_TIME_LIMIT} s"
            )


if __name__ == "__main__":
    main()
