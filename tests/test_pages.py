"""The pages an admin works in, in Chromium at desktop and phone widths: what they say stays true
after every click, nothing comes from another host, and axe finds no serious accessibility fault."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from ports.exports.firewall import SYNTAXES
from ports.models import ChecklistItem, Deployment
from probes.choices import PROBED_STATES, STATE_TONES, ProbeState
from probes.responders import Listeners

from .conftest import ARTIFACTS, FULL_DEPLOYMENT, create_deployment, make_member, recorded_run
from .probe_worker import Worker, flush_broker
from .test_browser import log_in, pytestmark  # noqa: F401 (the same marks: Chromium and Redis)

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DESKTOP, TABLET, PHONE = {"width": 1366, "height": 768}, {"width": 768, "height": 1024}, {"width": 390, "height": 844}
SCREENS = pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])

# Controls smaller than 24 by 24 px (WCAG 2.2, 2.5.8), visible ones only; a link inside a sentence is
# exempt (the criterion's inline exception), as is one in a visually hidden box.
SMALL_TARGETS = """() => [...document.querySelectorAll('a[href], button, select, input, textarea, summary')]
  .filter((e) => e.checkVisibility() && !e.closest('.sr-only, table.cards thead'))
  .filter((e) => !(e.matches('a') && e.parentElement.textContent.trim() !== e.textContent.trim()))
  .map((e) => [e, e.getBoundingClientRect()])
  .filter(([, r]) => r.width && (r.width < 23.5 || r.height < 23.5))
  .map(([e, r]) => `${e.tagName} "${(e.textContent || e.name).trim().slice(0, 30)}" ${r.width}x${r.height}`)"""

# axe's "incomplete" results that a person reviewed and found right, by rule and why: anything else
# it cannot decide fails the test until someone looks at it.
REVIEWED = {
    # Symbols (the sort arrow, the TLS mark) are not text to axe; their colours are the ink's and
    # --bad's on white or the header's grey, 6.5:1 at least. A dialog's fields scroll beneath its
    # sticky foot (which keeps the download in view): ink on white, overlapped only while scrolled.
    "color-contrast": "th span[aria-hidden=true], .tls, dialog :not(.dialog-foot, .dialog-foot *)",
}


class Visits:
    """A browser page that refuses every request to another host (and records it), and checks each
    page it visits with axe-core: no serious or critical violation."""

    def __init__(self, browser, base: str, viewport: dict) -> None:
        self.base, self.viewport = base, viewport
        self.page = browser.new_page(viewport=viewport, accept_downloads=True)
        self.outside: list[str] = []
        self.page.route("**/*", self.route)

    def route(self, route) -> None:
        url = route.request.url
        if url.startswith((self.base, "data:", "blob:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def check(self, name: str, axe: bool = True) -> None:
        page = self.page
        assert not self.outside, (name, self.outside)
        page.screenshot(path=ARTIFACTS / f"{name}-{self.viewport['width']}.png", full_page=True)
        if not axe:
            return
        page.add_script_tag(path=str(AXE))
        found = page.evaluate("async () => { const r = await axe.run(document); return [r.violations, r.incomplete]; }")
        violations, incomplete = found
        serious = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in violations
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, (name, json.dumps(serious, indent=1))
        undecided = [
            (v["id"], node["target"], node["failureSummary"])
            for v in incomplete
            for node in v["nodes"]
            if not page.locator(node["target"][0]).evaluate("(e, s) => e.matches(s)", REVIEWED.get(v["id"], "none"))
        ]
        assert not undecided, (name, json.dumps(undecided, indent=1))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= self.viewport["width"], (name, width, "scrolls sideways")
        assert not page.evaluate(SMALL_TARGETS), (name, page.evaluate(SMALL_TARGETS))

    def logged_in(self, username: str) -> Visits:
        log_in(self.page, self.base, username)
        return self

    def visit(self, path: str, name: str, axe: bool = True) -> None:
        response = self.page.goto(f"{self.base}{path}")
        assert response.status == 200, (path, response.status)
        self.check(name, axe)


def test_every_page_at_every_size_is_accessible_and_loads_nothing_from_outside(lab, browser):
    deployment, base = lab
    for viewport in (DESKTOP, TABLET, PHONE):
        visits = Visits(browser, base, viewport)
        visits.visit("/accounts/login/", "login")
        log_in(visits.page, base, "alice")
        visits.check("deployments")
        visits.visit(f"/deployments/{deployment.pk}/", "checklist")
        visits.visit(f"/deployments/{deployment.pk}/?sort=-destination&size=25&page=2", "checklist-sorted")
        visits.visit(f"/deployments/{deployment.pk}/edit/", "deployment-form")
        visits.visit("/catalog/?search=389", "catalog")
        visits.visit("/alerts/", "alerts")
        # Swagger UI is a third party's page: checked for outside requests (its assets are the
        # sidecar's), not by axe, which finds its own contrast and nested-control faults.
        visits.visit("/api/docs/", "api-docs", axe=False)
        visits.page.wait_for_selector(".swagger-ui .opblock")
        visits.check("api-docs", axe=False)
        visits.page.close()


def test_alert_channels_are_added_tested_and_refused_in_the_browser(lab, browser):
    from probes.models import Alert, AlertChannel

    visits = Visits(browser, lab[1], PHONE).logged_in("alice")
    page = visits.page
    page.goto(f"{lab[1]}/alerts/")
    page.select_option("select[name=team]", label="Mail team")
    page.fill("input[name=name]", "Ops mail")
    page.select_option("select[name=kind]", "email")
    page.fill("input[name=target]", "not an address")
    page.click("text=Add channel")
    assert "Give an email address." in page.inner_text("main")
    page.fill("input[name=target]", "ops@example.test")
    page.click("text=Add channel")
    assert "Channel Ops mail added" in page.inner_text("main")
    page.click("text=Send test alert")
    assert "Test alert sent to Ops mail" in page.inner_text("main")
    assert "Test alert to Ops mail" in page.inner_text("main")
    assert Alert.objects.get().kind == "test"
    visits.check("alerts-with-channel")

    # Remove asks first, in place, and names the channel; only the second button removes it.
    page.get_by_text("Remove", exact=True).click()
    confirm = page.get_by_role("button", name="Remove Ops mail")
    assert confirm.is_visible() and AlertChannel.objects.filter(name="Ops mail").exists()
    visits.check("alerts-remove-asks")
    confirm.click()
    page.wait_for_load_state()
    assert not AlertChannel.objects.filter(name="Ops mail").exists()
    page.close()
    flush_broker()  # its delivery task: no worker here takes it


def test_a_skip_link_is_the_first_stop_and_leads_to_the_rules(lab, browser):
    deployment, base = lab
    page = Visits(browser, base, DESKTOP).logged_in("alice").page
    page.goto(f"{base}/deployments/{deployment.pk}/")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    assert skip.inner_text() == "Skip to the rules" and skip.is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "rows"
    page.keyboard.press("Tab")  # the next stop is inside the rules, not the header's links
    assert page.evaluate("document.getElementById('rows').contains(document.activeElement)")


def test_the_checklist_pages_sorts_and_filters_at_any_size(lab, browser):
    deployment, base = lab
    visits = Visits(browser, base, DESKTOP).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/deployments/{deployment.pk}/?size=25")
    assert page.locator("#count").inner_text().startswith("Rules 1–25 of 81")
    page.locator("a[rel=next]").click()
    assert page.locator("#count").inner_text().startswith("Rules 26–50 of 81")
    # One sort parameter, its direction shown; addresses sort as numbers (.2 before .10).
    page.get_by_role("link", name="Destination").click()
    header = page.locator("th[aria-sort]")
    assert header.get_attribute("aria-sort") == "ascending" and "▲" in header.inner_text()
    page.goto(f"{base}/deployments/{deployment.pk}/?sort=destination&size=500&q=dns")
    destinations = page.locator("tbody td[data-label=Destination] .mono").all_inner_texts()
    assert destinations == sorted(destinations, key=lambda a: [int(x) for x in a.split(".")])
    assert destinations.index("127.0.4.9") < destinations.index("127.0.4.10")
    page.locator("th[aria-sort] a").click()
    assert page.locator("th[aria-sort]").get_attribute("aria-sort") == "descending"
    assert "sort=-destination" in page.url and page.url.count("sort=") == 1
    # The filter form as a person uses it: every field is sent, the ones left at "any" blank.
    page.goto(f"{base}/deployments/{deployment.pk}/")
    page.locator(".filters input[name=port]").fill("9443")
    page.locator(".filters button[type=submit]").click()
    page.wait_for_url("**port=9443**")
    assert "status=" in page.url and page.locator(".filters label.invalid").count() == 0
    ports = page.locator("tbody td[data-label=Port]").all_inner_texts()
    assert ports and all("9443" in port for port in ports), ports
    # A filter that does not parse says so next to its field, and shows nothing.
    page.goto(f"{base}/deployments/{deployment.pk}/?port=abc")
    assert "Enter a whole number." in page.locator(".filters label.invalid").inner_text()
    assert page.locator("tbody tr[data-item]").count() == 0
    visits.check("checklist-bad-filter")


def test_every_action_keeps_the_page_true_and_says_so_where_the_user_looks(lab, browser, settings):
    deployment, base = lab
    listeners = Listeners()
    listeners.dns("127.0.4.9", 53)
    listeners.open_tcp("127.0.4.2", 50800)
    flush_broker()
    worker = Worker(["default"], name="pages", extra_queues=("celery",))
    try:
        worker.wait_until_live()
        visits = Visits(browser, base, DESKTOP).logged_in("alice")
        page = visits.page
        page.goto(f"{base}/deployments/{deployment.pk}/?size=100")
        panel = page.locator("#panel")
        assert "Not probed yet" in panel.inner_text() and "Last run: never" in panel.inner_text()

        # A status change: the summary follows at once, and a message says what happened.
        first = page.locator("tbody tr[data-item]").first
        first.locator("select.status-select").select_option("opened")
        page.locator("#toast", has_text="Opened.").wait_for()
        # Readable: its text is not painted in its own background's colour (axe leaves it "incomplete").
        ink, ground = page.locator("#toast").evaluate(
            "t => [getComputedStyle(t).color, getComputedStyle(t).backgroundColor]"
        )
        assert ink != ground, (ink, ground)
        page.wait_for_function("document.querySelector('#panel').innerText.includes('Opened\\n1')")

        # Waived needs a reason, kept in the history; cancelling changes nothing.
        second = page.locator("tbody tr[data-item]").nth(1)
        second.locator("select.status-select").select_option("waived")
        page.locator("#waive-dialog").get_by_role("button", name="Cancel").click()
        assert second.get_attribute("data-status") == "todo"
        second.locator("select.status-select").select_option("waived")
        page.fill("#waive-comment", "this site has no hybrid service")
        page.locator("#waive-dialog").get_by_role("button", name="Waive").click()
        page.locator("#toast", has_text="Waived.").wait_for()
        item = ChecklistItem.objects.get(pk=second.get_attribute("data-item"))
        assert item.status == "waived" and item.history.get().comment == "this site has no hybrid service"

        # Select all, a count, and a bulk change.
        page.check("#pick-all")
        assert page.locator("#picked").inner_text() == "81 selected"
        page.uncheck("#pick-all")
        picked = page.locator("tbody tr[data-item]").all()[2:6]
        for row in picked:
            row.locator("input.pick").check()
            row.evaluate("row => { row.dataset.before = 'the change'; }")
        assert page.locator("#picked").inner_text() == "4 selected"
        page.select_option("#bulk-status", "requested")
        page.click("#bulk-apply")
        page.locator("#toast", has_text="4 rules marked requested.").wait_for()
        page.wait_for_function("document.querySelector('#panel').innerText.includes('Requested\\n4')")
        # The changed rows are the server's again, and stay selected.
        page.wait_for_function("!document.querySelector('tbody tr[data-before]')")
        assert all(row.locator("input.pick").is_checked() for row in picked)
        assert page.locator("#picked").inner_text() == "4 selected"

        # Probe all: the button waits for the run; the end is said with its counts.
        page.get_by_role("button", name="Probe all").click()
        page.wait_for_function("document.getElementById('probe-all').disabled")
        page.locator("#toast", has_text="Probe run done:").wait_for(timeout=90_000)
        toast = page.locator("#toast").inner_text()
        assert "open" in toast and "refused" in toast
        assert not page.locator("#probe-all").is_disabled()
        assert "Last run: never" not in panel.inner_text() and "Never probed" in panel.inner_text()
        # The rule marked opened whose probe is refused is flagged, now and after a reload.
        opened = ChecklistItem.objects.with_latest_probe().get(pk=first.get_attribute("data-item"))
        assert opened.latest_probe.state == "refused" and "flagged" in first.get_attribute("class")
        assert first.locator("td.probe .state.tone-bad").inner_text() == "Refused"
        page.goto(f"{base}/deployments/{deployment.pk}/?flag=opened_failing")
        assert page.locator("tbody tr[data-item] .flag").all_inner_texts() == ["Opened, but the probe fails"]
        visits.check("checklist-after-probe")
        page.goto(f"{base}/deployments/{deployment.pk}/?size=100")

        # Mark open rules verified, on every page.
        page.click("#verify-open")
        page.locator("#toast", has_text="with an open probe marked verified").wait_for()
        page.wait_for_load_state()
        verified = deployment.checklist.with_latest_probe().filter(status="verified")
        assert verified.exists() and all(item.latest_probe.state == "open" for item in verified)
        assert verified.first().history.last().comment.startswith("latest probe open")

        # A large change request runs in the background with a progress bar, then downloads.
        settings.EXPORT_SYNC_RULES = 10
        page.goto(f"{base}/deployments/{deployment.pk}/")
        page.click("#open-export")
        dialog = page.locator("#export-dialog")
        dialog.get_by_label("Change reference").fill("CHG-77")
        dialog.get_by_label("Justification").fill("New gateways")
        dialog.get_by_label("Rollback commands").select_option("asa")
        dialog.get_by_role("button", name="Export").click()
        dialog.get_by_role("link", name="Download the change request (PDF)").wait_for(timeout=90_000)
        assert "is ready: 75 rules" in dialog.locator("#export-status").inner_text()
        visits.check("export-dialog")
        # A small export downloads at once, with the selection.
        page.keyboard.press("Escape")
        for row in page.locator("tbody tr[data-item]").all()[:3]:
            row.locator("input.pick").check()
        page.click("#open-export")
        dialog.get_by_label("Format").select_option("nftables")
        dialog.get_by_label("Selected (3)").check()
        with page.expect_download() as download:
            dialog.get_by_role("button", name="Export").click()
        text = Path(download.value.path()).read_text()
        assert text.count(" accept comment ") == 3
    finally:
        worker.stop()
        listeners.close()


def test_at_phone_width_rules_are_cards_and_nothing_scrolls_sideways(lab, browser):
    deployment, base = lab
    visits = Visits(browser, base, PHONE).logged_in("alice")
    visits.visit(f"/deployments/{deployment.pk}/", "checklist-phone")
    row = visits.page.locator("tbody tr[data-item]").first
    box = row.bounding_box()
    assert box["width"] <= PHONE["width"] and row.locator("select.status-select").is_visible()
    assert row.locator("td[data-label=Source]").evaluate("e => getComputedStyle(e, '::before').content") == '"Source"'


def test_the_form_adds_rows_without_a_reload_and_says_it_saved(lab, browser):
    deployment, base = lab
    visits = Visits(browser, base, DESKTOP).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/deployments/{deployment.pk}/edit/")
    hosts = page.locator("fieldset", has_text="Hosts of the other roles")
    before = hosts.locator("tbody tr").count()
    hosts.get_by_role("button", name="Add a row").click()
    assert hosts.locator("tbody tr").count() == before + 1
    index = before
    page.fill(f"#id_hosts-{index}-name", "dns3")
    page.fill(f"#id_hosts-{index}-address", "127.0.4.12")
    page.select_option(f"#id_hosts-{index}-role", "dns")
    page.get_by_role("button", name="Save and show the checklist").click()
    page.locator(".message.success", has_text="Pages lab saved (updated)").wait_for()
    assert deployment.hosts.filter(name="dns3").exists()
    visits.check("checklist-saved")


def test_the_keyboard_changes_a_status_only_when_asked_and_enter_exports(lab, browser):
    deployment, base = lab
    visits = Visits(browser, base, DESKTOP).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/deployments/{deployment.pk}/")
    row = page.locator("tbody tr[data-item]").first
    item = ChecklistItem.objects.get(pk=row.get_attribute("data-item"))
    select = row.locator("select.status-select")
    select.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # passing through "requested" on the way: nothing is written
    page.wait_for_timeout(300)
    item.refresh_from_db()
    assert item.status == "todo" and not item.history.exists()
    row.evaluate("row => { row.dataset.before = 'the change'; }")
    page.keyboard.press("Enter")
    page.locator("#toast", has_text="Opened.").wait_for()
    item.refresh_from_db()
    assert item.status == "opened" and item.history.count() == 1
    # The row is the server's again, and the keyboard is where it was.
    page.wait_for_function(f"!document.querySelector('#item-{item.pk}').dataset.before")
    assert page.evaluate("document.activeElement.matches('select.status-select')")
    assert page.evaluate("document.activeElement.closest('tr').id") == f"item-{item.pk}"

    # Enter in a field of the export dialog exports; it does not close the dialog.
    page.click("#open-export")
    dialog = page.locator("#export-dialog")
    dialog.get_by_label("Format").select_option("asa")
    dialog.get_by_label("Zones per site").fill("default:inside")
    with page.expect_download() as download:
        dialog.get_by_label("Zones per site").press("Enter")
    assert "access-group FES_" in Path(download.value.path()).read_text()
    assert dialog.is_visible()
    dialog.get_by_role("button", name="Close").click()
    assert not dialog.is_visible()


def rows_of(html: str) -> dict[str, str]:
    """The checklist rows of a page or of the rows endpoint, by item id, as rendered."""
    return {pk: row for row, pk in re.findall(r'(<tr id="item-(\d+)".*?</tr>)', html, re.S)}


def test_states_show_in_their_tone_and_a_row_reads_the_same_whoever_renders_it(deployment, user, other_api):
    """Probe states and firewall syntaxes are the server's: the page gives the script and the
    stylesheet what they need of them, so a new state or syntax changes neither."""
    items = list(deployment.checklist.order_by("number", "pk"))
    states = PROBED_STATES  # each with a verdict: an item's current state
    recorded_run(deployment, list(zip(items, states, strict=False)))
    refused = items[states.index(ProbeState.REFUSED)]
    refused.change_status("opened", user)
    page = Client()
    page.force_login(user)
    url = f"/deployments/{deployment.pk}/"
    html = page.get(url, {"size": 500}).content.decode()
    on_page = rows_of(html)
    assert len(on_page) == len(items) == 81
    for item, state in zip(items, states, strict=False):
        label = ProbeState(state).label
        assert f'<span class="state tone-{STATE_TONES[state]}">{label}</span>' in on_page[str(item.pk)], state
    assert 'class="state tone-bad">Refused' in on_page[str(refused.pk)]
    assert "flagged" in on_page[str(refused.pk)] and "Opened, but the probe fails" in on_page[str(refused.pk)]
    assert '<span class="state tone-good">Open</span>' in on_page[str(items[0].pk)]
    assert '<span class="state tone-none">never probed</span>' in on_page[str(items[-1].pk)]

    # The rows endpoint gives exactly the page's rows, for this deployment's items only.
    rows_url = f"/deployments/{deployment.pk}/rows/"
    asked = [refused.pk, items[0].pk, items[-1].pk]
    other = create_deployment({**FULL_DEPLOYMENT, "name": "Elsewhere"}, team="Other team")
    response = page.get(rows_url, {"items": ",".join(map(str, [*asked, other.checklist.first().pk, 10**17]))})
    assert response.status_code == 200
    assert rows_of(response.content.decode()) == {str(pk): on_page[str(pk)] for pk in asked}
    assert page.get(rows_url, {"items": "999999999999999999"}).content == b""
    for junk in ["", "abc", "1,,2", "1;2", "-1", "1.5", "10000000000000000000", ",".join(["1"] * 501)]:
        response = page.get(rows_url, {"items": junk})
        assert response.status_code == 400, junk
    assert page.get(rows_url).status_code == 400
    assert page.get(rows_url, {"items": ",".join(["1"] * 500)}).status_code == 200
    mallory = Client()
    mallory.force_login(other.team.members.get())
    assert mallory.get(rows_url, {"items": str(refused.pk)}).status_code == 404
    assert Client().get(rows_url, {"items": str(refused.pk)}).status_code == 302  # to the login page

    # The stylesheet styles tones, never a state; the script names no state and no syntax.
    static = Path(django_settings.BASE_DIR) / "static"
    css, js = (static / "portal.css").read_text(), (static / "checklist.js").read_text()
    classes = set(re.findall(r"\.([a-z][\w-]*)", css))
    assert not [c for c in classes for state in ProbeState.values if c.endswith(f"-{state}")]
    assert {f"tone-{tone}" for tone in STATE_TONES.values()} <= classes
    js = js.replace('redirect: "error"', "")  # fetch's redirect mode, not the state
    assert not [word for word in [*ProbeState.values, *SYNTAXES] if re.search(f"[\"'`]{word}[\"'`]", js)]

    # The export dialog offers every syntax by its label, each at a URL that renders it.
    dialog = html[html.index('<select name="format"') : html.index("</select>", html.index('<select name="format"'))]
    options = re.findall(r'<option value="([^"]+)" data-url="([^"]+)"( data-zones)?>([^<]+)</option>', dialog)
    assert [value for value, *_ in options] == ["pdf", "csv", "xlsx", *SYNTAXES]
    for value, option_url, zones, label in options[3:]:
        assert (label, bool(zones)) == (SYNTAXES[value].label, SYNTAXES[value].uses_zones)
        assert page.get(option_url).status_code == 200, option_url
    rollback = re.search(r'<select name="syntax">(.*?)</select>', html)[1]
    assert re.findall(r'<option value="(\w+)">', rollback) == list(SYNTAXES)


def test_the_form_says_which_row_lacks_its_name_and_saves_nothing(lab, browser):
    """An appliance with an address but no hostname, or a host without a name, is a row the user
    wrote: the form says what it lacks on that row, rather than dropping it and saving."""
    deployment, base = lab
    visits = Visits(browser, base, DESKTOP).logged_in("alice")
    page = visits.page
    before = (deployment.appliances.count(), deployment.hosts.count(), deployment.checklist.count())
    page.goto(f"{base}/deployments/{deployment.pk}/edit/")
    appliances = page.locator("fieldset", has_text="Appliances")
    row = appliances.locator("tbody tr").count() - 1  # an empty row the form offers
    page.type(f"#id_appliances-{row}-c_address", "127.0.50.1")
    hosts = page.locator("fieldset", has_text="Hosts of the other roles")
    row = hosts.locator("tbody tr").count() - 1
    page.select_option(f"#id_hosts-{row}-role", "security_manager")
    page.type(f"#id_hosts-{row}-address", "127.0.50.2")
    page.get_by_role("button", name="Save and show the checklist").click()
    page.wait_for_load_state()
    assert "/edit/" in page.url  # not saved: the form again, with its rows
    assert appliances.locator("td.invalid .error").count() >= 1, appliances.inner_text()
    assert hosts.locator("td.invalid .error").count() >= 1, hosts.inner_text()
    assert page.input_value(f"#id_hosts-{row}-address") == "127.0.50.2"  # what was typed stays
    assert (deployment.appliances.count(), deployment.hosts.count(), deployment.checklist.count()) == before
    visits.check("form-row-errors")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_deployment_is_deleted_from_its_page_after_a_dialog_that_says_what_goes(lab, browser, viewport):
    deployment, base = lab
    visits = Visits(browser, base, viewport).logged_in("alice")
    page = visits.page
    rules = deployment.checklist.count()
    page.goto(f"{base}/deployments/{deployment.pk}/")
    # The way back is the deployments page, not the API's list of the same name.
    assert {link.get_attribute("href") for link in page.get_by_role("link", name="Deployments").all()} == {"/"}
    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog", name=f"Delete {deployment.name}?")
    assert f"Its {rules} rules go with it" in dialog.inner_text()
    visits.check("delete-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    assert not dialog.is_visible() and Deployment.objects.filter(pk=deployment.pk).exists()

    page.get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="Delete the deployment").click()
    page.wait_for_load_state()
    page.locator(".message.success", has_text=f"{deployment.name} deleted, with its {rules} rules").wait_for()
    assert page.url == f"{base}/" and not Deployment.objects.filter(pk=deployment.pk).exists()
    assert deployment.name not in page.locator("main").inner_text().replace(f"{deployment.name} deleted", "")


def test_another_team_cannot_delete_a_deployment_through_the_page(lab):
    deployment, _ = lab
    client = Client()
    client.force_login(make_member("mallory", "Other team"))
    assert client.post(f"/deployments/{deployment.pk}/delete/").status_code == 404
    assert client.get(f"/deployments/{deployment.pk}/delete/").status_code in (404, 405)
    assert Deployment.objects.filter(pk=deployment.pk).exists()
