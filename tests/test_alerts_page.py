"""The Alerts page follows its deliveries without a reload: while one is pending, the page asks the
server for its "Recent alerts" rows (the same template renders them) every few seconds and swaps
them in; a retry says when the next try is, a delivery that gave up says why, a screen reader hears
how each ended, and the asking stops when nothing is pending or the page is hidden. Times read
one way, ISO 8601 in UTC, with the reader's local time on hover."""

from __future__ import annotations

import datetime
import re

import pytest
from django.conf import settings as django_settings
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from portal.pages import alerts as alerts_page
from ports.models import Team
from probes.alerts.raising import send_test_alert
from probes.models import AlertChannel, AlertDelivery
from probes.responders import free_port

from .conftest import make_member
from .probe_worker import Worker, flush_broker
from .test_browser import log_in, pytestmark  # noqa: F401 (the same marks: Chromium and Redis)
from .test_pages import DESKTOP, PHONE, Visits

ALERTS_QUEUE = django_settings.CELERY_TASK_ROUTES["probes.tasks.deliver_alert"]["queue"]
ROWS_URL = "/alerts/recent/"
CELL = "td[data-label=Deliveries]"


class Abroad(Visits):
    """Visits from a browser in another time zone (India's, UTC+05:30, all year)."""

    def __init__(self, browser, base: str, viewport: dict, timezone_id: str = "Asia/Kolkata") -> None:
        self.base, self.viewport, self.outside = base, viewport, []
        self.page = browser.new_page(viewport=viewport, timezone_id=timezone_id, locale="en-GB")
        self.page.route("**/*", self.route)


def rows_of(html: str) -> dict[str, str]:
    """The Recent alerts rows of the page or of its endpoint, by alert id, as rendered."""
    return {pk: row.strip() for row, pk in re.findall(r'(<tr id="alert-(\d+)".*?</tr>)', html, re.S)}


def asked_for_rows(page) -> list[str]:
    """The URLs of the row requests the page makes from now on."""
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if ROWS_URL in request.url else None)
    return asked


def wait_in(page, condition, timeout: float, what: str) -> None:
    """wait_until for what the browser reports (its events reach the test only while Playwright waits)."""
    for _ in range(int(timeout * 10)):
        if condition():
            return
        page.wait_for_timeout(100)
    pytest.fail(what)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_retrying_delivery_is_followed_to_its_end_without_a_reload(lab, browser, settings, monkeypatch, viewport):
    _, base = lab
    monkeypatch.setattr(alerts_page, "POLL_SECONDS", 1)
    # The schedule the worker follows, shortened; the page reads the same settings.
    settings.ALERT_RETRY_BASE, settings.ALERT_MAX_RETRIES = 1.5, 2
    schedule = {"ALERT_RETRY_BASE": "1.5", "ALERT_MAX_RETRIES": "2", "ALERT_WEBHOOK_TIMEOUT": "1"}
    team = Team.objects.get(name="Mail team")
    dead = free_port()  # nothing listens there: every try is refused
    AlertChannel.objects.create(team=team, name="Dead hook", kind="webhook", target=f"http://127.0.0.1:{dead}/hook")
    refused = f"connection refused by 127.0.0.1:{dead}"

    visits = Visits(browser, base, viewport).logged_in("alice")
    page = visits.page
    flush_broker()
    worker = Worker([], name="alerts-page", extra_queues=(ALERTS_QUEUE,), **schedule)
    try:
        worker.wait_until_ready()
        page.goto(f"{base}/alerts/")
        page.get_by_role("button", name="Send test alert").click()
        page.locator(".message.success", has_text="Test alert sent to Dead hook").wait_for()
        asked = asked_for_rows(page)
        page.evaluate("window.sameDocument = true")  # gone if the page reloads
        cell = page.locator(f"tbody tr[data-alert] {CELL}").first

        # The first try was refused: the cell says when the next is, in UTC, and which of how many.
        retrying = cell.filter(has_text="retrying, next try at")
        retrying.wait_for(timeout=15_000)
        words = retrying.inner_text()
        found = re.fullmatch(
            rf"Dead hook: retrying, next try at (\d\d:\d\d:\d\d) UTC \(try ([23]) of 3\); the last one: {refused}",
            words,
        )
        assert found, words
        delivery = AlertDelivery.objects.get()
        shown = cell.locator("time")
        assert shown.get_attribute("datetime").endswith("Z")
        at = datetime.datetime.fromisoformat(shown.get_attribute("datetime"))
        assert shown.get_attribute("title").endswith(f"your time ({at:%Y-%m-%d %H:%M:%S} UTC)")
        assert abs((at - timezone.now()).total_seconds()) < 30
        assert at.strftime("%H:%M:%S") == found[1]
        visits.check("alerts-retrying")

        # Then it gives up: the cell says so in words, and the live region says it to a screen reader.
        final = cell.filter(has_text="failed after 3 tries")
        final.wait_for(timeout=30_000)
        assert final.inner_text() == f"Dead hook: failed after 3 tries: {refused}"
        news = page.locator("#alert-news")
        assert news.inner_text() == f"Delivery to Dead hook failed after 3 tries: {refused}."
        assert news.get_attribute("aria-live") == "polite" and news.get_attribute("role") == "status"
        assert page.evaluate("window.sameDocument === true")  # no reload on the way
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
        assert asked, "the page never asked for its rows"

        # Nothing is pending any more: the page stops asking.
        before = len(asked)
        page.wait_for_timeout(3000)
        assert len(asked) == before, asked
        visits.check("alerts-failed")
    finally:
        worker.stop()
    # A reload reads as the page read.
    after = rows_of(page.locator("#recent-alerts").evaluate("table => table.outerHTML"))
    page.reload()
    assert rows_of(page.locator("#recent-alerts").evaluate("table => table.outerHTML")) == after


