"""What raises alerts: a rule that broke, an interception, a failed run, a silent site, a test."""

from __future__ import annotations

import datetime
from collections import defaultdict

from django.conf import settings
from django.db.models import Max
from django.dispatch import receiver
from django.utils import timezone

from ports.choices import RequestAction, RequestState, Stop
from ports.models import ChangeRequest, Deployment, RequestTransition
from ports.signals import request_moved

from .. import signals
from ..choices import AlertKind, ProbeState
from ..models import Alert, AlertChannel, ProbeFlip, ProbeRun, WorkerHeartbeat

# An alert lists at most this many rules; the rest are counted ("and 12 more").
LISTED_RULES = 50
# The steps of a change request its team hears of (the channels that carry AlertKind.CHANGE_REQUEST).
ANNOUNCED_STEPS = (
    RequestAction.SUBMIT,
    RequestAction.APPROVE,
    RequestAction.REJECT,
    RequestAction.IMPLEMENT,
    RequestAction.VERIFY,
)
# What the team is to do next, after a step.
NEXT_STEP = {
    RequestState.SUBMITTED: "An approver other than its requester approves or rejects it.",
    RequestState.APPROVED: "Change the firewall, then mark it implemented: the portal probes its rules.",
    RequestState.REJECTED: "Its requester reads why, and drafts it anew or closes it.",
    RequestState.IMPLEMENTED: "The portal probes its rules; it is verified once each probes open or is waived.",
    RequestState.VERIFIED: "Every rule probes open: close it.",
}


@receiver(signals.states_changed)
def on_flips(
    sender: type, run: ProbeRun, flips: list[ProbeFlip], alerting: list[ProbeFlip], items: dict, **kwargs: object
) -> None:
    """In the recorder's transaction: alerts for the state changes that matter (open -> anything
    else, anything -> intercepted), as the recorder claimed them with the item's state
    (LatestProbe.record: each change alerts once, and a rule that flaps at most once per
    ALERT_FLAP_WINDOW); the changes of one batch come as one alert per kind, so that a firewall
    that drops a whole site's rules sends one message, not hundreds. The rules are said as the
    recorder read them with the batch (`items`, models.ItemNow)."""
    for kind in (AlertKind.REGRESSION, AlertKind.INTERCEPTION):
        intercepted = kind == AlertKind.INTERCEPTION
        changes = [flip for flip in alerting if (flip.state == ProbeState.INTERCEPTED) == intercepted]
        if changes:
            raise_for_changes(run, kind, changes, items)


def raise_for_changes(run: ProbeRun, kind: str, changes: list[ProbeFlip], items: dict) -> None:
    deployment = run.deployment

    def change(flip: ProbeFlip) -> str:
        item = items[flip.item_id]
        was = f" (was {ProbeState(flip.previous_state).label.lower()})" if flip.previous_state else ""
        rule = f"rule {item.number}: {item.rule['source']} -> {item.rule['destination']}"
        rule += f" {item.rule['ports']}/{item.rule['protocol']}"
        return f"{rule} is {flip.get_state_display().lower()}{was}"

    lines = [f"{change(flip)}: {flip.summary}" for flip in changes]
    if len(changes) == 1:
        subject = f"{deployment.name}: {change(changes[0])}"
    else:
        what = "stopped working" if kind == AlertKind.REGRESSION else "are intercepted"
        subject = f"{deployment.name}: {len(changes)} rules {what}"
    shown = lines[:LISTED_RULES]
    if len(lines) > LISTED_RULES:
        shown.append(f"... and {len(lines) - LISTED_RULES} more.")
    stops = where_changes_stop(changes, items)
    body = [subject, "", *(f"{stop_words(stop)}." for stop in stops), *([""] if stops else [])]
    body += [f"Probe run {run.pk}, from site {changes[0].site}:", *shown]
    if len(changes) == 1:
        body += ["", *changes[0].evidence_words]
    Alert.raise_for(
        deployment.team_id,
        kind,
        subject,
        "\n".join(body),
        deployment=deployment,
        site=changes[0].site,
        details={
            "run": run.pk,
            "changes": [
                {
                    "item": flip.item_id,
                    "rule_number": items[flip.item_id].number,
                    "state": flip.state,
                    "previous_state": flip.previous_state or None,
                    "summary": flip.summary,
                }
                for flip in changes
            ],
            "stops": stops,
        },
    )


def where_changes_stop(changes: list[ProbeFlip], items: dict) -> list[dict]:
    """The changed rules by the site they are probed from and the device where they now stop, as
    their evidence names it (Stop.of), most rules first: {site, address, how (a Stop), icmp (the
    ICMP errors' names, for a rejection), items, rules (their numbers)}. A firewall that starts
    dropping a site's rules is one line, not one per rule."""
    found: dict[tuple[str, str, Stop], list[ProbeFlip]] = defaultdict(list)
    for flip in changes:
        if stop := Stop.of(flip.evidence):
            address, how = stop
            found[(flip.site, address, how)].append(flip)
    stops = []
    for (site, address, how), flips in found.items():
        names = [(flip.evidence.get("icmp") or {}).get("name") for flip in flips]
        stops.append(
            {
                "site": site,
                "address": address,
                "how": how.value,
                "icmp": list(dict.fromkeys(name for name in names if name)),
                "items": [flip.item_id for flip in flips],
                "rules": sorted({items[flip.item_id].number for flip in flips}),
            }
        )
    return sorted(stops, key=lambda stop: (-len(stop["items"]), stop["site"], stop["address"]))


