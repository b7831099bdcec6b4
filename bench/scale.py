#!/usr/bin/env python
"""The recorder at scale: results fed as site workers send them, on PostgreSQL.

Builds deployments of about 430 rules each (12 appliances), probes them all once (each item's
first current state), then times rounds in which every deployment is probed again and 1% of
the results change state, the steady state of hourly re-probing. Each deployment's results come
as one batch, as a site worker sends them (up to 500 a message); the recorder
(ProbeRun.record, the body of the recorder task) writes them.

Prints results per second (goal: >= 2,000), rows inserted per 1,000 results (goal: <= 15),
where the recorder's time goes by statement (the first bottleneck), and the same results
written as one row each (the model before the flip model) as a reference of the same run.

    scripts/with-services .venv/bin/python bench/scale.py [--deployments N] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import time
from collections import defaultdict

from harness import bench_database

# isort: split
from checklist_api import document
from django.db import connection
from django.utils import timezone

from ports.deployments import save_deployment
from ports.models import ChecklistItem
from probes.models import LatestProbe, ProbeBatch, ProbeFlip, ProbeRun

# Seconds spent in the recorder itself (ProbeRun.record), apart from making up the results.
RECORDING = [0.0]
APPLIANCES = 12  # about 430 rules a deployment: the issue speaks of 300


def inserted_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("select pg_stat_force_next_flush()")
        cursor.execute("select pg_stat_clear_snapshot()")
    time.sleep(0.6)  # the statistics collector's flush
    with connection.cursor() as cursor:
        cursor.execute("select pg_stat_clear_snapshot()")
        cursor.execute("select coalesce(sum(n_tup_ins), 0) from pg_stat_user_tables")
        return int(cursor.fetchone()[0])


class StatementTimes:
    """Time spent per kind of statement (verb and table), as a database wrapper."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def __call__(self, execute, sql, params, many, context):
        verb = sql.split(None, 1)[0].upper()
        table = re.search(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"', sql)
        key = f"{verb} {table.group(1) if table else ''}".strip()
        if "FOR UPDATE" in sql or "FOR NO KEY UPDATE" in sql:
            key += " (lock)"
        if "ON CONFLICT" in sql:
            key += " (upsert)"
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds[key] += time.perf_counter() - started
            self.count[key] += 1


def one_round(
    deployments: list, items: dict[int, list[int]], states: dict[int, str], change: float, times: object = None
) -> int:
    """Probe every deployment once; `change` of the results differ from the item's state."""
    results = 0
    for deployment in deployments:
        ids = items[deployment.pk]
        run = ProbeRun.objects.create(
            deployment=deployment,
            timeout=1,
            deadline=timezone.now(),
            total=len(ids),
            pending={"default": ids},
        )
        outcomes = {}
        for item_id in ids:
            if random.random() < change:
                states[item_id] = "filtered" if states[item_id] == "open" else "open"
            state = states[item_id]
            outcomes[item_id] = {
                "state": state,
                "summary": "a service answered" if state == "open" else "no answer within 1 s",
                "latency_ms": 0.4 if state == "open" else None,
                "address": "127.2.0.1",
                "evidence": {"rtt_ms": 0.4} if state == "open" else {},
            }
        for start in range(0, len(ids), 500):  # as a site worker sends them
            chunk = {str(i): outcomes[i] for i in ids[start : start + 500]}  # JSON keys, as they arrive
            # Only the recorder's statements are timed: not the run rows made above.
            with connection.execute_wrapper(times) if times else contextlib.nullcontext():
                began = time.perf_counter()
                ProbeRun.record(run.pk, "bench@site:default", chunk)
                RECORDING[0] += time.perf_counter() - began
        results += len(ids)
    return results


def reference(rows: int) -> float:
    """The same results as one row each, bulk-inserted: what every run wrote before."""
    with connection.cursor() as cursor:
        cursor.execute(
            "create temporary table one_row_per_result (run_id bigint, item_id bigint, site varchar(50),"
            " state varchar(12), summary text, latency_ms double precision, address varchar(64),"
            " worker varchar(200), evidence jsonb, checked_at timestamptz, previous_state varchar(12),"
            " is_latest boolean)"
        )
        values = [
            (
                1,
                n,
                "default",
                "open",
                "a service answered",
                0.4,
                "127.2.0.1",
                "w",
                '{"rtt_ms": 0.4}',
                timezone.now(),
                "open",
                True,
            )
            for n in range(rows)
        ]
        started = time.perf_counter()
        for start in range(0, rows, 500):
            cursor.executemany(
                "insert into one_row_per_result values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                values[start : start + 500],
            )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--change", type=float, default=0.01)
    options = parser.parse_args()
    assert connection.vendor == "postgresql", "run under scripts/with-services (PostgreSQL)"
    random.seed(11)
    import checklist_api

    checklist_api.APPLIANCES = APPLIANCES
    with bench_database():
        deployments = [
            save_deployment({**document(), "name": f"Scale {n}", "team": "Bench"}).deployment
            for n in range(options.deployments)
        ]
        items = defaultdict(list)
        for deployment_id, pk in ChecklistItem.objects.order_by("pk").values_list("deployment", "pk"):
            items[deployment_id].append(pk)
        states = {pk: "open" for ids in items.values() for pk in ids}
        total = sum(len(ids) for ids in items.values())
        print(f"{len(deployments)} deployments, {total} rules ({total / len(deployments):.0f} each)")

        first = time.perf_counter()
        one_round(deployments, items, states, change=0)
        first = time.perf_counter() - first
        print(f"first probe of every rule (current states created): {total / first:,.0f} results/s")

        before, flips_before, batches_before = inserted_rows(), ProbeFlip.objects.count(), ProbeBatch.objects.count()
        times = StatementTimes()
        results = 0
        RECORDING[0] = 0.0
        upsert = LatestProbe.upsert

        def timed_upsert(rows: list[dict]) -> None:  # it writes through psycopg2's execute_values
            began = time.perf_counter()
            upsert(rows)
            times.seconds["INSERT probes_latestprobe (upsert)"] += time.perf_counter() - began
            times.count["INSERT probes_latestprobe (upsert)"] += 1

        LatestProbe.upsert = timed_upsert
        for _ in range(options.rounds):
            results += one_round(deployments, items, states, change=options.change, times=times)
        LatestProbe.upsert = upsert
        took = RECORDING[0]
        inserted = inserted_rows() - before
        runs = len(deployments) * options.rounds

        print(f"\nsteady state, {options.change:.0%} of results changing, {options.rounds} rounds:")
        print(f"  {results:,} results recorded in {took:.2f} s: {results / took:,.0f} results/s (goal >= 2,000)")
        print(f"  rows inserted: {inserted:,}, {inserted / results * 1000:.1f} per 1,000 results (goal <= 15)")
        print(f"    of which run rows (made when a run starts): {runs / results * 1000:.1f} per 1,000 results")
        flips = ProbeFlip.objects.count() - flips_before
        batches = ProbeBatch.objects.count() - batches_before
        print(f"    state changes (ProbeFlip): {flips / results * 1000:.1f} per 1,000 results")
        print(f"    raw results kept (ProbeBatch, one per message): {batches / results * 1000:.1f} per 1,000 results")
        print(f"    by the recorder in all: {(inserted - runs) / results * 1000:.1f} per 1,000 results")
        database = sum(times.seconds.values())
        print(f"  of the recorder's time, statements: {database:.2f} s ({database / took:.0%}); the rest is Python")
        print("  where the time goes (first bottleneck first):")
        for key, seconds in sorted(times.seconds.items(), key=lambda kv: -kv[1])[:6]:
            print(f"    {seconds:6.2f} s  {times.count[key]:6d} x  {key}")

        ref = reference(results)
        print(f"\nreference, one row per result bulk-inserted: {results / ref:,.0f} rows/s")
        print(f"  the recorder's whole path takes {took / ref:.1f}x the bare insert of one row per result,")
        print(f"  and inserts {inserted / results:.3f} rows per result instead of 1")


if __name__ == "__main__":
    main()
