#!/usr/bin/env python
"""Latency of one status change of every rule of a deployment of 40 appliances (2,560 rules).

Builds the deployment in a throwaway test database (PostgreSQL under `make bench`), then times
POST /api/deployments/{id}/checklist/status/ changing every rule, by their ids and by `filter`
({} selects every rule), a dry run of it, and one item's PATCH (what the page sent once per
rule before), against a trivial authenticated endpoint (/api/me/) measured in the same run,
requests interleaved so that any drift of the machine weighs on all alike. Each change moves
every rule (requested, opened, requested, ...): none is left unchanged. Requests go through
Django's full request handling in process: no network.

    make bench            # or: python bench/bulk_status.py [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from itertools import cycle

from harness import bench_database

# isort: split
from checklist_api import document, percentile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ports.models import ApiToken, StatusChange


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10, help="timed requests per case (default 10)")
    args = parser.parse_args()

    with bench_database() as user:
        client = Client(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user, 'Bench')[1]}")
        created = client.post("/api/deployments/", {**document(), "team": "Bench"}, content_type="application/json")
        assert created.status_code == 201, created.content
        deployment = created.json()
        url = f"/api/deployments/{deployment['id']}/checklist/status/"
        ids = [item["id"] for item in client.get(f"/api/deployments/{deployment['id']}/checklist/").json()["items"]]
        # Every change moves every rule: the bulk changes alternate, the PATCH takes its rule back to
        # do, and the dry run asks for a status that no rule has.
        statuses = cycle(["requested", "opened"])

        def change(selection: dict, dry_run: bool = False) -> Callable[[], object]:
            def post() -> object:
                status = "verified" if dry_run else next(statuses)
                body = {"status": status, "comment": "CHG-1", **selection, "dry_run": dry_run}
                response = client.post(url, body, content_type="application/json")
                assert response.status_code == 200, response.content
                assert response.json()["changed"] == len(ids), response.json()
                return response

            return post

        def patch_one() -> object:
            return client.patch(f"/api/checklist-items/{ids[0]}/", {"status": "todo"}, content_type="application/json")

        cases: dict[str, Callable[[], object]] = {
            "trivial /api/me/": lambda: client.get("/api/me/"),
            "bulk by ids": change({"items": ids}),
            "bulk by filter {}": change({"filter": {}}),
            "dry run by filter {}": change({"filter": {}}, dry_run=True),
            "one item's PATCH": patch_one,
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        queries: dict[str, int] = {}
        for round_ in range(args.requests + 2):
            for name, request in cases.items():
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = request()
                    elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (name, response.status_code)
                queries[name] = len(captured)
                if round_ >= 2:  # the first rounds warm caches and connections
                    samples[name].append(elapsed)

        print(f"database: {connection.vendor}; {len(ids)} checklist items, all changed by each bulk request")
        reference = statistics.median(samples["trivial /api/me/"])
        print(f"{'request':<22} {'median ms':>10} {'p95 ms':>10} {'queries':>8} {'median vs trivial':>18}")
        for name, values in samples.items():
            median = statistics.median(values)
            print(
                f"{name:<22} {median:>10.1f} {percentile(values, 0.95):>10.1f} {queries[name]:>8}"
                f" {median / reference:>17.1f}x"
            )
        bulk, single = statistics.median(samples["bulk by ids"]), statistics.median(samples["one item's PATCH"])
        print(
            f"{len(ids)} rules: one bulk request {bulk / 1000:.2f} s; one PATCH per rule would take "
            f"{single * len(ids) / 1000:.1f} s ({single * len(ids) / bulk:.0f}x), without the network"
        )
        print(f"({args.requests} requests per case, interleaved; {StatusChange.objects.count()} history rows written)")


if __name__ == "__main__":
    main()
