"""Where the engine may connect: never to the kinds of address no rule names, and only inside
the networks its probe site may reach (loopback unless the operator opens more)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ports.addresses import Network, never_probed

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def refusal(address: str, allowed: Iterable[Network]) -> str | None:
    """Why the engine will not connect to an address (None if it may): never to the kinds no
    rule names, and only inside the networks its probe site may reach."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    reason = never_probed(ip)
    if reason:
        return f"{address} is {reason}: never probed"
    allowed = list(allowed)
    if not any(ip.version == network.version and ip in network for network in allowed):
        networks = ", ".join(map(str, allowed)) or "none"
        return (
            f"{address} is outside the networks this probe site may reach ({networks}): not probed. "
            "The operator opens more with PROBE_ALLOWED_NETWORKS."
        )
    return None
