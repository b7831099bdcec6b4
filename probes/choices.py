from django.db import models


class ProbeState(models.TextChoices):
    """What a probe found on a rule's path (see DESIGN.md)."""

    PENDING = "pending", "Pending"
    OPEN = "open", "Open"  # a service answered
    REFUSED = "refused", "Refused"  # path open, nothing listens (a firewall REJECT looks the same)
    FILTERED = "filtered", "Filtered"  # no answer in time: dropped, or host down
    UNREACHABLE = "unreachable", "Unreachable"  # no route, ICMP unreachable
    DNS_ERROR = "dns_error", "DNS error"
    INTERCEPTED = "intercepted", "Intercepted"  # unexpected certificate, masked SMTP banner
    UNVERIFIABLE = "unverifiable", "Unverifiable"  # one-way UDP such as SNMP traps
    ERROR = "error", "Error"
    NOT_PROBED = "not_probed", "Not probed"  # no live worker in the source's site, cancelled, deadline


# A probe that reached a verdict about the path (pending and not probed did not).
PROBED_STATES = [s for s in ProbeState if s not in (ProbeState.PENDING, ProbeState.NOT_PROBED)]
# What each state means, for the page's legend.
STATE_MEANINGS = {
    ProbeState.OPEN: "A service answered: the path is open.",
    ProbeState.REFUSED: "The host was reached, but nothing listens on the port (a rejecting firewall looks the same).",
    ProbeState.FILTERED: "No answer in time: a firewall drops the traffic, or the host is down.",
    ProbeState.UNREACHABLE: "No route to the host (ICMP unreachable).",
    ProbeState.DNS_ERROR: "The destination's name does not resolve.",
    ProbeState.INTERCEPTED: "Something in the path answers for the server: SSL decryption or SMTP inspection.",
    ProbeState.UNVERIFIABLE: "One-way UDP (SNMP traps): nothing answers; check the receiver's log instead.",
    ProbeState.ERROR: "The probe itself failed.",
    ProbeState.NOT_PROBED: "Not tested: no live worker in the source's site, cancelled, or past the deadline.",
}
# Latest probe states that mean the rule does not work (yet).
FAILING_STATES = {
    ProbeState.REFUSED,
    ProbeState.FILTERED,
    ProbeState.UNREACHABLE,
    ProbeState.DNS_ERROR,
    ProbeState.INTERCEPTED,
    ProbeState.ERROR,
}


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
    TEST = "test", "Test alert"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # being sent, or waiting for its next try
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # every try failed
