"""A read right after a change renders again only the rows it changed (ports.rows, issue 21 item 1),
and reads exactly as the checklist rendered whole: the API's JSON and CSV, the page's rows."""

from __future__ import annotations

import re

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ports.choices import ItemStatus
from ports.models import ChecklistCounts, Deployment
from ports.rows import RENDERED_ROWS
from probes.choices import ProbeState
from probes.models import ProbeRun

from .conftest import recorded_run, signed_in

# Each change commits, as a request's does: the checklist's revision moves on commit.
pytestmark = pytest.mark.django_db(transaction=True)
# A filter that selects every rule: the view renders a filtered checklist whole, without kept rows.
EVERY_STATUS = "&".join(f"status={status}" for status in ItemStatus.values)


def read(api: object, deployment: Deployment, fmt: str, query: str = "") -> tuple[bytes, str]:
    response = api.get(f"/api/deployments/{deployment.pk}/checklist/?format={fmt}&{query}")
    assert response.status_code == 200
    return response.content, response["ETag"]


def forget_renderings() -> None:
    RENDERED_ROWS.clear()
    caches["checklists"].clear()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_read_after_changes_is_the_checklist_rendered_whole(deployment, api, fmt, monkeypatch):
    first, second, third = deployment.checklist.order_by("position")[:3]
    before, etag = read(api, deployment, fmt)
    assert read(api, deployment, fmt, EVERY_STATUS)[0] == before

    # A status change, a probe run, then a run that changes one of its rules: each read between
    # them takes the rows kept of the others.
    changed = api.patch(f"/api/checklist-items/{second.pk}/", {"status": "requested"}, format="json")
    assert changed.status_code == 200
    after_status, etag_after = read(api, deployment, fmt)
    assert after_status != before and etag_after != etag
    recorded_run(deployment, [(first, "open"), (third, "open")])
    after_run = read(api, deployment, fmt)[0]
    recorded_run(deployment, [(first, "open"), (third, "refused")])
    after_flip = read(api, deployment, fmt)[0]
    # A sweep that finds the same: no item written, but each one's last check moves.
    monkeypatch.setattr(ProbeRun, "SMALL", 0)
    recorded_run(deployment, [(first, "open"), (third, "refused")])
    after_sweep = read(api, deployment, fmt)[0]
    assert len({before, after_status, after_run, after_flip, after_sweep}) == 5

    assert read(api, deployment, fmt, EVERY_STATUS)[0] == after_sweep
    forget_renderings()
    assert read(api, deployment, fmt)[0] == after_sweep
    if fmt == "json":
        items = {item["id"]: item for item in api.get(f"/api/deployments/{deployment.pk}/checklist/").json()["items"]}
        assert items[second.pk]["status"] == "requested"
        assert items[third.pk]["probe"]["state"] == "refused" and items[third.pk]["probe"]["regression"]


def test_the_rows_kept_are_those_of_the_checklist_generated_last(deployment, api):
    """Everything of a row but its status and probe changes only when the checklist is generated
    anew: a renamed host relabels its rows at once."""
    before = read(api, deployment, "json")[0]
    document = api.get(f"/api/deployments/{deployment.pk}/").json()
    host = document["hosts"][0]
    host["name"] = "renamed-host"
    assert api.put(f"/api/deployments/{deployment.pk}/", document, format="json").status_code == 200
    after = read(api, deployment, "json")[0]
    assert b"renamed-host" in after and b"renamed-host" not in before
    forget_renderings()
    assert read(api, deployment, "json")[0] == after


def test_the_page_after_a_change_shows_the_row_as_the_rows_endpoint_renders_it(deployment, client, user, api):
    client.force_login(user)
    item = deployment.checklist.order_by("number", "pk").first()
    assert client.get(f"/deployments/{deployment.pk}/").status_code == 200
    api.patch(f"/api/checklist-items/{item.pk}/", {"status": "opened"}, format="json")
    recorded_run(deployment, [(item, "refused")])
    page = client.get(f"/deployments/{deployment.pk}/").content.decode()
    row = client.get(f"/deployments/{deployment.pk}/rows/", {"items": item.pk}).content.decode()
    assert row in page and 'data-status="opened"' in row and "Opened, but the probe fails" in row


def test_a_read_after_one_change_reads_one_item(deployment, api):
    """The kept rows are read by their versions, a few columns an item; the one item changed is
    then read whole: one item's row of the items' table, whatever the checklist's size."""
    read(api, deployment, "json")
    item = deployment.checklist.order_by("position").last()
    api.patch(f"/api/checklist-items/{item.pk}/", {"status": "requested"}, format="json")
    with CaptureQueriesContext(connection) as queries:
        read(api, deployment, "json")
    whole_items = [
        q["sql"]
        for q in queries
        if q["sql"].startswith('SELECT "ports_checklistitem"."id", "ports_checklistitem"."requirement_id"')
    ]
    assert len(whole_items) == 1 and f"IN ({item.pk})" in whole_items[0]


