from django.db import models

from .engine import State

# The states as the database stores them: the engine's one declaration, after `pending`, which only
# the recorder knows (an item not probed yet). The values are the columns' values: keep them.
ProbeState = models.TextChoices(
    "ProbeState",
    [("PENDING", ("pending", "Pending")), *((state.name, (state.value, state.label)) for state in State)],
)
ProbeState.__doc__ = "What a probe found on a rule's path (see DESIGN.md)."

# A probe that reached a verdict about the path (pending and not probed did not).
PROBED_STATES = [s for s in ProbeState if s not in (ProbeState.PENDING, ProbeState.NOT_PROBED)]
# What each state means, for the page's legend.
STATE_MEANINGS = {ProbeState(state): state.meaning for state in State}
# Latest probe states that mean the rule does not work (yet).
FAILING_STATES = {ProbeState(state) for state in State if state.failing}
# The tone a page shows each state in (the CSS class tone-<tone>): good for a path that works, bad
# for a failing one, none for no verdict either way (pending, not probed, unverifiable). The
# stylesheet styles the tones, never a state: a new state takes its tone from its declaration.
STATE_TONES = {s: "bad" if s in FAILING_STATES else "good" if s == ProbeState.OPEN else "none" for s in ProbeState}


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    PARTLY_DONE = "partly_done", "Partly done"  # some items could not be probed
    FAILED = "failed", "Failed"  # no item could be probed
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = [RunStatus.DONE, RunStatus.PARTLY_DONE, RunStatus.FAILED, RunStatus.CANCELLED]


class PinSource(models.TextChoices):
    EXPECTED = "expected", "Expected (set by an admin)"
    FIRST_SEEN = "first_seen", "First seen by a probe"


class AlertKind(models.TextChoices):
    REGRESSION = "regression", "A rule that worked stopped working"
    INTERCEPTION = "interception", "Something in the path answers for the server"
    SITE_SILENT = "site_silent", "A probe site has no live worker"
    RUN_FAILED = "run_failed", "A probe run failed"
    CHANGE_REQUEST = "change_request", "A change request took a step"
    EXPIRING = "expiring", "A change request's rules expire soon"
    TEST = "test", "Test alert"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # being sent, or waiting for its next try
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # every try failed
