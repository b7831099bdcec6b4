"""The team hears of its change requests: each step (submitted, approved, rejected, implemented,
verified) reaches the channels that carry change requests, and only those; a request whose
temporary rules expire soon is announced once, with its rollback drafted."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from ports.choices import RequestAction, RequestState, TeamRole
from ports.models import ChangeRequest, Membership
from probes.choices import AlertKind
from probes.models import Alert, AlertChannel, AlertDelivery
from probes.tasks import warn_expiring_requests

from .conftest import create_deployment, make_member, token_client
from .test_browser import pytestmark as browser_marks
from .test_pages import DESKTOP, PHONE, TABLET, Visits


@pytest.fixture
def crew(catalog, full_document):
    """A deployment of the Mail team, alice its editor and bob its approver, and two channels:
    one for change requests only, one for every alert."""
    alice = make_member("alice", "Mail team")
    bob = make_member("bob", "Mail team")
    Membership.objects.filter(user=bob).update(role=TeamRole.APPROVER)
    deployment = create_deployment(full_document)
    team = deployment.team
    AlertChannel.objects.create(
        team=team, name="CAB", kind="email", target="cab@example.test", kinds=["change_request"]
    )
    AlertChannel.objects.create(team=team, name="Ops", kind="email", target="ops@example.test")
    return deployment, alice, bob


def drafted(deployment, user, **fields) -> ChangeRequest:
    items = list(deployment.checklist.select_related("requirement").order_by("number")[:2])
    return ChangeRequest.draft(deployment, user, items, title="Open DNS for the relay", **fields)


def test_each_step_reaches_the_channels_that_carry_change_requests(crew):
    deployment, alice, bob = crew
    request = drafted(deployment, alice)
    request.take(RequestAction.SUBMIT, alice)
    request.take(RequestAction.APPROVE, bob, "CAB-42: fine")
    alerts = Alert.objects.filter(kind=AlertKind.CHANGE_REQUEST).order_by("pk")
    assert [a.subject for a in alerts] == [
        f"{deployment.name}: CR-{request.pk}: Open DNS for the relay is submitted (alice)",
        f"{deployment.name}: CR-{request.pk}: Open DNS for the relay is approved (bob)",
    ]
    approved = alerts.last()
    assert "Rules: 1, 2." in approved.body and "bob: CAB-42: fine" in approved.body
    assert "mark it implemented" in approved.body
    assert approved.details == {
        "request": request.pk,
        "step": "approve",
        "state": "approved",
        "by": "bob",
        "comment": "CAB-42: fine",
    }
    # Both channels carry it: CAB chose change requests, Ops every kind.
    assert set(AlertDelivery.objects.filter(alert=approved).values_list("channel__name", flat=True)) == {"CAB", "Ops"}


def test_a_channel_that_chose_change_requests_hears_nothing_else(crew):
    deployment, *_ = crew
    Alert.raise_for(deployment.team_id, AlertKind.RUN_FAILED, "run failed", "text", deployment=deployment)
    assert list(AlertDelivery.objects.values_list("channel__name", flat=True)) == ["Ops"]


def test_channels_choose_their_kinds_through_the_api(crew):
    _, alice, _ = crew
    api = token_client(alice)
    body = {
        "name": "Approvals",
        "kind": "email",
        "target": "approvals@example.test",
        "kinds": ["expiring", "change_request"],
    }
    created = api.post("/api/alert-channels/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["kinds"] == ["change_request", "expiring"]
    again = api.post("/api/alert-channels/", body, format="json")  # the same channel again
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")
    refused = api.post("/api/alert-channels/", {**body, "name": "X", "kinds": ["gossip"]}, format="json")
    assert refused.status_code == 400 and "kinds" in refused.json()


def test_expiring_rules_are_announced_once_with_their_rollback_drafted(crew, settings):
    deployment, alice, bob = crew
    settings.REQUEST_EXPIRY_WARNING_DAYS = 7
    soon = timezone.localdate() + datetime.timedelta(days=5)
    later = timezone.localdate() + datetime.timedelta(days=30)
    expiring, lasting, draft = (drafted(deployment, alice, expiry=when) for when in (soon, later, soon))
    for request in (expiring, lasting):
        request.take(RequestAction.SUBMIT, alice)
        request.take(RequestAction.APPROVE, bob)
        request.take(RequestAction.IMPLEMENT, alice)
    assert warn_expiring_requests() == 1
    assert warn_expiring_requests() == 0  # once
    rollback = ChangeRequest.objects.get(rollback_of=expiring)
    assert rollback.state == RequestState.DRAFT and rollback.requested_by is None
    assert [rule["number"] for rule in rollback.rules] == [rule["number"] for rule in expiring.rules]
    assert rollback.title == f"Rollback of CR-{expiring.pk}: Open DNS for the relay"
    assert rollback.requested_date == soon
    alert = Alert.objects.get(kind=AlertKind.EXPIRING)
    assert alert.subject == f"{deployment.name}: the rules of CR-{expiring.pk}: Open DNS for the relay expire on {soon}"
    assert f"The rollback is drafted as CR-{rollback.pk}" in alert.body
    assert not ChangeRequest.objects.filter(rollback_of__in=[lasting, draft]).exists()


@pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])
def test_a_channel_for_the_cab_is_chosen_in_the_browser(lab, browser, viewport):
    """The alerts page: a channel that carries change requests only, ticked as a person does."""
    visits = Visits(browser, lab[1], viewport).logged_in("alice")
    page = visits.page
    page.goto(f"{lab[1]}/alerts/")
    visits.check("alerts-kinds")
    page.select_option("select[name=team]", label="Mail team")
    page.fill("input[name=name]", "CAB")
    page.select_option("select[name=kind]", "email")
    page.fill("input[name=target]", "cab@example.test")
    page.get_by_label("A change request took a step").check()
    page.get_by_label("A change request's rules expire soon").check()
    page.get_by_role("button", name="Add channel").click()
    page.get_by_text("Channel CAB added").wait_for()
    channel = AlertChannel.objects.get(name="CAB")
    assert channel.kinds == ["change_request", "expiring"]
    row = page.get_by_role("row", name="CAB")
    assert "A change request took a step, A change request's rules expire soon" in row.inner_text()
    visits.check("alerts-kinds-added")
    page.close()


for _mark in browser_marks:
    test_a_channel_for_the_cab_is_chosen_in_the_browser = _mark(test_a_channel_for_the_cab_is_chosen_in_the_browser)