def changed_versions(queries: CaptureQueriesContext) -> list[tuple]:
    """What the read's query of the versions changed since its last read gives (run again: nothing
    changed since)."""
    [statement] = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"changed_in" >' in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall()


def test_a_read_after_changes_reads_the_versions_of_those_changed_alone(deployment, api):
    """Right after a change, the versions of the checklist's rows come from those read before, with
    the rows changed since read by their index: not the thousands of the checklist."""
    first, second, third, fourth = deployment.checklist.order_by("position")[:4]
    read(api, deployment, "json")
    api.patch(f"/api/checklist-items/{first.pk}/", {"status": "requested"}, format="json")
    bulk = {"status": "opened", "items": [second.pk, third.pk]}
    assert api.post(f"/api/deployments/{deployment.pk}/checklist/status/", bulk, format="json").status_code == 200
    recorded_run(deployment, [(fourth, "refused")])
    with CaptureQueriesContext(connection) as queries:
        after, _ = read(api, deployment, "json")
    assert sorted(row[0] for row in changed_versions(queries)) == [first.pk, second.pk, third.pk, fourth.pk]
    forget_renderings()
    assert read(api, deployment, "json")[0] == after


def test_every_writer_of_statuses_and_states_is_read_after_it(deployment, api, user):
    """Each way a status or a probe state changes marks its items changed in the revision it
    writes, and the next read shows them: a PATCH, a bulk change, verify-open, the recorder (a new
    state, and the same state checked again); the counts of the page's summary too."""
    client = signed_in(user)
    first, second, third = deployment.checklist.order_by("position")[:3]
    for fmt in ("json", "csv"):
        read(api, deployment, fmt)
    client.get(f"/deployments/{deployment.pk}/")

    def reads_as_whole() -> None:
        shown = {fmt: read(api, deployment, fmt)[0] for fmt in ("json", "csv")}
        summary = client.get(f"/deployments/{deployment.pk}/panel/").content
        forget_renderings()
        assert {fmt: read(api, deployment, fmt)[0] for fmt in ("json", "csv")} == shown
        assert client.get(f"/deployments/{deployment.pk}/panel/").content == summary

    api.patch(f"/api/checklist-items/{first.pk}/", {"status": "waived", "comment": "CHG-7"}, format="json")
    reads_as_whole()
    bulk = {"status": "requested", "items": [second.pk]}
    assert api.post(f"/api/deployments/{deployment.pk}/checklist/status/", bulk, format="json").json()["changed"] == 1
    reads_as_whole()
    recorded_run(deployment, [(second, "open"), (third, "refused")])
    reads_as_whole()
    assert api.post(f"/api/deployments/{deployment.pk}/checklist/verify-open/").json() == {"verified": 1}
    reads_as_whole()
    recorded_run(deployment, [(third, "refused")])  # the same again: its last check moves alone
    reads_as_whole()
    items = {item["id"]: item for item in api.get(f"/api/deployments/{deployment.pk}/checklist/").json()["items"]}
    assert items[first.pk]["status"] == "waived" and items[second.pk]["status"] == "verified"
    assert items[third.pk]["probe"]["state"] == "refused"
    panel = client.get(f"/deployments/{deployment.pk}/panel/").content.decode()
    counts = ChecklistCounts.of([Deployment.objects.get(pk=deployment.pk)])[deployment.pk]
    assert counts.statuses[ItemStatus.WAIVED] == 1 and counts.statuses[ItemStatus.VERIFIED] == 1
    shown = dict(re.findall(r'<span class="label">([^<]+)</span>.*?<span class="n">(\d+)</span>', panel))
    assert {ItemStatus(s).label: str(n) for s, n in counts.statuses.items()}.items() <= shown.items()
    states = {ProbeState(state).label: str(n) for state, n in counts.states.items() if state}
    assert states == {"Open": "1", "Refused": "1"} and states.items() <= shown.items()


def test_the_pages_by_rule_number_are_the_checklist_in_rule_number_order(deployment, client, user, api):
    """The page's default order (rule number, then id) comes from the versions its summary read, not a
    query of its own: every page, and a page past the last, shows the rules the database's order does,
    before and after a change."""
    client.force_login(user)
    first, second, third = deployment.checklist.order_by("position")[:3]
    deployment.checklist.filter(pk__in=[first.pk, third.pk]).update(number=7)  # a tie, after rule 6
    in_order = list(deployment.checklist.order_by("number", "pk").values_list("pk", flat=True))
    pages = [in_order[start : start + 25] for start in range(0, len(in_order), 25)]
    assert len(pages) > 1

    def shown(page: int) -> list[int]:
        html = client.get(f"/deployments/{deployment.pk}/?size=25&page={page}").content.decode()
        return [int(pk) for pk in re.findall(r'<tr id="item-\d+" data-item="(\d+)"', html)]

    assert [shown(number) for number in range(1, len(pages) + 1)] == pages
    assert shown(99) == pages[-1]
    api.patch(f"/api/checklist-items/{second.pk}/", {"status": "requested"}, format="json")
    assert shown(1) == pages[0] and shown(len(pages)) == pages[-1]