def test_the_page_stops_asking_while_hidden_and_shows_new_alerts_at_the_top(lab, browser, monkeypatch):
    _, base = lab
    monkeypatch.setattr(alerts_page, "POLL_SECONDS", 0.5)
    alice = Team.objects.get(name="Mail team").members.get()
    chat = AlertChannel.objects.create(
        team=alice.teams.get(), name="Chat", kind="webhook", target="http://127.0.0.1:9/"
    )
    flush_broker()
    first = send_test_alert(chat, alice)  # no worker takes it: pending, until the test says otherwise
    visits = Abroad(browser, base, DESKTOP).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/alerts/")
    asked = asked_for_rows(page)
    cell = page.locator(f"#alert-{first.pk} {CELL}")
    assert cell.inner_text() == "Chat: pending (try 1 of 6)"
    wait_in(page, lambda: len(asked) >= 2, 10, "the page does not ask while a delivery is pending")

    # One date format, UTC, with the reader's local time on hover (India: UTC+05:30).
    when = page.locator(f"#alert-{first.pk} td[data-label=When] time")
    created = first.created.astimezone(datetime.UTC)
    assert when.inner_text() == created.strftime("%Y-%m-%d %H:%M UTC")
    assert when.get_attribute("datetime") == created.strftime("%Y-%m-%dT%H:%M:%SZ")
    local = created + datetime.timedelta(hours=5, minutes=30)
    assert when.get_attribute("title") == (f"{local:%d/%m/%Y, %H:%M:%S} your time ({created:%Y-%m-%d %H:%M:%S} UTC)"), (
        when.get_attribute("title")
    )

    # Hidden, it asks no more.
    page.evaluate(
        """() => { Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
                   document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    page.wait_for_timeout(600)  # an answer under way may still come
    before = len(asked)
    page.wait_for_timeout(2000)
    assert len(asked) == before, asked

    # Meanwhile the delivery was sent, and another alert came: seen again at once, the new alert on
    # top, both said to a screen reader.
    AlertDelivery.objects.filter(alert=first).update(status="sent", attempts=2, sent_at=timezone.now())
    second = send_test_alert(chat, alice)
    page.evaluate(
        """() => { Object.defineProperty(document, "visibilityState", {value: "visible", configurable: true});
                   document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    page.locator(f"#alert-{second.pk}").wait_for(timeout=5000)
    assert cell.inner_text() == "Chat: sent after 2 tries"
    ids = page.locator("tbody tr[data-alert]").evaluate_all("rows => rows.map(row => row.dataset.alert)")
    assert ids == [str(second.pk), str(first.pk)]
    said = page.locator("#alert-news").inner_text()
    assert said == f"New alert: {second.subject}. Delivery to Chat sent after 2 tries."
    # The new alert's time is localized too, once swapped in.
    assert "your time" in page.locator(f"#alert-{second.pk} time").get_attribute("title")
    visits.check("alerts-new-alert")

    # The second is still pending: the page goes on asking, then stops once it is sent.
    wait_in(page, lambda: len(asked) >= before + 2, 10, "the page stopped asking while a delivery is pending")
    AlertDelivery.objects.filter(alert=second).update(status="sent", attempts=1, sent_at=timezone.now())
    page.locator(f"#alert-{second.pk} {CELL}", has_text="Chat: sent").wait_for(timeout=5000)
    assert page.locator("#alert-news").inner_text() == "Delivery to Chat sent."
    page.wait_for_timeout(600)
    before = len(asked)
    page.wait_for_timeout(1500)
    assert len(asked) == before, asked
    flush_broker()  # the test alerts' delivery tasks: no worker here takes them


def test_the_rows_endpoint_is_the_pages_rows_of_your_teams_only_and_needs_a_login(db):
    alice = make_member("alice", "Mail team")
    bob = make_member("bob", "Other team")
    mine = AlertChannel.objects.create(
        team=alice.teams.get(), name="Chat", kind="webhook", target="http://127.0.0.1:9/"
    )
    theirs = AlertChannel.objects.create(
        team=bob.teams.get(), name="Bob's", kind="webhook", target="http://127.0.0.1:9/"
    )
    # In a test's transaction, nothing is sent to a worker: the deliveries stay pending.
    my_alert, their_alert = send_test_alert(mine, alice), send_test_alert(theirs, bob)
    # Its third try is due on another day (UTC): the cell says the date too.
    yesterday = (timezone.now() - datetime.timedelta(days=1)).astimezone(datetime.UTC).replace(microsecond=0)
    AlertDelivery.objects.filter(alert=my_alert).update(
        attempts=2, last_error="HTTP 500 from receiver", next_attempt_at=yesterday
    )

    client = Client()
    client.force_login(alice)
    page = rows_of(client.get("/alerts/").content.decode())
    response = client.get(ROWS_URL)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    rows = rows_of(response.content.decode())
    assert rows == page and list(rows) == [str(my_alert.pk)]
    assert f'retrying, next try at <time datetime="{yesterday:%Y-%m-%dT%H:%M:%SZ}"' in rows[str(my_alert.pk)]
    assert f">{yesterday:%Y-%m-%d %H:%M:%S} UTC</time> (try 3 of 6); the last one: HTTP 500" in rows[str(my_alert.pk)]

    other = Client()
    other.force_login(bob)
    assert list(rows_of(other.get(ROWS_URL).content.decode())) == [str(their_alert.pk)]
    loner = Client()
    loner.force_login(make_member("carol", "Third team"))
    assert loner.get(ROWS_URL).content.strip() == b""
    anonymous = Client().get(ROWS_URL)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/accounts/login/")


def test_one_date_format_for_every_page():
    """{% when %}: the portal's one way to write a moment."""
    moment = datetime.datetime(2026, 12, 3, 14, 32, 10, tzinfo=datetime.UTC)
    berlin = moment.astimezone(datetime.timezone(datetime.timedelta(hours=1)))

    def render(source: str, **context: object) -> str:
        return Template("{% load portal_tags %}" + source).render(Context(context))

    expected = '<time datetime="2026-12-03T14:32:10Z" title="2026-12-03 14:32:10 UTC">2026-12-03 14:32 UTC</time>'
    assert render("{% when value %}", value=moment) == expected
    assert render("{% when value %}", value=berlin) == expected  # whatever zone it came in
    assert render("{% when value %}", value=moment.replace(tzinfo=None)) == expected  # naive is UTC
    # The time of day to the second, with its date when that is not today.
    a_year_ago = moment.replace(year=timezone.now().year - 1)
    assert render('{% when value "time" %}', value=a_year_ago).endswith(f">{a_year_ago:%Y-%m-%d} 14:32:10 UTC</time>")
    now = timezone.now().replace(microsecond=0)
    assert render('{% when value "time" %}', value=now).endswith(f">{now:%H:%M:%S} UTC</time>")
    assert render("{% when value %}", value=None) == ""
