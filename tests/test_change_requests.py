"""Change requests through the API, as a provisioning script drafts them and a change advisory
board takes them: draft, submit, four-eyes approval, implement (a probe run of exactly its rules),
verified when that run finds them open (by the portal itself) and closed; each step with who, when
and why, in the request's record and in the change log; the steps each role may take at each state;
other teams see nothing. Then the request's PDF, read back with a real PDF parser, and one run
through a real probe worker against loopback listeners."""

from __future__ import annotations

import copy
import io
import re
from datetime import UTC

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pypdf import PdfReader
from rest_framework.test import APIClient

from ports.choices import TeamRole
from ports.models import ChangeRequest, ChecklistItem, Deployment, Membership, StatusChange, Team
from probes.models import ProbeRun, WorkerHeartbeat
from probes.responders import Listeners

from .conftest import FULL_DEPLOYMENT, api_key, create_deployment, recorded_run, token_client
from .probe_worker import Worker, flush_broker, needs_redis
from .test_schema import Client as SchemaCheckingClient
from .waiting import wait_until

FOUR_EYES = "Four eyes: someone other than who requested or submitted it approves or rejects it."
ROLE_APPROVER = "This needs the role approver in team Mail team: "
DRAFT = {
    "title": "Open the mail gateways' database and directory",
    "reference": "CHG-4711",
    "justification": "New mail gateways in DC1",
    "requested_date": "2026-12-10",
    "expiry": "2027-12-10",
    "rollback": "Remove the three rules.",
}


def written(body: dict, outcome: str) -> dict:
    """A write's answer less its `outcome`, which must be `outcome`."""
    assert body.pop("outcome") == outcome, body
    return body


def member(username: str, role: str, team: str = "Mail team") -> object:
    """A member of `team` with `role`. Without a password: they use tokens, and hashing one takes
    most of a second (make_member's), six times a test."""
    user = get_user_model().objects.create(username=username)
    Team.objects.get_or_create(name=team)[0].members.add(user)
    Membership.objects.filter(user=user).update(role=role)
    return user


class Cab:
    """The Mail team: vic views, ed and eve edit, ann and abe approve, ada is the team's admin;
    each with a token client (`clients[name]`)."""

    ROLES = {
        "vic": TeamRole.VIEWER,
        "ed": TeamRole.EDITOR,
        "eve": TeamRole.EDITOR,
        "ann": TeamRole.APPROVER,
        "abe": TeamRole.APPROVER,
        "ada": TeamRole.ADMIN,
    }

    def __init__(self) -> None:
        self.users = {name: member(name, role) for name, role in self.ROLES.items()}
        self.clients = {name: token_client(user) for name, user in self.users.items()}

    def __getitem__(self, name: str) -> APIClient:
        return self.clients[name]

    def draft(self, name: str, deployment: Deployment, items: list[ChecklistItem], **fields: object) -> dict:
        """The draft as its POST answers it, less the write's `outcome` (created, as its header says)."""
        body = {**DRAFT, **fields, "items": [item.pk for item in items]}
        response = self[name].post(f"/api/deployments/{deployment.pk}/requests/", body, format="json")
        assert response.status_code == 201, response.content
        assert response["Outcome"] == "created"
        return written(response.json(), "created")

    def step(self, name: str, pk: int, action: str, comment: str | None = None, expect: int = 200) -> dict:
        """The request as the step answers it (less its `outcome`, updated), or the refusal."""
        body = {} if comment is None else {"comment": comment}
        response = self[name].post(f"/api/requests/{pk}/{action}/", body, format="json")
        assert response.status_code == expect, (name, action, response.content)
        if expect != 200:
            assert "Outcome" not in response
            return response.json()
        assert response["Outcome"] == "updated"
        return written(response.json(), "updated")

    def actions(self, pk: int) -> dict[str, list[str]]:
        """The steps each member may take on the request now, as the API tells each of them."""
        return {name: client.get(f"/api/requests/{pk}/").json()["actions"] for name, client in self.clients.items()}


