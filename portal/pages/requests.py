"""Change requests in the browser: a deployment's requests (/deployments/<pk>/requests/), one
request's page (/requests/<pk>/) and its steps, each a plain POST form (/requests/<pk>/<action>/).

The request itself (ports.models.ChangeRequest) decides what may happen: its `allowed(user)` gives
the buttons, its `take()` the step or the RequestRefused that says why not. A draft is made on the
checklist page, whose dialog posts the ticked rules to the API (static/checklist.js).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ports.choices import RequestAction, RequestState, TeamRole
from ports.models import ChangeRequest, ChecklistItem, Membership, RequestRefused, RequestTransition
from ports.scoping import team_deployment
from probes.choices import STATE_TONES, ProbeState, RunStatus

from .checklist import NEVER_PROBED_TONE

REQUESTS_PER_PAGE = 50
# The tone a request's state is shown in (the CSS classes tone-good, tone-bad, tone-none, as the
# probe states'): a verified request is a proven change, a rejected one went nowhere.
REQUEST_TONES = {RequestState.VERIFIED: "good", RequestState.REJECTED: "bad"}
# The states in which a request's rules are, or are about to be, in the firewall: its page then
# says which of them keep it from being verified.
HELD_STATES = (RequestState.IMPLEMENTED,)


@dataclass(frozen=True)
class Step:
    """A step the user may take, as its form shows it: its action (value and label), whether its
    comment is required, and after a refusal of this step, why (`error`, said beside the comment
    when the comment falls short) and the comment typed (kept)."""

    action: RequestAction
    error: str = ""
    typed: str = ""

    @property
    def required(self) -> bool:
        return self.action in ChangeRequest.NEEDS_COMMENT  # its field says so beside it

    @property
    def hint(self) -> str:
        return "Required: say why it is rejected." if self.required else "Optional: kept in its record."


@dataclass(frozen=True)
class RequestRule:
    """A rule of a request as its page shows it: as drafted (the snapshot, kept when a new
    generation of the checklist drops its item), with its item's status and latest probe if the
    item is still there."""

    number: int
    source: str
    destination: str
    ports: str
    protocol: str
    description: str
    item: ChecklistItem | None

    @property
    def status(self) -> str:
        return self.item.get_status_display() if self.item else ""

    @property
    def state(self) -> str:
        probe = self.item.latest_probe if self.item else None
        return probe.get_state_display() if probe else "never probed"

    @property
    def tone(self) -> str:
        probe = self.item.latest_probe if self.item else None
        return STATE_TONES[probe.state] if probe else NEVER_PROBED_TONE


@dataclass(frozen=True)
class Refusal:
    """A step the request refused, as its page says it: above the steps, and next to the step's
    comment when what was typed falls short (the comment kept), with the status the API answers."""

    action: str
    message: str
    comment: str
    status: int  # 409: the request's state moved on; 403: the role or four eyes; 400: the comment

    @property
    def beside_field(self) -> bool:
        return self.status == 400

    @classmethod
    def of(cls, action: str, refused: RequestRefused, comment: str) -> Refusal:
        status = 409 if refused.conflict else 403 if refused.forbidden else 400
        return cls(action, str(refused), comment, status)


class StepForm(forms.Form):
    """A step's one field: why, kept in the request's record (a rejection must say it)."""

    comment = forms.CharField(
        max_length=RequestTransition._meta.get_field("comment").max_length, required=False, strip=True
    )


def request_rules(change_request: ChangeRequest) -> list[RequestRule]:
    """The request's rules as drafted, each with its item if it still exists (one query). Items of
    the same flow share a number (ChecklistItem.number): each drafted rule takes one of them."""
    by_number: dict[int, list[ChecklistItem]] = {}
    for item in change_request.probed_items():
        by_number.setdefault(item.number, []).append(item)
    rules = []
    for rule in change_request.rules:
        items = by_number.get(rule["number"], [])
        fields = {name: rule.get(name, "") for name in ("source", "destination", "ports", "protocol", "description")}
        rules.append(RequestRule(number=rule["number"], item=items.pop(0) if items else None, **fields))
    return rules


def cab_fields(change_request: ChangeRequest) -> list[tuple[str, str]]:
    """What the request says for the change advisory board, by name (the title aside: the page's
    heading), each as text: a date as ISO 8601, as the PDF and the API write it; nothing as ""."""
    shown = []
    for name in ChangeRequest.FIELDS:
        value = getattr(change_request, name)
        if name != "title":
            label = ChangeRequest._meta.get_field(name).verbose_name.capitalize()
            shown.append((label, value.isoformat() if isinstance(value, datetime.date) else value or ""))
    return shown


def next_steps(state: str) -> list[str]:
    """Who takes the request on from `state`, read from its transitions, the steps of the same
    people together: "Approve or Reject (an approver other than who requested or submitted it)";
    none for a closed request."""
    by_who: dict[str, list[str]] = {}
    for action, step in ChangeRequest.TRANSITIONS.items():
        if state in step.sources:
            role = TeamRole(step.role).label.lower()
            who = f"{'an' if role[0] in 'aeiou' else 'a'} {role}"
            if action in ChangeRequest.FOUR_EYES:
                who += " other than who requested or submitted it"
            by_who.setdefault(who, []).append(RequestAction(action).label)
    return [f"{' or '.join(actions)} ({who})" for who, actions in by_who.items()]


@login_required
def deployment_requests(request: HttpRequest, pk: int) -> HttpResponse:
    """A deployment's change requests, newest first, a page at a time: three queries whatever
    their number (the deployment, the count, the page with its requesters)."""
    deployment = team_deployment(request.user, pk)
    found = deployment.change_requests.select_related("requested_by").order_by("-created", "-id")
    page = Paginator(found, REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    for change_request in page:
        change_request.tone = REQUEST_TONES.get(change_request.state, "none")
    return render(request, "ports/requests.html", {"deployment": deployment, "page": page})


def request_page(request: HttpRequest, change_request: ChangeRequest, refused: Refusal | None = None) -> HttpResponse:
    """The request's page; after a refused step, saying why, with the status the API answers."""
    role = Membership.role_of(request.user, change_request.deployment.team_id)
    held = change_request.holding_back() if change_request.state in HELD_STATES else []
    # Verifying waits until no rule holds the request back (ChangeRequest.allowed): a run that
    # finds them all open verifies it by itself; a waiver needs a person to.
    actions = change_request.allowed(request.user, role)
    runs = change_request.probe_runs.all()
    for run in runs:
        run.found = [(ProbeState(state).label, n) for state, n in run.by_state.items() if n]
        run.bad = run.status in (RunStatus.FAILED, RunStatus.PARTLY_DONE, RunStatus.CANCELLED)
    context = {
        "cr": change_request,
        "deployment": change_request.deployment,
        "tone": REQUEST_TONES.get(change_request.state, "none"),
        "fields": cab_fields(change_request),
        "rules": request_rules(change_request),
        "shows_held": change_request.state in HELD_STATES,
        "held": held,
        "transitions": change_request.transitions.all(),
        "runs": runs,
        "steps": [step_form(action, refused) for action in actions],
        "next_steps": next_steps(change_request.state),
        "role": TeamRole(role).label.lower() if role else "",
        "can_write": role in TeamRole.at_least(TeamRole.EDITOR),
        "refused": refused,
    }
    return render(request, "ports/request.html", context, status=refused.status if refused else 200)


