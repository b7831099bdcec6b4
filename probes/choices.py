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