@pytest.fixture
def cab(catalog) -> Cab:
    return Cab()


@pytest.fixture
def deployment(cab, full_document) -> Deployment:
    return create_deployment(full_document)


@pytest.fixture
def live_default_site(db) -> None:
    """A heartbeat of site `default` with no worker behind it: an implemented request's run stays
    open for the results the test records (without one, its rules are not probed at once)."""
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="ghost@nowhere", site="default", started=now, last_seen=now)


def three_rules(deployment: Deployment) -> list[ChecklistItem]:
    """Three rules of three requirements (and numbers), each probed from site `default` (the
    appliances' own)."""
    items, seen = [], set()
    for item in deployment.checklist.filter(source_site="default").select_related("requirement").order_by("number"):
        if not {item.number, item.requirement_id} & seen:
            items.append(item)
            seen |= {item.number, item.requirement_id}
    return items[:3]


def log_of(api: APIClient, pk: int) -> list[dict]:
    """The change log's entries of one request, oldest first."""
    response = api.get("/api/changes/", {"object_type": "change_request", "object_id": pk, "limit": 100})
    assert response.status_code == 200, response.content
    return response.json()["results"][::-1]


def outcomes(run: ProbeRun, states: dict[ChecklistItem, str]) -> None:
    """The results of the request's own run, as a site worker sends them to the recorder."""
    found = {item.pk: {"state": state, "summary": f"{state} in test"} for item, state in states.items()}
    assert ProbeRun.record(run.pk, "w@default", found) == len(states)


# --- The life of a request -----------------------------------------------------------------


