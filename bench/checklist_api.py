#!/usr/bin/env python
"""Latency of the checklist API for a deployment of 40 appliances.

Builds the deployment in a throwaway test database (PostgreSQL when DATABASE_URL names
one, as under `make bench`), then times the checklist as JSON and as CSV against a
trivial authenticated endpoint (/api/me/) measured in the same run, requests
interleaved so that any drift of the machine weighs on all alike. A rendering is kept
until the checklist changes; "JSON after a change" is the first request after a status
change, which renders anew. Requests go through Django's full request handling in
process: no network.

    make bench            # or: python bench/checklist_api.py [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import bench_database

# isort: split
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

APPLIANCES = 40


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
        client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

        started = time.perf_counter()
        created = client.post("/api/deployments/", document(), content_type="application/json")
        build_ms = (time.perf_counter() - started) * 1000
        assert created.status_code == 201, created.content
        deployment = created.json()
        checklist = f"/api/deployments/{deployment['id']}/checklist/"
        item = client.get(checklist).json()["items"][0]["id"]
        statuses = iter(["requested", "opened"] * (args.requests + 3))  # two changes a round

        def change_a_status() -> None:
            response = client.patch(f"/api/checklist-items/{item}/", {"status": next(statuses)}, "application/json")
            assert response.status_code == 200

        # (url, what is done untimed before each request): a rendering is kept until the
        # checklist changes, so the first request after a change is timed on its own.
        urls = {
            "trivial /api/me/": ("/api/me/", None),
            "JSON after a change": (checklist, change_a_status),
            "checklist JSON": (checklist, None),
            "CSV after a change": (f"{checklist}?format=csv", change_a_status),
            "checklist CSV": (f"{checklist}?format=csv", None),
        }
        samples: dict[str, list[float]] = {name: [] for name in urls}
        for round_ in range(args.requests + 3):
            for name, (url, prepare) in urls.items():
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
        print(f"{'endpoint':<20} {'median ms':>10} {'p95 ms':>10} {'median vs trivial':>18}")
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"{name:<20} {median:>10.2f} {percentile(values, 0.95):>10.2f} {median / reference:>17.1f}x")
        print(f"({args.requests} requests per endpoint, interleaved)")


if __name__ == "__main__":
    main()
