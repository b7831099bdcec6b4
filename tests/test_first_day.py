"""An admin's first day, in Chromium: bulk changes in one request that ask before settled rules
change, an export dialog that asks only what the format uses, messages that can be read, and
every width without sideways scrolling, with targets a finger can hit."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import strip_tags

from ports.models import ChecklistItem
from probes.choices import PROBED_STATES, RunStatus
from probes.models import ProbeRun, WorkerHeartbeat

from .conftest import FULL_DEPLOYMENT, create_deployment, recorded_run
from .test_browser import pytestmark  # noqa: F401 (the same marks: Chromium and Redis)
from .test_pages import DESKTOP, PHONE, SCREENS, Visits

# The contrast of an element's text with the background it is painted on (the first opaque one
# up its ancestors), as WCAG 2 computes it.
CONTRAST = """(element) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = (c) => (c / 255 <= 0.03928 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4);
    const [R, G, B] = [r, g, b].map(linear);
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  let ground = element;
  while (ground && rgb(getComputedStyle(ground).backgroundColor)[3] === 0) ground = ground.parentElement;
  const back = ground ? rgb(getComputedStyle(ground).backgroundColor) : [255, 255, 255];
  const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(back)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""

# Every kind of message and tone the pages show, by its selector.
MESSAGES = [
    "#toast.info",
    "#toast.good",
    "#toast.bad",
    ".message.success",
    ".notice",
    ".warning",
    ".flag",
    ".state.tone-good",
    ".state.tone-bad",
    ".state.tone-none",
    "#panel .bad",
    "#panel .good",
    ".error",
]


def contrasts(page, seen: dict[str, float]) -> None:
    """The lowest contrast of each kind of message on the page now, into `seen`."""
    for selector in MESSAGES:
        for element in page.locator(selector).all():
            if element.is_visible():
                seen[selector] = min(seen.get(selector, 99.0), element.evaluate(CONTRAST))


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_kind_of_message_is_readable(lab, browser, viewport):
    deployment, base = lab
    items = list(deployment.checklist.order_by("number", "pk"))
    recorded_run(deployment, [(item, PROBED_STATES[i % len(PROBED_STATES)]) for i, item in enumerate(items[:-1])])
    items[1].change_status("opened", None)  # refused: "Opened, but the probe fails"
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="w@default", site="default", started=now, last_seen=now)
    page = Visits(browser, base, viewport).logged_in("alice").page
    seen: dict[str, float] = {}
    page.goto(f"{base}/deployments/{deployment.pk}/?size=25")
    page.locator("#overview").evaluate("details => { details.open = true; }")
    contrasts(page, seen)
    for kind in ("info", "good", "bad"):
        page.evaluate(f"say('A message of kind {kind}', '{kind}')")
        contrasts(page, seen)
    page.goto(f"{base}/deployments/{deployment.pk}/?port=abc")  # a filter error, said as a notice
    contrasts(page, seen)
    page.goto(f"{base}/deployments/{deployment.pk}/edit/")
    page.fill("#id_name", "")
    page.get_by_role("button", name="Save and show the checklist").click()
    page.locator(".error").first.wait_for()
    contrasts(page, seen)
    page.fill("#id_name", "Pages lab")
    page.get_by_role("button", name="Save and show the checklist").click()
    page.locator(".message.success").wait_for()
    contrasts(page, seen)
    assert set(seen) == set(MESSAGES), set(MESSAGES) - set(seen)
    low = {selector: round(ratio, 2) for selector, ratio in seen.items() if ratio < 4.5}
    assert not low, low


@SCREENS
def test_no_width_scrolls_sideways_and_a_phone_shows_the_first_rule_first(lab, browser, viewport):
    """With and without probe results (long ones), the checklist, its evidence, a message and its
    dialogs fit the screen, pass axe (violations and reviewed incompletes) and have targets of
    24 by 24 px; on a phone the first rule is on the first screen."""
    deployment, base = lab
    visits = Visits(browser, base, viewport).logged_in("alice")
    page = visits.page
    first_rule = "document.querySelector('tbody tr[data-item]').getBoundingClientRect().top"
    visits.visit(f"/deployments/{deployment.pk}/", "screen-new")
    if viewport is PHONE:
        assert page.evaluate(first_rule) < PHONE["height"]
        assert not page.locator("#overview").evaluate("d => d.open")  # folded, a tap away
    items = list(deployment.checklist.order_by("number", "pk"))
    long = "{state}: certificate issued by CN=Corporate-TLS-Inspection-Intermediate-CA-2026,O=Example via 127.0.8.1"
    recorded_run(deployment, [(item, PROBED_STATES[i % len(PROBED_STATES)]) for i, item in enumerate(items)], long)
    visits.visit(f"/deployments/{deployment.pk}/?size=100", "screen-probed")
    if viewport is PHONE:
        assert page.evaluate(first_rule) < PHONE["height"]
    row = page.locator("tbody tr[data-item]").first
    row.locator("details.evidence summary").click()
    row.locator("ol.history li").first.wait_for()
    history = row.locator("ol.history").inner_text()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC Probed from site default: ", history), history
    page.evaluate("say('81 rules marked requested (a message long enough to wrap on a phone screen).', 'good')")
    visits.check("screen-toast")
    page.click("#open-export")
    visits.check("screen-export-dialog")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Delete…").click()
    visits.check("screen-delete-dialog")