def test_a_request_goes_from_draft_through_four_eyes_to_verified_by_its_run_and_closed(
    cab, deployment, live_default_site
):
    items = three_rules(deployment)
    numbers = [item.number for item in items]
    drafted = cab.draft("ed", deployment, items)
    pk = drafted["id"]
    assert drafted.items() >= {**DRAFT, "state": "draft", "requested_by": "ed", "deployment": deployment.pk}.items()
    assert [rule["number"] for rule in drafted["rules"]] == numbers
    assert drafted["rules"][0].keys() == {"number", "source", "destination", "ports", "protocol", "description"}
    assert drafted["transitions"] == [] and drafted["probe_runs"] == [] and drafted["actions"] == ["submit"]
    read = cab["ed"].get(f"/api/requests/{pk}/").json()
    assert read == drafted
    assert [found["id"] for found in cab["vic"].get("/api/requests/").json()["results"]] == [pk]
    assert [
        found["id"] for found in cab["vic"].get(f"/api/deployments/{deployment.pk}/requests/").json()["results"]
    ] == [pk]
    editors = {"ed": ["submit"], "eve": ["submit"], "ann": ["submit"], "abe": ["submit"], "ada": ["submit"]}
    assert cab.actions(pk) == {"vic": [], **editors}

    # A viewer takes no step; the draft is submitted by who drafted it.
    refused = cab.step("vic", pk, "submit", expect=403)
    assert refused["detail"] == "This needs the role editor in team Mail team: you are a viewer."
    cab.step("ed", pk, "submit")
    assert cab.actions(pk) == {
        "vic": [],
        "ed": [],
        "eve": [],
        "ann": ["approve", "reject"],
        "abe": ["approve", "reject"],
        "ada": ["approve", "reject"],
    }

    # Nobody approves their own request: the editor lacks the role anyway, the viewer too.
    # (The article of "a editor" is the model's: reported, not asserted.)
    assert cab.step("ed", pk, "approve", expect=403)["detail"].startswith(ROLE_APPROVER + "you are a")
    assert cab.step("vic", pk, "approve", expect=403)["detail"] == ROLE_APPROVER + "you are a viewer."
    # ... and once ed is an approver, four eyes still refuse it.
    Membership.objects.filter(user=cab.users["ed"]).update(role=TeamRole.APPROVER)
    assert cab.step("ed", pk, "approve", "mine", expect=403)["detail"] == FOUR_EYES
    assert cab.step("ed", pk, "reject", "mine", expect=403)["detail"] == FOUR_EYES
    assert cab["ed"].get(f"/api/requests/{pk}/").json()["actions"] == []
    Membership.objects.filter(user=cab.users["ed"]).update(role=TeamRole.EDITOR)

    # A rejection says why: without a comment it is a 400, and nothing changes.
    entries = len(log_of(cab["ann"], pk))
    assert cab.step("ann", pk, "reject", expect=400)["detail"] == "Say why it is rejected (comment)."
    assert cab.step("ann", pk, "reject", "  ", expect=400)["detail"] == "Say why it is rejected (comment)."
    unchanged = cab["ann"].get(f"/api/requests/{pk}/").json()
    assert unchanged["state"] == "submitted" and len(unchanged["transitions"]) == 1
    assert len(log_of(cab["ann"], pk)) == entries

    approved = cab.step("ann", pk, "approve", "CAB-42 ok")
    assert approved["state"] == "approved"
    # Before it is implemented, the rules that would hold back its verification are named already.
    assert approved["holding_back"] == [{"number": number, "why": "never probed"} for number in numbers]
    assert cab.actions(pk) == {
        "vic": [], "ed": ["implement"], "eve": ["implement"], "ann": ["implement"], "abe": ["implement"],
        "ada": ["implement"],
    }  # fmt: skip

    # Steps out of order are conflicts with the state, which the answer names.
    for action, target in [
        ("submit", "submitted"),
        ("approve", "approved"),
        ("verify", "verified"),
        ("close", "closed"),
    ]:
        refused = cab.step("ada", pk, action, "out of order", expect=409)
        assert refused["detail"] == f"A request that is approved cannot be taken to {target}.", action
    # A step the user may never take is refused for the role first, whatever the state.
    assert cab.step("vic", pk, "close", expect=403)["detail"].startswith("This needs the role editor")
    assert cab.step("ed", pk, "reject", "late", expect=403)["detail"].startswith(ROLE_APPROVER)

    # Implemented: a probe run of exactly its rules starts, for the request.
    implemented = cab.step("ed", pk, "implement", "Rules 1-3 in at 09:00")
    assert implemented["state"] == "implemented"
    (run,) = ProbeRun.objects.filter(deployment=deployment)
    assert implemented["probe_runs"] == [run.pk] and run.change_request_id == pk
    assert run.pending == {"default": sorted(item.pk for item in items)} and run.total == 3
    assert run.requested_by == cab.users["ed"]
    # Nobody is offered "verify" while its rules hold it back; a verify sent anyway says why.
    assert cab.actions(pk) == {name: [] for name in ("vic", "ed", "eve", "ann", "abe", "ada")}

    # Verified only when its rules probe open: never probed, they hold it back, each named.
    held = cab.step("ed", pk, "verify", expect=409)
    assert held["holding_back"] == [{"number": number, "why": "never probed"} for number in numbers]
    assert held["detail"].startswith("Not verified: 3 of its rules do not probe open (rule ")

    # The run finds them open: the portal verifies the request itself.
    outcomes(run, dict.fromkeys(items, "open"))
    verified = cab["ed"].get(f"/api/requests/{pk}/").json()
    assert verified["state"] == "verified" and verified["holding_back"] == []
    last = verified["transitions"][-1]
    assert last.items() >= {"action": "verify", "from_state": "implemented", "to_state": "verified", "user": ""}.items()
    assert last["comment"] == f"Every rule probed open in probe run {run.pk}."
    assert cab.actions(pk) == {"vic": [], **{name: ["close"] for name in ("ed", "eve", "ann", "abe", "ada")}}

    # The checklist followed the request: each step moved its rules on, and said so in their history.
    statuses = {item.pk: item.status for item in ChecklistItem.objects.filter(pk__in=[i.pk for i in items])}
    assert set(statuses.values()) == {"verified"}
    history = [
        (c.from_status, c.to_status, c.comment) for c in StatusChange.objects.filter(item=items[0]).order_by("pk")
    ]
    assert history == [
        ("todo", "requested", f"CR-{pk}: {drafted['title']}: submit"),
        ("requested", "opened", f"CR-{pk}: {drafted['title']}: mark implemented"),
        ("opened", "verified", f"CR-{pk}: {drafted['title']}: verify"),
    ]

    closed = cab.step("eve", pk, "close")
    assert closed["state"] == "closed" and cab.actions(pk) == {name: [] for name in Cab.ROLES}

    # The record: each step from which state to which, by whom and why, in order.
    record = [(t["action"], t["from_state"], t["to_state"], t["user"], t["comment"]) for t in closed["transitions"]]
    assert record == [
        ("submit", "draft", "submitted", "ed", ""),
        ("approve", "submitted", "approved", "ann", "CAB-42 ok"),
        ("implement", "approved", "implemented", "ed", "Rules 1-3 in at 09:00"),
        ("verify", "implemented", "verified", "", f"Every rule probed open in probe run {run.pk}."),
        ("close", "verified", "closed", "eve", ""),
    ]
    assert all(t["at"] for t in closed["transitions"])

    # The change log says the same: the draft's fields, then each step's state, with who and through what.
    log = log_of(cab["vic"], pk)
    assert [(e["action"], e["user"], e["source"], e["object_repr"]) for e in log] == [
        ("created", "ed", "api_token", f"CR-{pk}: {DRAFT['title']}"),
        ("updated", "ed", "api_token", f"CR-{pk}: {DRAFT['title']}"),
        ("updated", "ann", "api_token", f"CR-{pk}: {DRAFT['title']}"),
        ("updated", "ed", "api_token", f"CR-{pk}: {DRAFT['title']}"),
        ("updated", "", "portal", f"CR-{pk}: {DRAFT['title']}"),
        ("updated", "eve", "api_token", f"CR-{pk}: {DRAFT['title']}"),
    ]
    assert log[0]["after"] == {**DRAFT, "state": "draft", "rules": numbers}
    assert {e["deployment"] for e in log} == {deployment.pk}
    states = [(e["diff"]["state"]["before"], e["diff"]["state"]["after"]) for e in log[1:]]
    assert states == [
        ("draft", "submitted"),
        ("submitted", "approved"),
        ("approved", "implemented"),
        ("implemented", "verified"),
        ("verified", "closed"),
    ]
    assert log[2]["diff"]["comment"] == {"before": None, "after": "CAB-42 ok"}


