"""Where failing rules stop, on the checklist page (issue 23, item 3), in Chromium."""

from __future__ import annotations

import pytest

from .test_browser import pytestmark  # noqa: F401 (the same marks: Chromium and Redis)
from .test_pages import DESKTOP, PHONE, Visits
from .test_stops import FIREWALL, ROUTER, fail, single_flows


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_page_lists_where_failing_rules_stop_and_filters_by_device(lab, browser, viewport):
    """In Chromium: the summary names each device with its rules, a link that shows them; the
    "Stops at" field, typed into and submitted, does the same, and says what is no address."""
    deployment, base = lab
    where = fail(deployment, single_flows(deployment))
    visits = Visits(browser, base, viewport).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/deployments/{deployment.pk}/")
    if viewport is PHONE:  # the summary folds on a phone: a tap opens it
        page.click("#overview summary")
    page.get_by_role("link", name="3 rules stop after 10.0.1.1").click()
    page.wait_for_url("**stops_at=10.0.1.1*")
    assert shown(page) == {item.pk for item in where[ROUTER]}
    visits.check(f"stops-{viewport['width']}")

    page.goto(f"{base}/deployments/{deployment.pk}/")
    if viewport is PHONE:
        page.click("#filter-box summary")
    page.get_by_label("Stops at (address)").fill(FIREWALL)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(f"**stops_at={FIREWALL}*")
    assert shown(page) == {item.pk for item in where[FIREWALL]}
    page.get_by_label("Stops at (address)").fill("router-1")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**stops_at=router-1*")
    assert shown(page) == set() and page.locator(".error, .notice").filter(has_text="address").count()


def shown(page) -> set[int]:
    return {int(pk) for pk in page.locator("tr[data-item]").evaluate_all("rows => rows.map(r => r.dataset.item)")}