def step_form(action: str, refused: Refusal | None) -> Step:
    if refused is None or refused.action != action:
        return Step(RequestAction(action))
    return Step(RequestAction(action), refused.message if refused.beside_field else "", refused.comment)


def found_request(request: HttpRequest, pk: int) -> ChangeRequest:
    """The request `pk` if one of the user's teams owns it; 404 otherwise, as if absent."""
    return get_object_or_404(ChangeRequest.objects.for_user(request.user).with_progress(), pk=pk)


@login_required
def change_request(request: HttpRequest, pk: int) -> HttpResponse:
    return request_page(request, found_request(request, pk))


@login_required
@require_POST
def change_request_step(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Take a step, then show the page again saying so. A step refused (the request's state moved
    on meanwhile, the user's role or four eyes does not allow it, a rejection without its comment)
    shows the page as it is now, saying why, with the API's status (409, 403, 400): nothing changed."""
    if action not in RequestAction.values:
        raise Http404(f"No step is called {action[:40]!r}.")
    found = found_request(request, pk)
    form = StepForm(request.POST)
    if not form.is_valid():  # a comment too long: said where a missing one is
        typed = request.POST.get("comment", "")
        return request_page(request, found, Refusal(action, " ".join(form.errors["comment"]), typed, 400))
    comment = form.cleaned_data["comment"]
    try:
        found.take(action, request.user, comment)
    except RequestRefused as refused:
        return request_page(request, found, Refusal.of(action, refused, comment))
    messages.success(request, f"{found}: {found.get_state_display().lower()}.")
    return redirect("change-request", pk=found.pk)