def test_a_refused_rule_holds_the_request_back_and_a_waived_one_does_not(cab, deployment, live_default_site):
    opened, refused, waived = items = three_rules(deployment)
    pk = cab.draft("ed", deployment, items)["id"]
    cab.step("ed", pk, "submit")
    cab.step("abe", pk, "approve", "ok")
    cab.step("ed", pk, "implement")
    run = ProbeRun.objects.get(change_request_id=pk)
    # The firewall team cannot open one rule: the CAB waives it, saying why.
    answer = cab["ed"].patch(
        f"/api/checklist-items/{waived.pk}/", {"status": "waived", "comment": "Not in DC1: CHG-4712"}, format="json"
    )
    assert answer.status_code == 200, answer.content

    outcomes(run, {opened: "open", refused: "refused", waived: "refused"})
    run.refresh_from_db()
    assert run.status == "done"
    shown = cab["ed"].get(f"/api/requests/{pk}/").json()
    assert shown["state"] == "implemented"  # its own run did not prove it
    assert shown["holding_back"] == [{"number": refused.number, "why": "probe refused"}]
    held = cab.step("ed", pk, "verify", expect=409)
    assert held["holding_back"] == [{"number": refused.number, "why": "probe refused"}]
    assert held["detail"] == f"Not verified: 1 of its rules do not probe open (rule {refused.number}: probe refused)."

    # A later run (a schedule's, a person's) finds it open: nothing holds the request back any
    # more, and the portal verifies it, naming that run.
    later = recorded_run(deployment, [(refused, "open")])
    verified = cab["ed"].get(f"/api/requests/{pk}/").json()
    assert verified["state"] == "verified" and verified["transitions"][-1]["user"] == ""
    assert verified["transitions"][-1]["comment"] == f"Every rule probed open in probe run {later.pk}."


