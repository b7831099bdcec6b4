#!/usr/bin/env python
"""The recorder at scale: results fed as site workers send them, on PostgreSQL.

Builds deployments of about 430 rules each (12 appliances), probes them all once (each item's
first current state), then times rounds in which every deployment is probed again and 1% of
the results change state, the steady state of hourly re-probing. Each deployment's results come
as one batch, as a site worker sends them (up to 500 a message).

In process, the recorder's own call (ProbeRun.record) is timed against a reference timed in the
same rounds: the same results written as one row each, bulk-inserted (what every run wrote
before the flip model). Goals (issue 21): at least 2x the reference's rate; at most 12 rows
inserted and 12 rows updated per 1,000 results (pg_stat_user_tables); where the time goes.

With --recorders N, the same rounds also go the production way: reports on the site's Redis
stream, recorded by `manage.py record` processes in the stream's consumer group, one recorder,
then N, twice over (the best of each counts); N records at least 1.6x one's rate (goal), and
every result is recorded once: the state changes and current states are counted against what
was sent.

    scripts/with-services .venv/bin/python bench/scale.py [--deployments N] [--rounds N] [--recorders N]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import time
from collections import Counter, defaultdict

from harness import against, bench_database

# isort: split
import redis
from checklist_api import document
from django.conf import settings
from django.db import connection
from django.utils import timezone

from ports.deployments import save_deployment
from ports.models import ChecklistItem
from probes.models import LatestProbe, ProbeBatch, ProbeFlip, ProbeRun
from probes.reports import GROUP, Kind, encode, report_stream
from tests.probe_worker import Recorder

APPLIANCES = 12  # about 430 rules a deployment: the issue speaks of 300
BATCH = 500  # results a site worker sends at most in one report


class Writes:
    """Rows inserted and updated, by table, from PostgreSQL's statistics (pg_stat_user_tables)."""

    def __init__(self) -> None:
        self.before = self.read()

    @staticmethod
    def read() -> dict[str, tuple[int, int]]:
        with connection.cursor() as cursor:
            cursor.execute("select pg_stat_force_next_flush()")
        time.sleep(0.6)  # the statistics' flush
        with connection.cursor() as cursor:
            cursor.execute("select pg_stat_clear_snapshot()")
            cursor.execute("select relname, n_tup_ins, n_tup_upd from pg_stat_user_tables")
            return {table: (inserted, updated) for table, inserted, updated in cursor.fetchall()}

    def since(self) -> dict[str, tuple[int, int]]:
        """Rows inserted and updated per table since this was made (tables with none left out)."""
        now = self.read()
        delta = {
            table: (inserted - self.before.get(table, (0, 0))[0], updated - self.before.get(table, (0, 0))[1])
            for table, (inserted, updated) in now.items()
        }
        return {table: counts for table, counts in delta.items() if any(counts)}


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
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds[key] += time.perf_counter() - started
            self.count[key] += 1


class Fleet:
    """The deployments, their items and each item's state as the site workers find it."""

    def __init__(self, deployments: list) -> None:
        self.deployments = deployments
        self.items: dict[int, list[int]] = defaultdict(list)
        for deployment_id, pk in ChecklistItem.objects.order_by("pk").values_list("deployment", "pk"):
            self.items[deployment_id].append(pk)
        self.states = {pk: "open" for ids in self.items.values() for pk in ids}
        self.total = len(self.states)

    def probe(self, change: float) -> tuple[list[tuple[int, dict]], int]:
        """A round: a run per deployment and its results, as reports of up to BATCH results, with
        `change` of the results differing from the item's state; and how many changed."""
        reports, changed = [], 0
        for deployment in self.deployments:
            ids = self.items[deployment.pk]
            run = ProbeRun.objects.create(
                deployment=deployment, timeout=1, deadline=timezone.now(), total=len(ids), pending={"default": ids}
            )
            for item_id in ids:
                if random.random() < change:
                    self.states[item_id] = "filtered" if self.states[item_id] == "open" else "open"
                    changed += 1
            for start in range(0, len(ids), BATCH):
                # JSON keys, as they arrive
                outcomes = {str(i): outcome(self.states[i]) for i in ids[start : start + BATCH]}
                reports.append((run.pk, outcomes))
        return reports, changed


