"""The admins' pages in a real browser: Debian's Chromium driven by Playwright against a live server."""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings
from django.core.management import call_command

from ports.models import ChecklistItem, Deployment
from probes.responders import Listeners

from .conftest import ARTIFACTS, CHROMIUM, make_member
from .probe_worker import Worker, flush_broker

# Playwright's sync API runs an event loop in this thread; the ORM calls of the test are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian's chromium (make test installs it)"),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (make test starts Redis)"),
]


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("not-used-in-tests")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")


def test_an_admin_creates_a_deployment_works_its_checklist_and_probes_it(live_server, browser):
    call_command("load_catalog", verbosity=0)
    alice = make_member("alice", "Mail team")
    make_member("bob", "Other team")
    base = live_server.url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, base, "alice")
    page.screenshot(path=ARTIFACTS / "deployments-empty.png")

    # Create a deployment with two appliances; a bad address is shown in place first.
    page.get_by_role("link", name="New deployment").click()
    page.fill("#id_name", "Browser lab")
    page.get_by_label("Personal Email Manager").uncheck()
    page.get_by_label("Secure Message Delivery").uncheck()
    rows = [
        ("appliances-0", {"hostname": "esa1", "c_address": "127.79.1.1", "p1_address": "300.1.1.1"}),
        ("appliances-1", {"hostname": "esa2", "c_address": "127.79.1.3", "p1_address": "127.79.1.4"}),
        ("hosts-0", {"name": "dns", "address": "127.79.2.1"}),
        ("hosts-1", {"name": "log", "address": "127.79.2.2"}),
        ("peer_networks-0", {"name": "Internet", "network": "any"}),
    ]
    for prefix, fields in rows:
        for name, value in fields.items():
            page.fill(f"#id_{prefix}-{name}", value)
    page.select_option("#id_hosts-0-role", "dns")
    page.select_option("#id_hosts-1-role", "log_server")
    page.select_option("#id_peer_networks-0-role", "mail_senders")
    page.get_by_role("button", name="Save and show the checklist").click()
    page.screenshot(path=ARTIFACTS / "deployment-form-error.png", full_page=True)
    assert page.locator("td.invalid .error").inner_text() == "Enter a valid IPv4 or IPv6 address."
    assert not Deployment.objects.exists()
    page.screenshot(path=ARTIFACTS / "deployment-form-error.png", full_page=True)
    page.fill("#id_appliances-0-p1_address", "127.79.1.2")
    page.get_by_role("button", name="Save and show the checklist").click()
    page.wait_for_url(f"{base}/deployments/*/")
    deployment = Deployment.objects.get()
    assert page.get_by_role("heading", name="Browser lab").is_visible()
    assert page.locator("table.checklist tbody tr").count() == deployment.checklist.count() == 8

    # One click changes a status, and records who did it.
    smtp = deployment.checklist.get(requirement__uid="fes.appliance.25-tcp", destination="127.79.1.2")
    row = page.locator(f"#item-{smtp.pk}")
    row.locator("select.status-select").select_option("opened")
    page.wait_for_function(f"document.querySelector('#item-{smtp.pk}').dataset.status === 'opened'")
    smtp.refresh_from_db()
    assert smtp.status == "opened" and smtp.history.get().user == alice
    # A change made elsewhere meanwhile is not overwritten.
    other = ChecklistItem.objects.get(requirement__uid="fes.off-appliance.53-udp", source="127.79.1.2")
    other.change_status("requested", alice, comment="by the API")
    page.locator(f"#item-{other.pk} select.status-select").select_option("verified")
    page.get_by_text("was changed by someone else meanwhile").wait_for()
    other.refresh_from_db()
    assert other.status == "requested"

    # Probe all: results arrive without a reload.
    listeners = Listeners()
    listeners.dns("127.79.2.1", 53)
    listeners.open_tcp("127.79.2.2", 50800)
    flush_broker()
    worker = Worker(["default"], name="browser")
    try:
        worker.wait_until_live()
        page.reload()
        page.get_by_role("button", name="Probe all").click()
        page.wait_for_function("document.getElementById('run-text').textContent.includes('done')", timeout=60_000)
    finally:
        worker.stop()
        listeners.close()
    # Each row as a reload shows it: the state's label in its tone, its summary, since when.
    dns_row = page.locator(f"#item-{other.pk}")
    assert dns_row.locator("td.probe .state.tone-good").inner_text() == "Open"
    assert "DNS answered NOERROR" in dns_row.locator("td.probe").inner_text()
    after_run = [row.evaluate("row => row.outerHTML") for row in page.locator("tbody tr[data-item]").all()]
    page.reload()
    assert [row.evaluate("row => row.outerHTML") for row in page.locator("tbody tr[data-item]").all()] == after_run
    dns_row.locator("details.evidence summary").click()
    # Evidence in words, and the history on demand, newest first: the probe, then the status changes.
    dns_row.locator("ol.history li", has_text="Marked requested (was to do) by alice: “by the API”.").wait_for()
    assert "DNS answered NOERROR with 1 answers." in dns_row.locator(".loaded").inner_text()
    history = dns_row.locator("ol.history li").all_inner_texts()
    assert "Probed from site default: open." in history[0] and "Marked requested (was to do)" in history[-1]
    assert page.locator(f"#item-{smtp.pk} td.probe .state.tone-bad").inner_text() == "Refused"
    # Marked opened, but the probe is refused: flagged.
    assert page.locator(f"#item-{smtp.pk} .flag").inner_text() == "Opened, but the probe fails"
    page.screenshot(path=ARTIFACTS / "checklist-probed.png", full_page=True)

    # Filter the checklist.
    page.select_option("select[name=status]", "opened")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.checklist tbody tr").count() == 1
    page.goto(f"{base}/deployments/{deployment.pk}/?result=open")
    assert (
        page.locator("table.checklist tbody tr").count() == 6
    )  # DNS over TCP and UDP, and the log server, per appliance
    page.screenshot(path=ARTIFACTS / "checklist-filtered.png", full_page=True)

    # Which rule is 17510?
    page.get_by_role("link", name="Catalog").click()
    page.get_by_label("Search (port or text)").fill("17510")
    page.get_by_role("button", name="Search").click()
    descriptions = page.locator("table.catalog tbody tr td:nth-child(5)").all_inner_texts()
    assert [d.splitlines()[0] for d in descriptions] == [
        "Fingerprint status",
        "Fingerprint repository",
        "Message analysis",
    ]
    page.screenshot(path=ARTIFACTS / "catalog-17510.png", full_page=True)

    # Another team's admin sees nothing of it.
    other_page = browser.new_page()
    log_in(other_page, base, "bob")
    assert "Browser lab" not in other_page.content()
    response = other_page.goto(f"{base}/deployments/{deployment.pk}/")
    assert response.status == 404
