"""The states a probe finds on a rule's path (see DESIGN.md), declared once: the engine reports
them, the database stores their values, the page shows their labels and meanings."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """What a probe found on a rule's path: a value, a label for people, what it means for the
    rule (the page's legend), and whether it means the rule does not work (yet)."""

    label: str
    meaning: str
    failing: bool

    def __new__(cls, value: str, label: str, meaning: str, failing: bool = False) -> State:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        member.meaning = meaning
        member.failing = failing
        return member

    # a service answered
    OPEN = "open", "Open", "A service answered: the path is open."
    # path open, nothing listens (a firewall REJECT looks the same)
    REFUSED = (
        "refused",
        "Refused",
        "The host was reached, but nothing listens on the port (a rejecting firewall looks the same).",
        True,
    )
    # no answer in time: dropped, or host down
    FILTERED = "filtered", "Filtered", "No answer in time: a firewall drops the traffic, or the host is down.", True
    # no route, ICMP unreachable
    UNREACHABLE = "unreachable", "Unreachable", "No route to the host (ICMP unreachable).", True
    DNS_ERROR = "dns_error", "DNS error", "The destination's name does not resolve.", True
    # unexpected certificate, masked SMTP banner
    INTERCEPTED = (
        "intercepted",
        "Intercepted",
        "Something in the path answers for the server: SSL decryption or SMTP inspection.",
        True,
    )
    # one-way UDP such as SNMP traps
    UNVERIFIABLE = (
        "unverifiable",
        "Unverifiable",
        "One-way UDP (SNMP traps): nothing answers; check the receiver's log instead.",
    )
    ERROR = "error", "Error", "The probe itself failed.", True
    # no live worker in the source's site, cancelled, deadline; or an address the engine may not reach
    NOT_PROBED = (
        "not_probed",
        "Not probed",
        "Not tested: no live worker in the source's site, cancelled, or past the deadline.",
    )


# For a range whose ports disagree, the item shows the most telling of their states.
SEVERITY = [
    State.INTERCEPTED,
    State.ERROR,
    State.DNS_ERROR,
    State.UNREACHABLE,
    State.FILTERED,
    State.REFUSED,
    State.UNVERIFIABLE,
    State.OPEN,
]