def test_an_approver_neither_approves_what_they_drafted_nor_what_they_submitted(cab, deployment):
    items = three_rules(deployment)
    own = cab.draft("ann", deployment, items)["id"]
    cab.step("ann", own, "submit")
    assert cab.step("ann", own, "approve", "self", expect=403)["detail"] == FOUR_EYES
    assert cab.actions(own)["ann"] == []
    assert cab.step("abe", own, "reject", "Not this week.")["state"] == "rejected"
    # A rejected request is closed, by anyone who edits.
    assert cab.actions(own) == {"vic": [], **{name: ["close"] for name in ("ed", "eve", "ann", "abe", "ada")}}

    submitted_by_abe = cab.draft("ed", deployment, items[:1])["id"]
    cab.step("abe", submitted_by_abe, "submit")
    assert cab.step("abe", submitted_by_abe, "approve", "", expect=403)["detail"] == FOUR_EYES
    assert cab.actions(submitted_by_abe)["abe"] == [] and cab.actions(submitted_by_abe)["ann"] == ["approve", "reject"]
    assert cab.step("ann", submitted_by_abe, "approve")["state"] == "approved"


# --- What is refused ---------------------------------------------------------------------------


def test_another_team_gets_404_on_everything_and_sees_no_request(cab, deployment):
    pk = cab.draft("ed", deployment, three_rules(deployment))["id"]
    other = token_client(member("mallory", TeamRole.ADMIN, team="Other team"))
    assert other.get(f"/api/requests/{pk}/").status_code == 404
    assert other.get(f"/api/requests/{pk}/pdf/").status_code == 404
    assert other.get("/api/requests/").json()["results"] == []
    assert other.get(f"/api/deployments/{deployment.pk}/requests/").status_code == 404
    drafted = other.post(f"/api/deployments/{deployment.pk}/requests/", {"title": "x", "items": [1]}, format="json")
    assert drafted.status_code == 404
    for action in ("submit", "approve", "reject", "implement", "verify", "close"):
        assert other.post(f"/api/requests/{pk}/{action}/", {"comment": "x"}, format="json").status_code == 404, action
    assert other.get("/api/changes/", {"object_type": "change_request"}).json()["results"] == []
    assert ChangeRequest.objects.get(pk=pk).state == "draft" and ChangeRequest.objects.count() == 1
    anonymous = APIClient()
    assert anonymous.get(f"/api/requests/{pk}/").status_code == 401
    assert anonymous.post(f"/api/requests/{pk}/submit/", {}, format="json").status_code == 401


