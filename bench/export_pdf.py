#!/usr/bin/env python
"""Time to produce the change request PDF for 100, 1,000 and 5,000 rules, and how it grows.

For each size, a deployment with that many rules is built in a throwaway test database,
and the same change request is rendered twice in the same run: as HTML only (the
template) and as the PDF (template, layout by WeasyPrint, fonts). The ratio shows what
the layout costs over the template; the growth column shows time per rule as the rule
count rises. No network.

    make bench      # or: python bench/export_pdf.py [--sizes 100,1000,5000]
"""

from __future__ import annotations

import argparse
import io
import math
import time

from harness import bench_database

# isort: split
from pypdf import PdfReader

from ports.deployments import save_deployment
from ports.exports import RuleSet, Scope
from ports.exports.pdf import render_html, render_pdf
from ports.models import Deployment

HOSTS = [
    ("security_manager", "fsm"), ("log_server", "log"), ("sql_server", "sql"), ("dlp_server", "dlp"),
    ("hybrid_service", "hybrid"), ("filtering_service", "filtering"), ("linking_service", "linking"),
    ("ldap", "ldap"), ("dns", "dns"), ("snmp_trap", "nms"),
]  # fmt: skip


def build(name: str, appliances: int) -> Deployment:
    return save_deployment(
        {
            "team": "Bench",
            "name": name,
            # Without Personal Email Manager: no peer-appliance mesh, so rules grow linearly.
            "features": ["dlp", "hybrid", "smd", "snmp", "web_protection"],
            "appliances": [
                {
                    "hostname": f"esa{n}",
                    "c_address": f"127.5.{n // 250}.{n % 250 + 1}",
                    "p1_address": f"127.6.{n // 250}.{n % 250 + 1}",
                }
                for n in range(appliances)
            ],
            "hosts": [
                {"role": role, "name": name, "address": f"127.7.0.{i + 1}"} for i, (role, name) in enumerate(HOSTS)
            ],
            "peer_networks": [
                {"role": "end_users", "name": "Staff", "network": "127.8.0.0/16"},
                {"role": "mail_senders", "name": "Internet", "network": "any"},
            ],
        }
    ).deployment


def deployment_with(rules: int) -> Deployment:
    """A deployment of at least `rules` rules."""
    per_appliance = build(f"probe for {rules}", 1)
    count = per_appliance.checklist.count()
    per_appliance.delete()
    return build(f"{rules} rules", math.ceil(rules / count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="rule counts (default 100,1000,5000)")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    with bench_database():
        print(f"{'rules':>6} {'HTML s':>8} {'PDF s':>8} {'PDF/HTML':>9} {'PDF ms/rule':>12} {'pages':>6}")
        for size in sizes:
            deployment = deployment_with(size)
            params = {"scope": Scope.SELECTION, "items": list(deployment.checklist.values_list("pk", flat=True)[:size])}
            rule_set = RuleSet.build(deployment, params)
            started = time.perf_counter()
            html = render_html(rule_set, params, None)
            html_s = time.perf_counter() - started
            started = time.perf_counter()
            pdf = render_pdf(render_html(rule_set, params, None))
            pdf_s = time.perf_counter() - started
            pages = len(PdfReader(io.BytesIO(pdf)).pages)
            print(
                f"{len(rule_set.rules):>6} {html_s:>8.2f} {pdf_s:>8.2f} {pdf_s / html_s:>8.0f}x "
                f"{pdf_s * 1000 / len(rule_set.rules):>12.1f} {pages:>6}"
            )
            assert len(html) > 0


if __name__ == "__main__":
    main()