def test_the_export_dialog_asks_only_what_the_format_uses_and_forgets_the_last_export(lab, browser):
    deployment, base = lab
    page = Visits(browser, base, DESKTOP).logged_in("alice").page
    page.goto(f"{base}/deployments/{deployment.pk}/")
    page.click("#open-export")
    dialog = page.locator("#export-dialog")
    pdf_fields = ["Change reference", "Requester", "Justification", "Requested date", "Expiry", "Rollback note"]

    def shown() -> dict[str, bool]:
        return {name: dialog.get_by_label(name).is_visible() for name in [*pdf_fields, "Zones per site"]}

    assert all(shown().values())  # the change request: its fields, and zones for its rollback
    dialog.get_by_label("Change reference").fill("CHG-1")
    dialog.get_by_label("Format").select_option("csv")
    assert not any(shown().values())
    dialog.get_by_label("Format").select_option("asa")
    assert shown() == {**dict.fromkeys(pdf_fields, False), "Zones per site": True}
    dialog.get_by_label("Format").select_option("csv")
    with page.expect_request("**/checklist.csv*") as request, page.expect_download():
        dialog.get_by_role("button", name="Export").click()
    assert "reference" not in request.value.url and "scope=all" in request.value.url
    status = dialog.locator("#export-status")
    assert status.inner_text().startswith("Ready: ") and dialog.locator("#export-link").is_visible()
    dialog.get_by_label("Format").select_option("xlsx")  # another export: the last one's words go
    assert status.inner_text() == "" and not dialog.locator("#export-link").is_visible()
    with page.expect_download():
        dialog.get_by_role("button", name="Export").click()
    dialog.get_by_role("button", name="Close").click()
    page.click("#open-export")
    assert status.inner_text() == "" and not dialog.locator("#export-link").is_visible()


def test_bulk_marks_every_matching_rule_in_one_request_and_asks_before_settled_rules_change(lab, browser):
    deployment, base = lab
    items = list(deployment.checklist.order_by("number", "pk"))
    for item in items[:2]:
        item.change_status("verified", None)
    items[2].change_status("waived", None, comment="no hybrid service here")
    page = Visits(browser, base, DESKTOP).logged_in("alice").page
    posts: list[dict] = []
    page.on("request", lambda r: "/checklist/status/" in r.url and posts.append(r.post_data_json))

    # The rules still to do, on every page of a filtered view: one request, no question asked.
    page.goto(f"{base}/deployments/{deployment.pk}/?size=25&status=todo")
    page.check("#pick-all")
    page.get_by_role("button", name="Select all 78 matching rules").click()
    assert page.locator("#picked").inner_text() == "All 78 matching rules selected"
    page.select_option("#bulk-status", "requested")
    held = []

    def hold(route) -> None:  # the change (not its dry run) waits until the test has looked
        if "dry_run" in route.request.post_data_json:
            route.continue_()
        else:
            held.append(route)

    page.route("**/checklist/status/", hold)
    page.click("#bulk-apply")
    # While it works, the bar says so and Apply waits.
    page.wait_for_function("document.getElementById('bulk-busy-text').textContent.startsWith('Marking')")
    assert page.locator("#bulk-apply").is_disabled() and page.locator("#bulk-busy progress").is_visible()
    assert page.locator("#bulk-busy").inner_text().strip() == "Marking 78 rules requested…"
    while not held:
        page.wait_for_timeout(50)
    held[0].continue_()
    page.unroute("**/checklist/status/")
    page.locator("#toast", has_text="78 rules marked requested.").wait_for()
    assert not page.locator("#bulk-apply").is_disabled()
    assert [p["filter"] for p in posts] == [{"status": "todo"}] * 2
    assert [p.get("dry_run") for p in posts] == [True, None]
    statuses = dict(deployment.checklist.values_list("pk", "status"))
    assert [statuses[i.pk] for i in items[:3]] == ["verified", "verified", "waived"]
    assert list(statuses.values()).count("requested") == 78
    # The rows of this page are the server's again.
    still_todo = "document.querySelector('tbody tr[data-status=todo]')"
    page.wait_for_function(f"!{still_todo}")

    # Every rule: the dialog names the settled ones; cancelling changes nothing.
    page.goto(f"{base}/deployments/{deployment.pk}/?size=25")
    page.check("#pick-all")
    page.get_by_role("button", name="Select all 81 matching rules").click()
    page.select_option("#bulk-status", "opened")
    page.click("#bulk-apply")
    dialog = page.get_by_role("dialog", name="Change rules that are settled?")
    assert "1 waived and 2 verified rules would become opened" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    page.locator("#toast", has_text="Nothing changed.").wait_for()
    assert deployment.checklist.filter(status="opened").count() == 0
    page.click("#bulk-apply")
    dialog.get_by_role("button", name="Change them too").click()
    page.locator("#toast", has_text="81 rules marked opened.").wait_for()
    assert set(deployment.checklist.values_list("status", flat=True)) == {"opened"}
    assert items[2].history.last().from_status == "waived"
    assert len(posts) == 5  # two dry runs and a change here, for 81 rules on four pages
    assert json.dumps(posts[-1]["filter"]) == "{}"

    # Unticking a row is back to this page's rows.
    page.locator("tbody tr[data-item] input.pick").first.uncheck()
    assert page.locator("#picked").inner_text() == "24 selected"
    assert ChecklistItem.objects.filter(deployment=deployment).count() == 81