def test_a_draft_of_another_deployments_rules_is_400_naming_them(cab, deployment, full_document):
    other = create_deployment({**full_document, "name": "Other gateways"})
    theirs = sorted(other.checklist.values_list("pk", flat=True)[:2])
    ours = three_rules(deployment)[0]
    body = {**DRAFT, "items": [ours.pk, *theirs]}
    answer = cab["ed"].post(f"/api/deployments/{deployment.pk}/requests/", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["items"] == [f"Not items of this deployment's checklist: {', '.join(map(str, theirs))}."]
    assert not ChangeRequest.objects.exists()
    empty = cab["ed"].post(f"/api/deployments/{deployment.pk}/requests/", {**DRAFT, "items": []}, format="json")
    assert empty.status_code == 400 and "items" in empty.json()
    # A viewer drafts nothing.
    viewer = cab["vic"].post(f"/api/deployments/{deployment.pk}/requests/", body | {"items": [ours.pk]}, format="json")
    assert viewer.status_code == 403


def test_an_unknown_step_is_404_naming_the_steps(cab, deployment):
    pk = cab.draft("ed", deployment, three_rules(deployment))["id"]
    answer = cab["ed"].post(f"/api/requests/{pk}/explode/", {}, format="json")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "No step is called 'explode': submit, approve, reject, implement, verify, close."
    assert cab["ed"].post(f"/api/requests/{pk}/submit/", {"comment": "x", "extra": 1}, format="json").status_code == 400
    assert ChangeRequest.objects.get(pk=pk).state == "draft"


def test_the_list_of_requests_takes_the_same_queries_for_one_request_or_many(cab, deployment, live_default_site):
    items = three_rules(deployment)

    def requests_in_every_state(count: int) -> None:
        for _ in range(count):
            for steps in ([], ["submit"], ["submit", "approve"], ["submit", "approve", "implement"]):
                pk = cab.draft("ed", deployment, items)["id"]
                for action in steps:
                    cab.step("abe" if action == "approve" else "ed", pk, action, "ok")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            answer = cab["ann"].get("/api/requests/", {"limit": 100})
        assert answer.status_code == 200
        return len(captured), answer.json()["count"]

    requests_in_every_state(1)
    cab["ann"].get("/api/me/")  # her token's first use is written once (ApiToken.record_use): not counted
    few = queries()
    requests_in_every_state(2)
    many = queries()
    assert (few[1], many[1]) == (4, 12)
    assert many[0] == few[0], f"{few[0]} queries for 4 requests, {many[0]} for 12"


# --- The schema ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_requests_answers_match_the_schema(live_server):
    call_command("load_catalog", verbosity=0)
    ed, ann = member("ed", TeamRole.EDITOR), member("ann", TeamRole.APPROVER)
    deployment = create_deployment(copy.deepcopy(FULL_DEPLOYMENT))
    editor = SchemaCheckingClient(live_server.url, api_key(ed))
    # The approver's client checks with the same schema, read once: its generation takes seconds.
    approver = copy.copy(editor)
    approver.session = requests.Session()
    approver.session.headers["Authorization"] = f"Token {api_key(ann)}"
    items = [item.pk for item in three_rules(deployment)]
    url = f"/api/deployments/{deployment.pk}/requests/"
    pk = editor.call("POST", url, 201, json={**DRAFT, "items": items}).json()["id"]
    editor.call("GET", url, 200)
    editor.call("GET", "/api/requests/", 200)
    editor.call("GET", f"/api/requests/{pk}/", 200)
    editor.call("POST", f"/api/requests/{pk}/submit/", 200, json={})
    editor.call("POST", f"/api/requests/{pk}/approve/", 403, json={"comment": "mine"})
    approver.call("POST", f"/api/requests/{pk}/reject/", 400, json={})
    approver.call("POST", f"/api/requests/{pk}/approve/", 200, json={"comment": "ok"})
    editor.call("POST", f"/api/requests/{pk}/close/", 409, json={})
    editor.call("POST", f"/api/requests/{pk}/implement/", 200, json={})  # no live worker: not probed at once
    editor.call("POST", f"/api/requests/{pk}/verify/", 409, json={})
    editor.call("POST", f"/api/requests/{pk}/explode/", 404, json={})
    editor.call("POST", url, 400, json={**DRAFT, "items": [999999]})
    # The PDF: openapi-core has no reader of a binary body to check it with; its error is JSON.
    pdf = editor.session.get(f"{live_server.url}/api/requests/{pk}/pdf/", headers={"Accept": "application/pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    operation = editor.schema["paths"]["/api/requests/{id}/pdf/"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["application/pdf"]
    assert "Checklist-Fingerprint" in operation["responses"]["200"]["headers"]
    editor.call("GET", "/api/requests/999999/pdf/", 404)
    # The steps' answers say what the write did, in the header the schema declares.
    step = editor.schema["paths"]["/api/requests/{id}/{action}/"]["post"]["responses"]
    assert "Outcome" in step["200"]["headers"]


# --- The request's PDF ------------------------------------------------------------------------


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_pdf_of_a_request_holds_its_rules_its_state_and_its_record(cab, deployment, live_default_site):
    items = three_rules(deployment)
    drafted = cab.draft("ed", deployment, items)
    pk = drafted["id"]
    cab.step("ed", pk, "submit")
    cab.step("ann", pk, "approve", "CAB-42 ok")
    answer = cab["vic"].get(f"/api/requests/{pk}/pdf/")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/pdf"
    assert answer["Content-Disposition"] == f'attachment; filename="change-request-CR-{pk}.pdf"'
    fingerprint = answer["Checklist-Fingerprint"]
    text = pdf_text(answer.content)
    words = flat(text)
    first_page = flat(PdfReader(io.BytesIO(answer.content)).pages[0].extract_text())
    for expected in [
        "Change reference CHG-4711",
        f"Title {DRAFT['title']}",
        "State Approved",
        "Requester ed",
        "Requested implementation date 2026-12-10",
        "Expiry 2027-12-10",
        "Business justification New mail gateways in DC1",
        "a selection of rules: 3 firewall rules (3 checklist items;",
        f"sha256:{fingerprint}",
    ]:
        assert expected in first_page, expected
    # Exactly its rules: a row starts with its number, then its source; no other rule has a row.
    sources = set(deployment.checklist.values_list("source", flat=True))
    rows = {int(number) for number, source in re.findall(r"(?m)^(\d+)(?: ◆)?\n(\S+)$", text) if source in sources}
    assert rows == {item.number for item in items}
    for item in items:
        assert item.destination in words and item.requirement.uid in words
    # In place of the signature lines, its record: each step, by whom, when (UTC) and why.
    assert "Network security" not in words and "Signature" not in words
    assert re.search(r"(?m)^Record$", text)
    assert "State: Approved." in words
    request = ChangeRequest.objects.get(pk=pk)
    submitted, approved = request.transitions.all()
    when = "%Y-%m-%d %H:%M UTC"
    assert f"Drafted ed {request.created.astimezone(UTC).strftime(when)}" in words
    assert f"Submitted ed {submitted.at.astimezone(UTC).strftime(when)}" in words
    assert f"Approved ann {approved.at.astimezone(UTC).strftime(when)} CAB-42 ok" in words
    assert "Remove the three rules." in words  # its rollback
    assert f"POST /api/requests/{pk}/implement/" in words
    assert deployment.exports.filter(fingerprint=fingerprint).exists()


def test_the_pdf_of_a_verified_request_names_the_portal_and_a_request_without_reference_its_id(
    cab, deployment, live_default_site
):
    items = three_rules(deployment)
    pk = cab.draft("ed", deployment, items[:2], reference="", title="Two rules")["id"]
    cab.step("ed", pk, "submit")
    cab.step("ann", pk, "approve", "fine")
    cab.step("ed", pk, "implement")
    outcomes(ProbeRun.objects.get(change_request_id=pk), dict.fromkeys(items[:2], "open"))
    words = flat(pdf_text(cab["ed"].get(f"/api/requests/{pk}/pdf/").content))
    assert f"Change reference CR-{pk}" in words and "State Verified" in words
    assert re.search(r"Verified portal \S+ \S+ UTC Every rule probed open in probe run \d+\.", words)
    assert "a selection of rules: 2 firewall rules" in words


# --- Through a real probe worker --------------------------------------------------------------

LAB = {
    "name": "Request lab",
    "appliances": [{"hostname": "esa1", "c_address": "127.81.1.1", "p1_address": "127.81.1.2"}],
    "hosts": [
        {"role": "sql_server", "name": "sql", "address": "127.81.2.3"},
        {"role": "ldap", "name": "ldap", "address": "127.81.2.4"},
    ],
}


@needs_redis
@pytest.mark.integration
def test_implementing_a_request_probes_its_rules_through_a_worker_and_the_run_verifies_it(transactional_db):
    call_command("load_catalog", verbosity=0)
    cab = {name: token_client(member(name, role)) for name, role in [("ed", TeamRole.EDITOR), ("ann", "approver")]}
    deployment = create_deployment(LAB)
    uids = ["fes.off-appliance.1433-tcp", "fes.off-appliance.389-tcp"]
    items = list(deployment.checklist.filter(requirement__uid__in=uids).order_by("number"))
    assert [(item.source_site, item.destination, item.port_start) for item in items] == [
        ("default", "127.81.2.3", 1433),
        ("default", "127.81.2.4", 389),
    ]
    listeners = Listeners()
    listeners.open_tcp("127.81.2.3", 1433)
    listeners.ldap("127.81.2.4", 389)
    flush_broker()
    worker = Worker(["default"], name="requests")
    try:
        worker.wait_until_live()
        body = {"title": "SQL and LDAP", "items": [item.pk for item in items]}
        pk = cab["ed"].post(f"/api/deployments/{deployment.pk}/requests/", body, format="json").json()["id"]
        for who, action, comment in [("ed", "submit", ""), ("ann", "approve", "ok"), ("ed", "implement", "")]:
            answer = cab[who].post(f"/api/requests/{pk}/{action}/", {"comment": comment}, format="json")
            assert answer.status_code == 200, answer.content

        def verified() -> dict | None:
            shown = cab["ed"].get(f"/api/requests/{pk}/").json()
            return shown if shown["state"] == "verified" else None

        shown = wait_until(verified, 60, lambda: f"{cab['ed'].get(f'/api/requests/{pk}/').json()}\n{worker.tail()}")
    finally:
        worker.stop()
        listeners.close()
        flush_broker()
    (run,) = ProbeRun.objects.filter(change_request_id=pk)
    assert shown["probe_runs"] == [run.pk] and run.status == "done" and run.by_state == {"open": 2}
    assert {result.item.pk: result.state for result in run.results()} == {item.pk: "open" for item in items}
    last = shown["transitions"][-1]
    assert (last["action"], last["user"], last["comment"]) == (
        "verify",
        "",
        f"Every rule probed open in probe run {run.pk}.",
    )


def test_a_request_is_drafted_from_what_a_plan_said_a_write_adds(deployment, api):
    """Plan, apply, then draft the request of what the write added, by the numbers the plan gave."""
    url = f"/api/deployments/{deployment.pk}/"
    plan = api.patch(f"{url}?dry_run=true", {"dlp_base_port": 18000}, format="json").json()["plan"]
    added = sorted({rule["number"] for rule in plan["added"]})
    assert added and api.patch(url, {"dlp_base_port": 18000}, format="json").status_code == 200
    body = {"title": "DLP on its new ports", "numbers": added}
    drafted = api.post(f"{url}requests/", body, format="json")
    assert drafted.status_code == 201, drafted.json()
    assert sorted({rule["number"] for rule in drafted.json()["rules"]}) == added
    assert {rule["ports"] for rule in drafted.json()["rules"]} == {rule["ports"] for rule in plan["added"]}
    # Neither or both selections, or a number no rule has, is a 400 that drafts nothing.
    for wrong in ({"title": "x"}, {"title": "x", "numbers": added, "items": [1]}, {"title": "x", "numbers": [99999]}):
        assert api.post(f"{url}requests/", wrong, format="json").status_code == 400
    assert ChangeRequest.objects.count() == 1
