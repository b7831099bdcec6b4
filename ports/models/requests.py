"""Change requests as objects, taken through their life step by step."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from ..choices import (
    ChangeAction,
    ChangedObject,
    ItemStatus,
    RequestAction,
    RequestState,
    TeamRole,
)
from ..signals import request_moved
from ..validators import (
    validate_text,
)
from .changes import ObjectChange
from .checklist import ChecklistItem
from .deployments import Deployment
from .members import Membership
from .teams import DeploymentPartQuerySet


@dataclass(frozen=True)
class Transition:
    """A step of a change request's life: from which states, to which, and the role it needs."""

    sources: tuple[str, ...]
    target: str
    role: str


# Where a list of requests keeps each one's items read with their latest probe (with_progress).
PROBED_ITEMS = "items_with_probes"


class ChangeRequestQuerySet(DeploymentPartQuerySet):
    def with_progress(self) -> ChangeRequestQuerySet:
        """The requests with what their pages and the API show of each, read once for the list:
        their record, their probe runs and their items with their latest probe (holding_back)."""
        items = models.Prefetch("items", ChecklistItem.objects.with_latest_probe(), to_attr=PROBED_ITEMS)
        return self.select_related("deployment__team", "requested_by").prefetch_related(
            "transitions", "probe_runs", items
        )

    def expiring(self, by: datetime.date) -> ChangeRequestQuerySet:
        """The requests whose rules are in place (implemented and after) and expire by `by`,
        with no rollback drafted yet: each is warned of once (ChangeRequest.draft_rollback)."""
        in_place = [RequestState.IMPLEMENTED, RequestState.VERIFIED, RequestState.CLOSED]
        return self.filter(expiry__lte=by, state__in=in_place, rollback_of=None).exclude(rollbacks__isnull=False)