def test_the_pages_say_in_words_what_a_new_admin_must_do_and_what_went_wrong(lab):
    """The first steps on a deployment never probed; each site with whether a worker runs there
    and the command that starts one; a failed run said as failed, never as "0 failing"."""
    deployment, _ = lab
    page = Client()
    page.force_login(deployment.team.members.get())
    html = strip_tags(page.get(f"/deployments/{deployment.pk}/").content.decode())
    assert "First steps: check the rules, probe them, hand them to the firewall team" in html
    assert "default: no probe worker is running there" in html
    assert "celery -A portal.probe_site worker -Q probes.default" in html
    listed = strip_tags(page.get("/").content.decode())
    assert "not probed yet" in listed and "never" in listed

    now = timezone.now()
    ProbeRun.objects.create(deployment=deployment, total=81, status=RunStatus.FAILED, timeout=1, deadline=now)
    WorkerHeartbeat.objects.create(worker="w@default", site="default", started=now, last_seen=now)
    listed = page.get("/").content.decode()
    assert '<span class="bad">failed</span>' in listed  # in red; a run going on is not
    listed = strip_tags(listed)
    assert re.search(r"not probed yet\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC, failed", listed), listed
    html = strip_tags(page.get(f"/deployments/{deployment.pk}/").content.decode())
    assert "First steps" not in html and "default: a probe worker is running there." in html
    assert "Last run: " in html and ", failed" in html

    empty = create_deployment({"name": "Empty", "appliances": [], "hosts": []})
    html = strip_tags(page.get(f"/deployments/{empty.pk}/").content.decode())
    assert "This deployment has no rules yet: add its appliances" in html


def test_the_deployments_list_counts_anew_what_changed_and_only_that(lab, django_capture_on_commit_callbacks):
    """Counts are kept per checklist revision: a change shows on the next read, and a read with
    nothing changed counts nothing again."""
    deployment, _ = lab
    other = create_deployment({**FULL_DEPLOYMENT, "name": "Other"})
    page = Client()
    page.force_login(deployment.team.members.get())
    assert "0 / 81" in strip_tags(page.get("/").content.decode())
    items = list(deployment.checklist.order_by("number", "pk"))
    with django_capture_on_commit_callbacks(execute=True):
        items[0].change_status("verified", None)
        recorded_run(deployment, [(items[1], "refused"), (items[2], "open")])
    with CaptureQueriesContext(connection) as read:
        listed = strip_tags(page.get("/").content.decode())
    assert "1 / 81" in listed and "1 of 2 probed" in listed and "not probed yet" in listed  # the other
    counting = [q["sql"] for q in read.captured_queries if "COUNT(" in q["sql"] and "checklistitem" in q["sql"]]
    counted = {int(pk) for pk in re.findall(r"\d+", counting[0].split(" IN (")[1].split(")")[0])}
    assert len(counting) == 1 and counted == {deployment.pk} and other.pk not in counted  # one grouped query
