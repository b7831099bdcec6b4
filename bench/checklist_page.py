#!/usr/bin/env python
"""Server render time of the checklist page (its first page) for a deployment of 40 appliances.

Beside it, in the same run, a trivial page (the login form) as the reference. The pages
go through Django's whole request handling in process, logged in with a session: no
network. A test asserts that the checklist page's query count does not grow with its size.

    make bench      # or: python bench/checklist_page.py [--requests N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import bench_database

# isort: split
from checklist_api import document
from django.db import connection
from django.db.models import F
from django.test import Client

from ports.deployments import save_deployment
from ports.models import Deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (default 20)")
    args = parser.parse_args()
    with bench_database() as user:
        deployment = save_deployment({**document(), "team": "Bench"}).deployment
        browser = Client()
        browser.force_login(user)
        url = f"/deployments/{deployment.pk}/"
        # The page is kept per checklist revision; "after a change" bumps the revision before each
        # request, as a status change or a probe result does, so its rows and counts are made anew.
        pages = {"trivial (login form)": "/accounts/login/", "checklist page": url, "after a change": url}
        samples: dict[str, list[float]] = {name: [] for name in pages}
        for round_ in range(args.requests + 2):
            for name, url in pages.items():
                client = Client() if name.startswith("trivial") else browser
                if name == "after a change":
                    Deployment.objects.filter(pk=deployment.pk).update(checklist_revision=F("checklist_revision") + 1)
                started = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code)
                if round_ >= 2:
                    samples[name].append(elapsed)
        reference = statistics.median(samples["trivial (login form)"])
        print(f"database: {connection.vendor}; 40 appliances, {deployment.checklist.count()} checklist items")
        print(f"{'page':<22} {'median ms':>10} {'max ms':>9} {'vs trivial':>11}")
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"{name:<22} {median:>10.1f} {max(values):>9.1f} {median / reference:>10.1f}x")


if __name__ == "__main__":
    main()