def outcome(state: str) -> dict:
    return {
        "state": state,
        "summary": "a service answered" if state == "open" else "no answer within 1 s",
        "latency_ms": 0.4 if state == "open" else None,
        "address": "127.2.0.1",
        "evidence": {"rtt_ms": 0.4} if state == "open" else {},
    }


def reference(rows: int) -> float:
    """The same results as one row each, bulk-inserted: what every run wrote before."""
    with connection.cursor() as cursor:
        cursor.execute(
            "create temporary table if not exists one_row_per_result (run_id bigint, item_id bigint,"
            " site varchar(50), state varchar(12), summary text, latency_ms double precision, address varchar(64),"
            " worker varchar(200), evidence jsonb, checked_at timestamptz, previous_state varchar(12),"
            " is_latest boolean)"
        )
        now = timezone.now()
        result = ("default", "open", "a service answered", 0.4, "127.2.0.1", "w", '{"rtt_ms": 0.4}', now, "open", True)
        values = [(1, n, *result) for n in range(rows)]
        started = time.perf_counter()
        for start in range(0, rows, BATCH):
            cursor.executemany(
                "insert into one_row_per_result values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                values[start : start + BATCH],
            )
        return time.perf_counter() - started


def in_process(fleet: Fleet, rounds: int, change: float) -> None:
    """Rounds recorded by ProbeRun.record in this process, each followed by the reference's
    insert of as many rows, so that any drift of the machine weighs on both alike."""
    writes, times = Writes(), StatementTimes()
    flips_before, batches_before = ProbeFlip.objects.count(), ProbeBatch.objects.count()
    results = runs = 0
    took = ref = 0.0
    upsert = LatestProbe.upsert

    def timed_upsert(rows: list[dict]) -> None:  # it writes through psycopg2's execute_values
        began = time.perf_counter()
        upsert(rows)
        times.seconds["INSERT probes_latestprobe (upsert)"] += time.perf_counter() - began
        times.count["INSERT probes_latestprobe (upsert)"] += 1

    LatestProbe.upsert = timed_upsert
    try:
        for _ in range(rounds):
            reports, _ = fleet.probe(change)
            runs += len(fleet.deployments)
            # Only the recorder's statements are timed: not the run rows made above.
            with connection.execute_wrapper(times):
                for run_id, outcomes in reports:
                    began = time.perf_counter()
                    ProbeRun.record(run_id, "bench@site:default", outcomes)
                    took += time.perf_counter() - began
                    results += len(outcomes)
            ref += reference(sum(len(outcomes) for _, outcomes in reports))
    finally:
        LatestProbe.upsert = upsert
    written = writes.since()
    written.pop("one_row_per_result", None)  # the reference's own rows
    inserted = sum(counts[0] for counts in written.values())
    updated = sum(counts[1] for counts in written.values())
    per = 1000 / results

    rate, ref_rate = results / took, results / ref
    print(f"\nin process, steady state, {change:.0%} of results changing, {rounds} rounds:")
    print(f"  {results:,} results recorded in {took:.2f} s: {rate:,.0f} results/s")
    print(f"  reference, one row per result bulk-inserted, in the same rounds: {ref_rate:,.0f} rows/s")
    print(f"  recorder / reference: {rate / ref_rate:.2f}x {against('>= 2x', rate >= 2 * ref_rate)}")
    by_recorder = inserted - runs
    print(f"  rows inserted per 1,000 results: {inserted * per:.1f} with the run rows ProbeRun.start makes,")
    print(f"    {by_recorder * per:.1f} by the recorder {against('<= 12', by_recorder * per <= 12)}")
    print(f"  rows updated per 1,000 results: {updated * per:.1f} {against('<= 12', updated * per <= 12)}")
    print("  by table (inserted, updated per 1,000 results):")
    for table, (ins, upd) in sorted(written.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {table:<28} {ins * per:6.1f} {upd * per:6.1f}")
    flips = ProbeFlip.objects.count() - flips_before
    batches = ProbeBatch.objects.count() - batches_before
    print(f"    of which state changes (ProbeFlip) {flips * per:.1f}, raw results (ProbeBatch) {batches * per:.1f}")
    database = sum(times.seconds.values())
    print(f"  of the recorder's time, statements: {database:.2f} s ({database / took:.0%}); the rest is Python")
    print("  where the time goes (first bottleneck first):")
    for key, seconds in sorted(times.seconds.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    {seconds:6.2f} s  {times.count[key]:6d} x  {key}")


def through_recorders(fleet: Fleet, count: int, rounds: int, change: float) -> float:
    """Rounds sent on the site's report stream and recorded by `count` recorder processes (the
    stream's consumer group, as compose scales them); the results per second, from the first
    report sent to the last run closed. Checks that each result was recorded once."""
    client, stream = redis.Redis.from_url(settings.REDIS_URL), report_stream("default")
    with contextlib.suppress(redis.ResponseError):  # there already
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    recorders = [Recorder(f"scale-{n}") for n in range(count)]
    try:
        deadline = time.monotonic() + 60
        while not all("recording" in recorder.tail() for recorder in recorders):
            assert time.monotonic() < deadline, [recorder.tail() for recorder in recorders]
            time.sleep(0.1)
        time.sleep(1)  # each has found the stream and waits on it
        flips_before, batches_before = ProbeFlip.objects.count(), ProbeBatch.objects.count()
        results = changed = sent = 0
        took = 0.0
        for _ in range(rounds):
            reports, round_changed = fleet.probe(change)
            # Encoded before the clock starts: this process's work is not the recorders'.
            entries = [
                encode(Kind.RESULTS, {"run": run_id, "worker": "bench@default", "results": outcomes})
                for run_id, outcomes in reports
            ]
            began = time.perf_counter()
            with client.pipeline(transaction=False) as pipe:
                for fields in entries:
                    pipe.xadd(stream, fields)
                pipe.execute()
            # A report leaves the stream once it is written (StreamChannel.done): a Redis read
            # while waiting, not a query of the database the recorders write.
            while client.xlen(stream):
                time.sleep(0.005)
            took += time.perf_counter() - began
            assert not ProbeRun.objects.filter(pk__in=[run_id for run_id, _ in reports], finished__isnull=True).exists()
            results += sum(len(outcomes) for _, outcomes in reports)
            changed, sent = changed + round_changed, sent + len(reports)
    finally:
        for recorder in recorders:
            recorder.stop()
    flips = ProbeFlip.objects.count() - flips_before
    batches = ProbeBatch.objects.count() - batches_before
    states = Counter(fleet.states[item] == state for item, state in LatestProbe.objects.values_list("item_id", "state"))
    whole = flips == changed and batches == sent and states[True] == fleet.total
    print(
        f"  {count} recorder{'s' if count > 1 else ''}: {results:,} results in {took:.2f} s, "
        f"{results / took:,.0f} results/s; {sent} reports sent, {batches} recorded; {changed} changes sent, "
        f"{flips} flips; {states[True]:,} of {fleet.total:,} current states as sent "
        f"({'nothing lost or doubled' if whole else 'LOST OR DOUBLED'})"
    )
    assert whole, "a result was lost or recorded twice"
    return results / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--recorders", type=int, default=0, help="also through 1 and N recorder processes")
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
        fleet = Fleet(deployments)
        print(f"{len(deployments)} deployments, {fleet.total} rules ({fleet.total / len(deployments):.0f} each)")

        first = time.perf_counter()
        for run_id, outcomes in fleet.probe(change=0)[0]:
            ProbeRun.record(run_id, "bench@site:default", outcomes)
        first = time.perf_counter() - first
        print(f"first probe of every rule (current states created): {fleet.total / first:,.0f} results/s")
        with connection.cursor() as cursor:  # as autovacuum has them in a database in use
            cursor.execute("analyze")

        in_process(fleet, options.rounds, options.change)

        if options.recorders:
            assert settings.REDIS_URL, "run under scripts/with-services (Redis)"
            print(f"\nthrough the site's report stream, {options.change:.0%} changing, {options.rounds} rounds each:")
            connection.close()  # the recorders write; this process sends and counts
            # One recorder, then N, twice over: the best of each, so that a moment of other work
            # on the machine weighs on neither alone.
            rates: dict[int, list[float]] = defaultdict(list)
            for count in (1, options.recorders, 1, options.recorders):
                rates[count].append(through_recorders(fleet, count, options.rounds, options.change))
            one, several = max(rates[1]), max(rates[options.recorders])
            print(
                f"  {options.recorders} recorders / 1 (best of each): {several / one:.2f}x "
                f"{against('>= 1.6x', several >= 1.6 * one)} (2 CPUs shared by the recorders, PostgreSQL, "
                "Redis and anything else running)"
            )


if __name__ == "__main__":
    main()