class ChangeRequest(models.Model):
    """A firewall change request for some of a deployment's rules, taken through its life:
    draft -> submitted -> approved or rejected -> implemented -> verified -> closed
    (TRANSITIONS), each step by whom its role allows and kept as a RequestTransition, as the
    change log keeps it too. Approval needs four eyes: neither the requester nor whoever
    submitted it approves or rejects it. "Verified" is reached only when every rule of the
    request probes open or is waived (holding_back() names the others); the probes layer starts
    the probe run when a request is implemented and verifies it when the run proves it."""

    TRANSITIONS = {
        RequestAction.SUBMIT: Transition((RequestState.DRAFT,), RequestState.SUBMITTED, TeamRole.EDITOR),
        RequestAction.APPROVE: Transition((RequestState.SUBMITTED,), RequestState.APPROVED, TeamRole.APPROVER),
        RequestAction.REJECT: Transition((RequestState.SUBMITTED,), RequestState.REJECTED, TeamRole.APPROVER),
        RequestAction.IMPLEMENT: Transition((RequestState.APPROVED,), RequestState.IMPLEMENTED, TeamRole.EDITOR),
        RequestAction.VERIFY: Transition((RequestState.IMPLEMENTED,), RequestState.VERIFIED, TeamRole.EDITOR),
        RequestAction.CLOSE: Transition(
            (RequestState.VERIFIED, RequestState.REJECTED), RequestState.CLOSED, TeamRole.EDITOR
        ),
    }
    FOUR_EYES = (RequestAction.APPROVE, RequestAction.REJECT)
    NEEDS_COMMENT = (RequestAction.REJECT,)  # a rejection says why
    # The checklist follows its requests: a step moves the request's rules that are behind it to
    # its status (each change in their history and the change log); none goes back.
    MOVES_RULES = {
        RequestAction.SUBMIT: (ItemStatus.REQUESTED, [ItemStatus.TODO]),
        RequestAction.IMPLEMENT: (ItemStatus.OPENED, [ItemStatus.TODO, ItemStatus.REQUESTED]),
        RequestAction.VERIFY: (ItemStatus.VERIFIED, [ItemStatus.TODO, ItemStatus.REQUESTED, ItemStatus.OPENED]),
    }
    # What a draft says for the change advisory board (the PDF's fields of the same names).
    FIELDS = ("title", "reference", "justification", "requested_date", "expiry", "rollback")

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="change_requests")
    title = models.CharField(max_length=200, validators=[validate_text])
    reference = models.CharField(max_length=60, blank=True, validators=[validate_text])
    justification = models.TextField(max_length=2000, blank=True)
    requested_date = models.DateField(null=True, blank=True, help_text="When the change is wanted.")
    expiry = models.DateField(null=True, blank=True, help_text="When the rules are to be removed (temporary rules).")
    rollback = models.TextField(max_length=2000, blank=True)
    state = models.CharField(max_length=12, choices=RequestState.choices, default=RequestState.DRAFT)
    items = models.ManyToManyField("ChecklistItem", related_name="change_requests", blank=True)
    # The rules as drafted (number, source, destination, ports, protocol, description): the record
    # of what was asked for, kept when a new generation of the checklist drops an item.
    rules = models.JSONField(default=list)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rollback_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rollbacks")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = ChangeRequestQuerySet.as_manager()

    class Meta:
        ordering = ["deployment", "-created", "-id"]
        indexes = [models.Index(fields=["deployment", "-created", "-id"], name="changerequest_ordering")]

    def __str__(self) -> str:
        return f"CR-{self.pk}: {self.title}"

    @classmethod
    def draft(cls, deployment: Deployment, user: object, items: list[ChecklistItem], **fields: object) -> ChangeRequest:
        """A new draft of these rules, with its CAB fields (FIELDS), in the change log."""
        with transaction.atomic():
            request = cls.objects.create(
                deployment=deployment, requested_by=user, rules=[item.rule_record() for item in items], **fields
            )
            request.items.set(items)
            request.log(ChangeAction.CREATED, None, request.logged())
        return request

    def draft_rollback(self) -> ChangeRequest | None:
        """The draft that removes this request's temporary rules before they expire, drafted by
        the portal; None if one is drafted already (under the request's lock: once)."""
        with transaction.atomic():
            ChangeRequest.objects.select_for_update().filter(pk=self.pk).exists()
            if self.rollbacks.exists():
                return None
            return ChangeRequest.draft(
                self.deployment,
                None,
                list(self.items.select_related("requirement").order_by("number")),
                title=f"Rollback of CR-{self.pk}: {self.title}"[:200],
                reference=self.reference,
                justification=f"The rules of CR-{self.pk} were asked for until {self.expiry}: remove them.",
                requested_date=self.expiry,
                rollback=f"Allow the rules of CR-{self.pk} again.",
                rollback_of=self,
            )

    def logged(self) -> dict:
        fields = {name: getattr(self, name) for name in self.FIELDS}
        dates = {name: value.isoformat() for name, value in fields.items() if isinstance(value, datetime.date)}
        return {**fields, **dates, "state": self.state, "rules": [rule["number"] for rule in self.rules]}

    def log(self, action: str, before: dict | None, after: dict | None) -> ObjectChange:
        return ObjectChange.log(
            self.deployment.team_id,
            action,
            ChangedObject.CHANGE_REQUEST,
            self.pk,
            str(self),
            before,
            after,
            deployment=self.deployment,
        )

    def allowed(self, user: object, role: str | None = None) -> list[str]:
        """The actions `user` (of `role` in the team, looked up if not given) may take now: the
        page's buttons, the API's `actions`. Verify only once nothing holds the request back."""
        role = role or Membership.role_of(user, self.deployment.team_id)
        allowed = [action for action in self.TRANSITIONS if self.refusal(action, user, role) is None]
        if RequestAction.VERIFY in allowed and self.holding_back():
            allowed.remove(RequestAction.VERIFY)
        return allowed

    def refusal(self, action: str, user: object, role: str | None) -> RequestRefused | None:
        """Why `user` (of `role` in the team) may not take `action` now; None if they may. The role
        first: a step the user may never take is refused as such, whatever the state."""
        step = self.TRANSITIONS[action]
        if role not in TeamRole.at_least(step.role):
            needed, yours = TeamRole(step.role).label.lower(), TeamRole.held(role)
            return RequestRefused(
                f"This needs the role {needed} in team {self.deployment.team}: {yours}.", forbidden=True
            )
        if action in self.FOUR_EYES and user is not None and user.pk in self.requesters():
            return RequestRefused(
                "Four eyes: someone other than who requested or submitted it approves or rejects it.", forbidden=True
            )
        if self.state not in step.sources:
            state, target = self.get_state_display().lower(), RequestState(step.target).label.lower()
            return RequestRefused(f"A request that is {state} cannot be taken to {target}.", conflict=True)
        return None

    def requesters(self) -> set[int]:
        """Who drafted or submitted it (read from its transitions, prefetched by a list)."""
        submitted = (step.user_id for step in self.transitions.all() if step.action == RequestAction.SUBMIT)
        return {self.requested_by_id, *submitted} - {None}

    def take(self, action: str, user: object, comment: str = "") -> RequestTransition:
        """Move the request by `action` as `user` (None: the portal itself, which verifies a
        request its probe run proved), saying why in `comment`; RequestRefused if the state, the
        role, four eyes or the rules' probes do not allow it, and nothing changes."""
        with transaction.atomic():
            locked = ChangeRequest.objects.select_for_update().get(pk=self.pk)
            self.state = locked.state
            self.__dict__.pop("held", None)  # read again under the lock
            role = TeamRole.ADMIN if user is None else Membership.role_of(user, self.deployment.team_id)
            refused = self.refusal(action, user, role)
            if refused is not None:
                raise refused
            if action in self.NEEDS_COMMENT and not comment.strip():
                raise RequestRefused("Say why it is rejected (comment).")
            if action == RequestAction.VERIFY and (held := self.holding_back()):
                raise RequestRefused(
                    f"Not verified: {len(held)} of its rules do not probe open ({held_back_words(held)}).",
                    conflict=True,
                    held=held,
                )
            before, self.state = self.state, self.TRANSITIONS[action].target
            self.save(update_fields=["state", "updated"])
            step = self.transitions.create(
                action=action,
                from_state=before,
                to_state=self.state,
                user=user,
                user_name=user.get_username() if user else "",
                comment=comment,
            )
            after = {"state": self.state} | ({"comment": comment} if comment else {})
            self.log(ChangeAction.UPDATED, {"state": before}, after)
            if action in self.MOVES_RULES:
                status, behind = self.MOVES_RULES[action]
                rules = self.items.filter(status__in=behind)
                rules.change_status(status, user, f"{self}: {RequestAction(action).label.lower()}")
            request_moved.send(ChangeRequest, request=self, step=step)
        return step

    def probed_items(self) -> list[ChecklistItem]:
        """Its items with their latest probe, in checklist order: as a list read them
        (with_progress), or read now."""
        items = getattr(self, PROBED_ITEMS, None)
        if items is None:
            items = list(self.items.with_latest_probe())
        return sorted(items, key=lambda item: (item.number, item.pk))

    def holding_back(self) -> list[tuple[int, str]]:
        """The rules of the request that keep it from being verified, each with why: (number, why);
        a rule is verified by a latest probe that found it open, or by its waiver; a rule that a new
        generation of the checklist dropped is verified by nothing. Read once per request (a list
        prefetches its items)."""
        if not hasattr(self, "held"):
            items = self.probed_items()
            numbers = {item.number for item in items}
            held = [
                (rule["number"], "no longer in the checklist") for rule in self.rules if rule["number"] not in numbers
            ]
            for item in items:
                probe = item.latest_probe
                if item.status == ItemStatus.WAIVED or (probe is not None and probe.state == "open"):
                    continue
                held.append((item.number, f"probe {probe.state}" if probe else "never probed"))
            self.held = sorted(set(held))
        return self.held


def held_back_words(held: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"rule {number}: {why}" for number, why in held[:10])
    return shown + (f" and {len(held) - 10} more" if len(held) > 10 else "")


class RequestRefused(Exception):
    """A step a change request may not take now: a conflict with its state (409), a role or
    four eyes (403), or anything else (400)."""

    def __init__(self, message: str, conflict: bool = False, forbidden: bool = False, held: list | None = None) -> None:
        super().__init__(message)
        self.conflict, self.forbidden, self.held = conflict, forbidden, held or []


class RequestTransition(models.Model):
    """A change request's step: from which state to which, by whom, when and why (its record)."""

    request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="transitions")
    action = models.CharField(max_length=10, choices=RequestAction.choices)
    from_state = models.CharField(max_length=12, choices=RequestState.choices)
    to_state = models.CharField(max_length=12, choices=RequestState.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user_name = models.CharField(max_length=150, blank=True)  # as it was; "" for the portal itself
    comment = models.TextField(max_length=2000, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["request", "at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"
