"""The change requests' pages: a deployment's list of requests and a request's own page, with its
CAB fields, its rules and their latest probes, its record and one form per step the user may take.
Only the team's members see them (404 for the others); a viewer reads and takes no step (403); a
refused step says why and changes nothing; a page costs the same queries however many rules and
steps it shows. Then in Chromium at three widths: an editor drafts a request from two rules of the
checklist, submits it, an approver approves it, the editor marks it implemented and sees the
rules that hold it back from verified."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ports.choices import RequestAction, RequestState, TeamRole
from ports.models import ChangeRequest, ChecklistItem, Deployment, Membership, RequestTransition

from .conftest import ARTIFACTS, make_member, recorded_run, signed_in
from .probe_worker import flush_broker
from .test_browser import pytestmark as browser_marks
from .test_pages import PHONE, TABLET, Visits

DESKTOP = {"width": 1280, "height": 800}


def in_chromium(test: Callable) -> Callable:
    """The browser tests' marks (Chromium and Redis), on this module's browser test alone."""
    for mark in browser_marks:
        test = mark(test)
    return test


def rules_of(deployment: Deployment, count: int) -> list[ChecklistItem]:
    return list(deployment.checklist.select_related("requirement").order_by("number", "pk")[:count])


def drafted(deployment: Deployment, user: object, count: int = 2, **fields: object) -> ChangeRequest:
    fields = {"title": "Open the DNS rules", **fields}
    return ChangeRequest.draft(deployment, user, rules_of(deployment, count), **fields)


@pytest.fixture
def approver(deployment) -> object:
    return make_member("ann", "Mail team", TeamRole.APPROVER)


def step_forms(html: str, change_request: ChangeRequest) -> list[str]:
    """The steps the page offers, by the action its form posts to."""
    prefix = f'action="/requests/{change_request.pk}/'
    return [part.split("/", 1)[0] for part in html.split(prefix)[1:]]


def test_the_list_shows_the_deployments_requests_newest_first_linked_from_the_checklist(deployment, user):
    older = drafted(deployment, user, title="First", reference="CHG-1")
    newer = drafted(deployment, user, count=3, title="Second")
    newer.take(RequestAction.SUBMIT, user)
    client = signed_in(user)
    checklist = client.get(f"/deployments/{deployment.pk}/").content.decode()
    assert f'href="/deployments/{deployment.pk}/requests/">Change requests</a>' in checklist
    assert 'id="open-draft"' in checklist and 'id="draft-dialog"' in checklist
    page = client.get(f"/deployments/{deployment.pk}/requests/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index(f'href="/requests/{newer.pk}/">CR-{newer.pk}: Second') < html.index(f"CR-{older.pk}: First")
    assert "CHG-1" in html and ">Submitted<" in html and ">Draft<" in html
    assert '<td data-label="Rules">3</td>' in html and '<td data-label="Rules">2</td>' in html


def test_a_request_shows_its_fields_rules_probes_record_and_the_users_steps(deployment, user, approver):
    first, _ = rules_of(deployment, 2)
    recorded_run(deployment, [(first, "open")])
    change_request = drafted(
        deployment, user, reference="CHG-7", justification="New gateways", requested_date="2030-01-02"
    )
    change_request.refresh_from_db()
    change_request.take(RequestAction.SUBMIT, user, "Ready for the CAB")
    html = signed_in(user).get(f"/requests/{change_request.pk}/").content.decode()
    assert f"CR-{change_request.pk}: Open the DNS rules" in html
    assert '<strong id="request-state" class="state-badge tone-none">Submitted</strong>' in html
    assert "<dt>Reference</dt><dd>CHG-7</dd>" in html and "<dd>2030-01-02</dd>" in html
    assert f'<td data-label="Rule" class="number">{first.number}</td>' in html
    assert '<span class="state tone-good">Open</span>' in html  # the first rule's latest probe
    assert '<span class="state tone-none">never probed</span>' in html  # the second's
    assert "by alice (draft → submitted): “Ready for the CAB”" in html
    # alice drafted and submitted it: four eyes leave her no step, and the page says whose it is.
    assert step_forms(html, change_request) == []
    assert "Next: Approve or Reject (an approver other than who requested or submitted it)." in html
    assert step_forms(signed_in(approver).get(f"/requests/{change_request.pk}/").content.decode(), change_request) == [
        "approve",
        "reject",
    ]


def test_a_rule_whose_item_went_keeps_its_drafted_line(deployment, user):
    change_request = drafted(deployment, user)
    gone = change_request.items.order_by("number").first()
    ChecklistItem.objects.filter(pk=gone.pk).delete()
    html = signed_in(user).get(f"/requests/{change_request.pk}/").content.decode()
    assert f'<td data-label="Rule" class="number">{gone.number}</td>' in html
    assert "No longer in the checklist" in html


def test_the_pages_cost_the_same_queries_however_many_rules_steps_and_requests(deployment, user, approver):
    def queries(url: str, as_user: object) -> int:
        client = signed_in(as_user)
        client.get(url)  # the session's first read aside
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    def implemented(count: int) -> ChangeRequest:
        change_request = drafted(deployment, user, count=count)
        change_request.take(RequestAction.SUBMIT, user)
        change_request.take(RequestAction.APPROVE, approver, "Fine")
        change_request.take(RequestAction.IMPLEMENT, user)
        return change_request

    small, large = implemented(2), implemented(30)
    items = rules_of(deployment, 30)
    recorded_run(deployment, [(item, "open") for item in items[:10]] + [(item, "filtered") for item in items[10:20]])
    for n in range(6):  # more steps in its record than the path has
        RequestTransition.objects.create(
            request=large, action=RequestAction.SUBMIT, from_state="draft", to_state="submitted", comment=f"{n}"
        )
    for as_user in (user, approver):
        assert queries(f"/requests/{small.pk}/", as_user) == queries(f"/requests/{large.pk}/", as_user)
    few = queries(f"/deployments/{deployment.pk}/requests/", user)
    for _ in range(5):
        drafted(deployment, user, count=4)
    assert queries(f"/deployments/{deployment.pk}/requests/", user) == few


def test_another_team_gets_404_and_an_unknown_step_404(deployment, user):
    change_request = drafted(deployment, user)
    outsider = signed_in(make_member("mallory", "Other team"))
    assert outsider.get(f"/deployments/{deployment.pk}/requests/").status_code == 404
    assert outsider.get(f"/requests/{change_request.pk}/").status_code == 404
    assert outsider.post(f"/requests/{change_request.pk}/submit/").status_code == 404
    assert signed_in(user).post(f"/requests/{change_request.pk}/frobnicate/").status_code == 404
    assert signed_in(user).get(f"/requests/{change_request.pk}/submit/").status_code == 405
    change_request.refresh_from_db()
    assert change_request.state == RequestState.DRAFT and not change_request.transitions.exists()


def test_a_viewer_reads_a_request_and_takes_no_step(deployment, user):
    change_request = drafted(deployment, user)
    viewer = signed_in(make_member("vic", "Mail team", TeamRole.VIEWER))
    html = viewer.get(f"/requests/{change_request.pk}/").content.decode()
    assert step_forms(html, change_request) == [] and "<button" not in html.split("<main")[1]
    assert "You are a viewer in team Mail team: you read this request" in html
    refused = viewer.post(f"/requests/{change_request.pk}/submit/", {"comment": "mine"})
    assert refused.status_code == 403
    assert "This needs the role editor in team Mail team: you are a viewer." in refused.content.decode()
    change_request.refresh_from_db()
    assert change_request.state == RequestState.DRAFT and not change_request.transitions.exists()
    # The checklist's draft button sits in the fieldset a viewer's page disables.
    checklist = viewer.get(f"/deployments/{deployment.pk}/").content.decode()
    disabled = checklist.split('<fieldset class="plain" disabled>')[1].split("</fieldset>")[0]
    assert 'id="open-draft"' in disabled


def test_a_rejection_without_a_comment_is_refused_next_to_its_field_and_changes_nothing(deployment, user, approver):
    change_request = drafted(deployment, user)
    change_request.take(RequestAction.SUBMIT, user)
    client = signed_in(approver)
    answer = client.post(f"/requests/{change_request.pk}/reject/", {"comment": "   "})
    assert answer.status_code == 400
    html = answer.content.decode()
    assert '<span class="error" id="error-reject" role="alert">Say why it is rejected (comment).</span>' in html
    assert 'aria-describedby="hint-reject error-reject"' in html
    too_long = client.post(f"/requests/{change_request.pk}/reject/", {"comment": "x" * 2001})
    assert too_long.status_code == 400 and "at most 2000 characters" in too_long.content.decode()
    change_request.refresh_from_db()
    assert change_request.state == RequestState.SUBMITTED and change_request.transitions.count() == 1
    taken = client.post(f"/requests/{change_request.pk}/reject/", {"comment": "Too wide"}, follow=True)
    assert taken.redirect_chain == [(f"/requests/{change_request.pk}/", 302)]
    assert f"CR-{change_request.pk}: Open the DNS rules: rejected." in taken.content.decode()
    change_request.refresh_from_db()
    assert change_request.state == RequestState.REJECTED
    assert change_request.transitions.last().comment == "Too wide"


def test_a_step_the_state_no_longer_allows_says_why_and_one_four_eyes_forbid_is_403(deployment, user, approver):
    change_request = drafted(deployment, user)
    change_request.take(RequestAction.SUBMIT, user)
    signed_in(approver).post(f"/requests/{change_request.pk}/approve/", {"comment": "Fine"})
    # A second approver's page was loaded before: its approval comes too late.
    late = signed_in(make_member("abe", "Mail team", TeamRole.APPROVER)).post(
        f"/requests/{change_request.pk}/approve/", {"comment": "Me too"}
    )
    assert late.status_code == 409
    assert "A request that is approved cannot be taken to approved." in late.content.decode()
    # Four eyes: who submitted a request does not approve it, however high their role.
    Membership.objects.filter(user=user).update(role=TeamRole.ADMIN)
    other = drafted(deployment, user)
    other.take(RequestAction.SUBMIT, user)
    forbidden = signed_in(user).post(f"/requests/{other.pk}/approve/")
    assert forbidden.status_code == 403 and b"Four eyes" in forbidden.content
    other.refresh_from_db()
    assert other.state == RequestState.SUBMITTED


def test_an_implemented_request_names_the_rules_that_hold_it_back(deployment, user, approver):
    change_request = drafted(deployment, user)
    first, second = change_request.items.order_by("number")
    recorded_run(deployment, [(first, "open")])
    change_request.take(RequestAction.SUBMIT, user)
    change_request.take(RequestAction.APPROVE, approver)
    change_request.take(RequestAction.IMPLEMENT, user)
    html = signed_in(user).get(f"/requests/{change_request.pk}/").content.decode()
    assert ">Implemented</strong>" in html
    assert f'<ul id="held"><li>Rule {second.number}: never probed</li></ul>' in html
    # Verifying waits for its rules: no button while one holds it back, and a POST is refused.
    assert step_forms(html, change_request) == [] and "It is verified once every rule below probes open" in html
    refused = signed_in(user).post(f"/requests/{change_request.pk}/verify/")
    assert refused.status_code == 409 and "do not probe open" in refused.content.decode()
    assert change_request.probe_runs.count() == 1 and "Probe run" in html
    # Waived, the rule holds it back no more: verified by a person.
    second.change_status("waived", user, comment="Not used here")
    html = signed_in(user).get(f"/requests/{change_request.pk}/").content.decode()
    assert step_forms(html, change_request) == ["verify"] and "Nothing: every rule probes open" in html
    signed_in(user).post(f"/requests/{change_request.pk}/verify/")
    change_request.refresh_from_db()
    assert change_request.state == RequestState.VERIFIED


@in_chromium
@pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])
def test_a_request_is_drafted_submitted_approved_and_implemented_in_the_browser(lab, browser, viewport):
    deployment, base = lab
    make_member("ann", "Mail team", TeamRole.APPROVER)
    width = viewport["width"]
    alice = Visits(browser, base, viewport).logged_in("alice")
    page = alice.page
    page.goto(f"{base}/deployments/{deployment.pk}/")
    picks = page.locator("#rows input.pick")
    picks.nth(0).check()
    picks.nth(1).check()
    numbers = [
        int(n)
        for n in page.locator("#rows tr[data-item]").evaluate_all("rows => rows.slice(0, 2).map(r => r.dataset.number)")
    ]
    page.get_by_role("button", name="Draft a change request").click()
    dialog = page.get_by_role("dialog", name="Draft a change request")
    assert dialog.get_by_text("Of the 2 rules ticked on this page").is_visible()
    # No title: the API's message, next to its field.
    dialog.get_by_role("button", name="Draft it").click()
    error = page.locator("#draft-title-error")
    error.wait_for()
    assert error.inner_text() == "This field is required."
    assert dialog.get_by_label("Title").get_attribute("aria-invalid") == "true"
    alice.check("request-draft-dialog")
    page.screenshot(path=ARTIFACTS / f"request-draft-dialog-screen-{width}.png")  # what the phone's screen shows
    dialog.get_by_label("Title").fill("Open DNS for the new gateways")
    dialog.get_by_label("Change reference").fill("CHG-2042")
    dialog.get_by_role("button", name="Draft it").click()
    page.wait_for_url(f"{base}/requests/*/")
    change_request = ChangeRequest.objects.get(title="Open DNS for the new gateways")
    assert sorted(rule["number"] for rule in change_request.rules) == sorted(numbers)
    assert change_request.reference == "CHG-2042" and change_request.requested_by.username == "alice"
    state = page.locator("#request-state")
    assert state.inner_text() == "Draft"
    alice.check("request-draft")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.get_by_text(f"CR-{change_request.pk}: Open DNS for the new gateways: submitted.").wait_for()
    assert state.inner_text() == "Submitted"
    alice.check("request-submitted")

    # Another member, an approver, approves it with a comment typed into its field.
    ann = Visits(browser, base, viewport).logged_in("ann")
    ann.visit(f"/requests/{change_request.pk}/", "request-to-approve")
    ann.page.get_by_label("Comment to approve").fill("Approved by the CAB of Tuesday")
    ann.page.get_by_role("button", name="Approve", exact=True).click()
    ann.page.get_by_text("approved.").wait_for()
    assert ann.page.locator("#request-state").inner_text() == "Approved"
    assert "by ann (submitted → approved): “Approved by the CAB of Tuesday”" in ann.page.locator("#record").inner_text()
    ann.check("request-approved")
    ann.page.close()

    # alice marks it implemented: its rules are probed, and with no probe worker here none is
    # probed yet, so both hold it back from verified.
    page.reload()
    page.get_by_role("button", name="Mark implemented").click()
    page.get_by_text(": implemented.").wait_for()
    assert state.inner_text() == "Implemented"
    held = page.locator("#held li").all_inner_texts()
    assert held == [f"Rule {number}: never probed" for number in sorted(numbers)]
    assert page.locator("#runs li").count() == 1
    alice.check("request-implemented")
    assert page.locator("html").evaluate("e => e.scrollWidth") <= width

    alice.visit(f"/deployments/{deployment.pk}/requests/", "requests")
    assert page.get_by_role("link", name=f"CR-{change_request.pk}: Open DNS for the new gateways").is_visible()
    page.close()
    flush_broker()
