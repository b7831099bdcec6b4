"""Where silence starts: for a rule that gets no answer, the hops that answer a probe of the rule's
own protocol and port sent with TTL (IPv4) or hop limit (IPv6) 1, 2, 3, ... as `traceroute -T`
and `mtr --tcp` do, one flow at a time.

A router that gets a packet whose TTL runs out answers Time Exceeded; the kernel hands that answer
to the socket that sent the packet, in its error queue (icmp.py): no raw socket, no capability.
A firewall that drops the flow still answers the packets whose TTL ends at it (Linux routes, and
sends Time Exceeded, before its forward chain), and nothing beyond it sees the flow: the last hop
that answered is the dropping device, or the one just before it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from .icmp import keep_errors, limit_hops, read_error

# Hops are probed this many at once (a window); the next window only if the path goes on.
WINDOW = 8
# A window whose last SILENT hops did not answer ends the trace: the flow stops before them.
SILENT = 3


@dataclass(frozen=True)
class Hop:
    address: str  # who answered: a router (Time Exceeded, or an ICMP error) or the destination
    reached: bool  # the destination itself answered: nothing beyond it to trace


async def trace(address: str, port: int, protocol: str, payload: bytes, max_hops: int, wait: float) -> dict:
    """The evidence of a trace toward `address` `port`: `path` (the addresses that answered, from
    the site outward), `stopped_after` and `stopped_hop` (the last of them and its hop), and
    `traced_hops` (how far the probes went)."""
    answered: dict[int, Hop] = {}
    first, last = 1, 0
    while first <= max_hops:
        last = min(first + WINDOW - 1, max_hops)
        hops = range(first, last + 1)
        found = await asyncio.gather(*(probe_hop(address, port, protocol, payload, ttl, wait) for ttl in hops))
        answered |= {ttl: hop for ttl, hop in zip(hops, found, strict=True) if hop is not None}
        if any(hop.reached for hop in answered.values()) or not any(ttl > last - SILENT for ttl in answered):
            break
        first = last + 1
    return path_evidence(answered, last)


def path_evidence(answered: dict[int, Hop], traced: int) -> dict:
    """The hops in order, each device once (one that answers for several hops, as a router that
    says host unreachable to every probe past it, is listed at its first)."""
    path: list[str] = []
    stopped_hop = 0
    for ttl in sorted(answered):
        hop = answered[ttl]
        if hop.address not in path:
            path.append(hop.address)
            stopped_hop = ttl
        if hop.reached:
            break
    evidence: dict = {"path": path, "traced_hops": traced}
    if path:
        evidence |= {"stopped_after": path[-1], "stopped_hop": stopped_hop}
    return evidence


async def probe_hop(address: str, port: int, protocol: str, payload: bytes, ttl: int, wait: float) -> Hop | None:
    """One probe with this TTL: who answered it within `wait`, or None."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    loop = asyncio.get_running_loop()
    with socket.socket(family, kind) as sock:
        sock.setblocking(False)
        keep_errors(sock)
        limit_hops(sock, ttl)
        try:
            if kind == socket.SOCK_DGRAM:
                sock.connect((address, port))  # picks the route; sends nothing
                sock.send(payload)
                await asyncio.wait_for(loop.sock_recv(sock, 512), wait)
            else:
                await asyncio.wait_for(loop.sock_connect(sock, (address, port)), wait)
        except TimeoutError:
            return None
        except ConnectionRefusedError:  # a reset, or the destination's own port unreachable
            error = read_error(sock)
            return Hop(error.offender, error.offender == address) if error else Hop(address, True)
        except OSError:
            error = read_error(sock)
            return Hop(error.offender, error.offender == address) if error else None
        return Hop(address, True)  # a SYN-ACK or a datagram: the destination answers now