def stop_words(stop: dict) -> str:
    """ "12 rules of site dmz now stop after 10.0.1.1", "1 rule of site dmz is now rejected by
    10.0.2.1: communication administratively prohibited"."""
    count = len(stop["items"])
    said = f"{count} {Stop.rules(count)} of site {stop['site']}"
    said += f" {Stop(stop['how']).verb(count, now=True)} {stop['address']}"
    return f"{said}: {', '.join(stop['icmp'])}" if stop["icmp"] else said


@receiver(signals.run_failed)
def on_run_failed(sender: type, run: ProbeRun, **kwargs: object) -> None:
    deployment = run.deployment
    reasons = sorted({result.summary for result in run.results() if result.summary})
    subject = f"{deployment.name}: probe run {run.pk} failed, no rule could be probed"
    Alert.raise_for(
        deployment.team_id,
        AlertKind.RUN_FAILED,
        subject,
        "\n".join([subject, "", *reasons]),
        deployment=deployment,
        details={"run": run.pk, "reasons": reasons},
    )


def alert_silent_sites(now: datetime.datetime | None = None) -> int:
    """An alert to each team using a site whose workers have all been silent longer than
    ALERT_SITE_SILENT_AFTER; once per silence (none since its last heartbeat)."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.ALERT_SITE_SILENT_AFTER)
    silent = WorkerHeartbeat.objects.order_by().values_list("site").annotate(last=Max("last_seen"))
    raised = 0
    for site, last_seen in silent.filter(last__lt=cutoff):
        teams = set(Deployment.objects.in_site(site).values_list("team", flat=True))
        for team_id in sorted(teams):
            said = Alert.objects.filter(team_id=team_id, kind=AlertKind.SITE_SILENT, site=site, created__gte=last_seen)
            if said.exists():
                continue
            minutes = (now - last_seen).total_seconds() / 60
            subject = f"Probe site {site!r} has had no live worker for {minutes:.0f} minutes"
            text = f"{subject}; last heartbeat {last_seen:%Y-%m-%d %H:%M} UTC. Its rules cannot be probed."
            Alert.raise_for(
                team_id, AlertKind.SITE_SILENT, subject, text, site=site, details={"last_seen": str(last_seen)}
            )
            raised += 1
    return raised


def send_test_alert(channel: AlertChannel, user: object) -> Alert:
    subject = f"Test alert to {channel.name}"
    text = f"{subject}, sent by {user} from the port-requirement portal. Nothing is wrong."
    return Alert.raise_for(channel.team_id, AlertKind.TEST, subject, text, channels=[channel])


@receiver(request_moved)
def on_request_moved(sender: type, request: ChangeRequest, step: RequestTransition, **kwargs: object) -> None:
    """In the step's transaction: the team's channels that carry change requests hear of it."""
    if step.action not in ANNOUNCED_STEPS:
        return
    deployment, who = request.deployment, step.user_name or "the portal"
    state = RequestState(step.to_state)
    subject = f"{deployment.name}: {request} is {state.label.lower()} ({who})"
    body = [subject, "", f"Rules: {numbers_of(request)}."]
    if step.comment:
        body += [f"{who}: {step.comment}"]
    body += ["", NEXT_STEP[state]]
    details = {"request": request.pk, "step": step.action, "state": step.to_state, "by": who, "comment": step.comment}
    Alert.raise_for(
        deployment.team_id, AlertKind.CHANGE_REQUEST, subject, "\n".join(body), deployment=deployment, details=details
    )


def warn_expiring(request: ChangeRequest, rollback: ChangeRequest) -> Alert:
    """The team hears that a request's temporary rules expire, with the rollback drafted for them."""
    deployment = request.deployment
    subject = f"{deployment.name}: the rules of {request} expire on {request.expiry}"
    body = [
        subject,
        "",
        f"Rules: {numbers_of(request)}.",
        f"The rollback is drafted as {rollback}: submit it for approval.",
    ]
    details = {"request": request.pk, "expiry": str(request.expiry), "rollback": rollback.pk}
    return Alert.raise_for(
        deployment.team_id, AlertKind.EXPIRING, subject, "\n".join(body), deployment=deployment, details=details
    )


def numbers_of(request: ChangeRequest) -> str:
    numbers = [rule["number"] for rule in request.rules]
    shown = ", ".join(map(str, numbers[:LISTED_RULES]))
    return shown + (f" and {len(numbers) - LISTED_RULES} more" if len(numbers) > LISTED_RULES else "")
