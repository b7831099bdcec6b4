#!/usr/bin/env python
"""The deployments page and GET /api/deployments/ for a team with 110,000 rules.

Builds, in a throwaway test database (PostgreSQL under `make bench`), a team of deployments
of 40 appliances each (2,560 rules apiece) until the team has at least 110,000 rules, with a
current probe state for every tenth rule, then times the page and the API's first page
against the login page and /api/me/ measured in the same run.

    make bench            # or: python bench/deployment_list.py [--rules N] [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import bench_database

# isort: split
from checklist_api import document
from django.db import connection
from django.test import Client
from django.utils import timezone

from ports.deployments import save_deployment
from ports.models import ApiToken, ChecklistItem
from probes.models import ProbeRun


def build(rules: int) -> int:
    made = 0
    number = 0
    while made < rules:
        number += 1
        deployment = save_deployment({**document(), "name": f"Bench {number}", "team": "Bench"}).deployment
        items = list(ChecklistItem.objects.filter(deployment=deployment).values_list("pk", flat=True))
        probed = items[::10]
        run = ProbeRun.objects.create(
            deployment=deployment, timeout=1, deadline=timezone.now(), total=len(probed), pending={"default": probed}
        )
        ProbeRun.record(run.pk, "bench", {pk: {"state": "refused", "summary": "refused"} for pk in probed})
        made += len(items)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=110_000)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    with bench_database() as user:
        started = time.perf_counter()
        made = build(args.rules)
        print(
            f"database: {connection.vendor}; {made} rules in the team, built in {time.perf_counter() - started:.0f} s"
        )
        browser = Client()
        browser.force_login(user)
        api = Client(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user, 'Bench')[1]}")
        cases = {
            "login page": (Client(), "/accounts/login/"),
            "deployments page": (browser, "/"),
            "/api/me/": (api, "/api/me/"),
            "GET /api/deployments/": (api, "/api/deployments/"),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        sizes: dict[str, int] = {}
        for round_ in range(args.requests + 2):
            for name, (client, url) in cases.items():
                began = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - began) * 1000
                assert response.status_code == 200, (url, response.status_code)
                sizes[name] = len(response.content)
                if round_ >= 2:
                    samples[name].append(elapsed)
        print(f"{'request':<24} {'median ms':>10} {'max ms':>9} {'bytes':>10} {'vs reference':>13}")
        for name, values in samples.items():
            reference = statistics.median(samples["login page" if "page" in name else "/api/me/"])
            median = statistics.median(values)
            print(f"{name:<24} {median:>10.1f} {max(values):>9.1f} {sizes[name]:>10} {median / reference:>12.1f}x")


if __name__ == "__main__":
    main()
