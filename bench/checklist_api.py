#!/usr/bin/env python
"""Latency of the checklist API for a deployment of 40 appliances.

Builds the deployment in a throwaway test database (PostgreSQL when DATABASE_URL names
one, as under `make bench`), then times the checklist as JSON and as CSV against a
trivial authenticated endpoint (/api/me/) measured in the same run, requests
interleaved so that any drift of the machine weighs on all alike. A rendering is kept
until the checklist changes; "after a status change" is the first request after one rule's
status changed through the API, "after a probe batch" the first after the recorder took a
batch whose one result changed its rule's state: each renders that rule's row anew
(ports.rows). Requests go through Django's full request handling in process: no network.
`make bench` runs it on PostgreSQL and on SQLite (no DATABASE_URL).

    make bench            # or: python bench/checklist_api.py [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import against, analyzed, bench_database, recorded

# isort: split
from django.db import connection
from django.test import Client

from ports.models import ApiToken

APPLIANCES = 40
# Goals, as ratios to the trivial endpoint: a read right after a change (issue 21), a kept rendering.
AFTER_A_CHANGE = 6
KEPT = 2


def document() -> dict:
    hosts = [
        ("security_manager", "fsm"),
        ("log_server", "log"),
        ("sql_server", "sql"),
        ("dlp_server", "dlp"),
        ("hybrid_service", "hybrid"),
        ("filtering_service", "filtering"),
        ("linking_service", "linking"),
        ("ldap", "ldap"),
        ("dns", "dns1"),
        ("dns", "dns2"),
        ("snmp_trap", "nms"),
    ]
    return {
        "name": "Bench",
        "features": ["dlp", "hybrid", "pem", "smd", "snmp", "web_protection"],
        "appliances": [
            {"hostname": f"esa{n}.bench.test", "c_address": f"127.2.{n}.1", "p1_address": f"127.2.{n}.2"}
            for n in range(APPLIANCES)
        ],
        "hosts": [{"role": role, "name": name, "address": f"127.3.0.{i + 1}"} for i, (role, name) in enumerate(hosts)],
        "peer_networks": [
            {"role": "end_users", "name": "Staff", "network": "127.4.0.0/16"},
            {"role": "mail_senders", "name": "Internet", "network": "any"},
        ],
    }


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per endpoint (default 50)")
    args = parser.parse_args()

    with bench_database() as user:
        client = Client(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user, 'Bench')[1]}")

        started = time.perf_counter()
        created = client.post("/api/deployments/", document(), content_type="application/json")
        build_ms = (time.perf_counter() - started) * 1000
        assert created.status_code == 201, created.content
        deployment = created.json()
        checklist = f"/api/deployments/{deployment['id']}/checklist/"
        ids = [row["id"] for row in client.get(checklist).json()["items"]]
        item, probed = ids[:2]
        recorded(deployment["id"], dict.fromkeys(ids, "open"))  # probed once, as a deployment in use is
        analyzed()
        statuses = iter(["requested", "opened"] * (args.requests + 3) * 2)
        states = iter(["open", "refused"] * (args.requests + 3) * 2)

        def change_a_status() -> None:
            response = client.patch(f"/api/checklist-items/{item}/", {"status": next(statuses)}, "application/json")
            assert response.status_code == 200

        def change_a_probe_state() -> None:
            """A batch of the recorder's with one result, which changes its rule's state."""
            recorded(deployment["id"], {probed: next(states)})

        # (url, what is done untimed before each request, goal): a rendering is kept until the
        # checklist changes, so the first request after a change is timed on its own.
        urls = {
            "trivial /api/me/": ("/api/me/", None, None),
            "JSON after a status change": (checklist, change_a_status, AFTER_A_CHANGE),
            "JSON after a probe batch": (checklist, change_a_probe_state, AFTER_A_CHANGE),
            "checklist JSON": (checklist, None, KEPT),
            "CSV after a status change": (f"{checklist}?format=csv", change_a_status, AFTER_A_CHANGE),
            "CSV after a probe batch": (f"{checklist}?format=csv", change_a_probe_state, AFTER_A_CHANGE),
            "checklist CSV": (f"{checklist}?format=csv", None, KEPT),
        }
        samples: dict[str, list[float]] = {name: [] for name in urls}
        for round_ in range(args.requests + 3):
            for name, (url, prepare, _) in urls.items():
                if prepare:
                    prepare()
                started = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code)
                if round_ >= 3:  # the first rounds warm caches and connections
                    samples[name].append(elapsed)

        print(
            f"database: {connection.vendor}; {APPLIANCES} appliances, "
            f"{deployment['checklist']['total']} checklist items; created via the API in {build_ms:.0f} ms"
        )
        reference = statistics.median(samples["trivial /api/me/"])
        print(f"{'endpoint':<27} {'median ms':>10} {'p95 ms':>8} {'vs trivial':>11}")
        for name, values in samples.items():
            median, goal = statistics.median(values), urls[name][2]
            ratio = median / reference
            verdict = "" if goal is None else against(f"<= {goal}x", ratio <= goal)
            print(f"{name:<27} {median:>10.2f} {percentile(values, 0.95):>8.2f} {ratio:>10.1f}x  {verdict}")
        print(f"({args.requests} requests per endpoint, interleaved)")


if __name__ == "__main__":
    main()
