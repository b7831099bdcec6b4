"""The recorder writes what changed (issue 21, item 2): a result that says what its item's current
state says writes no row of its own, its run keeps that it checked the item and when, and every
reader shows the item's last check through ChecklistItemQuerySet.with_latest_probe()."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.db import connection

from ports.models import ChecklistItem
from probes.models import LatestProbe, ProbeFlip, ProbeRun, with_ranges

from .conftest import recorded_run


@pytest.fixture(autouse=True)
def sweeps(monkeypatch) -> None:
    """The runs here stand for sweeps of a deployment, whatever their size: none is a small run,
    which writes its checks on the items (test_a_small_run_writes_its_checks_on_the_items)."""
    monkeypatch.setattr(ProbeRun, "SMALL", 0)


def row_version(item: ChecklistItem) -> str:
    """PostgreSQL's xmin of the item's current state: a new row version gets a new one."""
    with connection.cursor() as cursor:
        cursor.execute("select xmin::text from probes_latestprobe where item_id = %s", [item.pk])
        return cursor.fetchone()[0]


def iso(moment: datetime.datetime) -> str:
    """As the pages write a moment (portal_tags.when): UTC, to the second."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def latest(item: ChecklistItem) -> LatestProbe:
    return ChecklistItem.objects.with_latest_probe().get(pk=item.pk).latest_probe


def test_an_unchanged_result_writes_no_row_and_its_run_is_its_last_check(deployment, api, client, user):
    same, flipped, left_out = deployment.checklist.order_by("pk")[:3]
    first = recorded_run(deployment, [(same, "open"), (flipped, "open"), (left_out, "open")])
    version = row_version(same)
    second = recorded_run(deployment, [(same, "open"), (flipped, "refused")])
    assert first.checked < second.checked

    # Probed twice in the same state: no new row version, the second run's time, the first's "since".
    assert row_version(same) == version
    kept = latest(same)
    assert (kept.state, kept.run_id, kept.since) == ("open", first.pk, first.checked)
    assert kept.checked_at == second.checked and not kept.changed
    # A change: its state written with a flip, a new "since", checked then.
    changed = latest(flipped)
    assert (changed.state, changed.previous_state, changed.run_id) == ("refused", "open", second.pk)
    assert changed.since == changed.checked_at == second.checked and changed.changed and changed.regression
    assert list(ProbeFlip.objects.filter(item=flipped).values_list("previous_state", "state")) == [
        ("open", "refused"),
        ("", "open"),
    ]
    assert ProbeFlip.objects.filter(item=same).count() == 1
    # Not in the second run: still the first's time.
    assert latest(left_out).checked_at == first.checked

    # Every reader reads it so: the API's checklist, the checklist page's rows, the CSV.
    probes = {
        item["id"]: item["probe"] for item in api.get(f"/api/deployments/{deployment.pk}/checklist/").json()["items"]
    }
    assert probes[same.pk]["checked_at"] == second.checked.isoformat().replace("+00:00", "Z")
    assert probes[same.pk]["since"] == first.checked.isoformat().replace("+00:00", "Z")
    assert probes[left_out.pk]["checked_at"] == first.checked.isoformat().replace("+00:00", "Z")
    one = api.get(f"/api/checklist-items/{same.pk}/").json()["probe"]
    assert one["checked_at"] == probes[same.pk]["checked_at"] and one["changed"] is False
    client.force_login(user)
    row = client.get(f"/deployments/{deployment.pk}/rows/", {"items": same.pk}).content.decode()
    assert f'datetime="{iso(second.checked)}"' in row, row
    body = b"".join(api.get(f"/api/deployments/{deployment.pk}/checklist.csv").streaming_content).decode()
    rows = [line for line in csv.DictReader(io.StringIO(body)) if str(same.pk) in line["items"].split(", ")]
    assert rows and rows[0]["probe_checked_at"] >= second.checked.isoformat()


def test_a_run_holds_what_it_probed_as_ranges_and_not_what_it_could_not(deployment):
    items = list(deployment.checklist.order_by("pk"))
    run = recorded_run(deployment, [(item, "open") for item in items])
    assert run.probed == with_ranges([], (item.pk for item in items)) and len(run.probed) <= 2
    recorded_run(deployment, [(items[0], "not_probed")])
    assert latest(items[0]).checked_at == run.checked  # not probed: not checked
    assert with_ranges([[1, 3], [7, 7]], [4, 5, 9]) == [[1, 5], [7, 7], [9, 9]]


def test_a_new_summary_is_written_without_a_flip(deployment):
    item = deployment.checklist.first()
    first = recorded_run(deployment, [(item, "refused")], summary="{state}: nothing listens")
    second = recorded_run(deployment, [(item, "refused")], summary="{state}: a firewall rejects")
    probe = latest(item)
    assert (probe.summary, probe.run_id, probe.since) == ("refused: a firewall rejects", second.pk, first.checked)
    assert probe.checked_at == second.checked and not probe.changed
    assert ProbeFlip.objects.filter(item=item).count() == 1


def test_a_later_runs_finding_stands_whatever_order_the_runs_are_recorded_in(deployment):
    item = deployment.checklist.first()
    recorded_run(deployment, [(item, "open")])
    fields = {"timeout": 1, "deadline": "2100-01-01T00:00Z", "total": 1, "pending": {"default": [item.pk]}}
    older = ProbeRun.objects.create(deployment=deployment, **fields)
    newer = ProbeRun.objects.create(deployment=deployment, **fields)
    ProbeRun.record(newer.pk, "w@default", {item.pk: {"state": "open", "summary": "open in test"}})
    ProbeRun.record(older.pk, "w@default", {item.pk: {"state": "filtered", "summary": "filtered in test"}})
    newer.refresh_from_db()
    probe = latest(item)
    assert (probe.state, probe.checked_at) == ("open", newer.checked)
    assert ProbeFlip.objects.filter(item=item).count() == 1


def test_a_small_run_writes_its_checks_on_the_items(deployment, monkeypatch):
    """A rule probed again on its own writes its check on the item, as a change (no flip): the
    deployment's runs stay those of its sweeps, which every read of its checklist looks in."""
    item, other = deployment.checklist.order_by("pk")[:2]
    sweep = recorded_run(deployment, [(item, "open"), (other, "open")])
    monkeypatch.setattr(ProbeRun, "SMALL", 1)
    version = row_version(item)
    again = recorded_run(deployment, [(item, "open")])
    assert again.checked is None and again.probed == []
    assert row_version(item) != version
    probe = latest(item)
    assert (probe.state, probe.run_id, probe.since) == ("open", again.pk, sweep.checked)
    assert probe.checked_at > sweep.checked and not probe.changed
    assert latest(other).checked_at == sweep.checked
    assert ProbeFlip.objects.filter(item=item).count() == 1
