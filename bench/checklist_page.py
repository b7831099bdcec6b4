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

from harness import against, analyzed, bench_database, recorded

# isort: split
from checklist_api import document
from django.db import connection, transaction
from django.test import Client

from ports.deployments import save_deployment

# Goals, as ratios to the login page: the page right after one change (issue 21), the page kept (5.0x
# before the rows were kept, which it keeps).
AFTER_A_CHANGE = 6
KEPT = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (default 20)")
    args = parser.parse_args()
    with bench_database() as user:
        deployment = save_deployment({**document(), "team": "Bench"}).deployment
        browser = Client()
        browser.force_login(user)
        url = f"/deployments/{deployment.pk}/"
        item, probed = deployment.checklist.order_by("number", "pk")[:2]
        recorded(deployment.pk, dict.fromkeys(deployment.checklist.values_list("pk", flat=True), "open"))
        analyzed()
        statuses = iter(["requested", "opened"] * (args.requests + 2))
        states = iter(["open", "refused"] * (args.requests + 2))

        def change_a_status() -> None:
            item.refresh_from_db()
            assert item.change_status(next(statuses), user)

        def change_a_probe_state() -> None:
            """A batch of the recorder's with one result, which changes its rule's state."""
            recorded(deployment.pk, {probed.pk: next(states)})

        # (what is done untimed before each request, goal): the page is kept per checklist revision,
        # so the first request after a change makes its rows and counts anew; each change is one
        # rule's, as a click on a status or a probe result is.
        pages = {
            "trivial (login form)": (None, None),
            "checklist page": (None, KEPT),
            "after a status change": (change_a_status, AFTER_A_CHANGE),
            "after a probe batch": (change_a_probe_state, AFTER_A_CHANGE),
        }
        samples: dict[str, list[float]] = {name: [] for name in pages}
        for round_ in range(args.requests + 2):
            for name, (prepare, _) in pages.items():
                client = Client() if name.startswith("trivial") else browser
                if prepare:
                    with transaction.atomic():  # committed, as a request's change is
                        prepare()
                started = time.perf_counter()
                response = client.get("/accounts/login/" if name.startswith("trivial") else url)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (name, response.status_code)
                if round_ >= 2:
                    samples[name].append(elapsed)
        reference = statistics.median(samples["trivial (login form)"])
        print(f"database: {connection.vendor}; 40 appliances, {deployment.checklist.count()} checklist items")
        print(f"{'page':<22} {'median ms':>10} {'max ms':>9} {'vs trivial':>11}")
        for name, values in samples.items():
            median, goal = statistics.median(values), pages[name][1]
            verdict = "" if goal is None else against(f"<= {goal}x", median / reference <= goal)
            print(f"{name:<22} {median:>10.1f} {max(values):>9.1f} {median / reference:>10.1f}x  {verdict}")


if __name__ == "__main__":
    main()
