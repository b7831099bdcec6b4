"""Who said no: the ICMP or ICMPv6 error behind a failed connect, read from the socket's own error
queue (IP_RECVERR / IPV6_RECVERR), with the address of the device that sent it.

No raw socket and no capability: the kernel already matches each ICMP error to the socket whose
packet caused it; with IP_RECVERR set it also keeps the error, type, code and sender in the
socket's error queue (recvmsg with MSG_ERRQUEUE). The same queue brings back the Time Exceeded
answers of a trace's TTL-limited probes (trace.py).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .states import State

# Linux's values (<linux/in.h>, <linux/in6.h>, <linux/errqueue.h>): Python 3.11 names none of them.
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
# struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ee_pad, ee_info, ee_data;
# the offender's sockaddr follows it.
EXTENDED_ERR = struct.Struct("=IBBBBII")

DESTINATION_UNREACHABLE = {4: 3, 6: 1}  # the type, by IP version
TIME_EXCEEDED = {4: 11, 6: 3}
PORT_UNREACHABLE = {4: 3, 6: 4}  # the code: nothing listens (or a firewall says so)

# Every code, by (IP version, type), in the RFCs' words (RFC 792, 1122, 1812; RFC 4443, 8883).
NAMES: dict[tuple[int, int], dict[int, str]] = {
    (4, 3): {
        0: "network unreachable",
        1: "host unreachable",
        2: "protocol unreachable",
        3: "port unreachable",
        4: "fragmentation needed",
        5: "source route failed",
        6: "destination network unknown",
        7: "destination host unknown",
        8: "source host isolated",
        9: "network administratively prohibited",
        10: "host administratively prohibited",
        11: "network unreachable for the type of service",
        12: "host unreachable for the type of service",
        13: "communication administratively prohibited",
        14: "host precedence violation",
        15: "precedence cutoff in effect",
    },
    (4, 11): {0: "TTL exceeded in transit", 1: "fragment reassembly time exceeded"},
    (4, 12): {0: "parameter problem", 1: "a required option is missing", 2: "bad length"},
    (6, 1): {
        0: "no route to destination",
        1: "communication administratively prohibited",
        2: "beyond the scope of the source address",
        3: "address unreachable",
        4: "port unreachable",
        5: "source address failed ingress/egress policy",
        6: "reject route to destination",
        7: "error in source routing header",
        8: "headers too long",
    },
    (6, 2): {0: "packet too big"},
    (6, 3): {0: "hop limit exceeded in transit", 1: "fragment reassembly time exceeded"},
    (6, 4): {
        0: "erroneous header field",
        1: "unrecognized next header",
        2: "unrecognized IPv6 option",
        3: "first fragment has an incomplete header chain",
    },
}
TYPE_NAMES = {
    (4, 3): "destination unreachable",
    (4, 11): "time exceeded",
    (4, 12): "parameter problem",
    (6, 1): "destination unreachable",
    (6, 2): "packet too big",
    (6, 3): "time exceeded",
    (6, 4): "parameter problem",
}


@dataclass(frozen=True)
class IcmpError:
    """An ICMP(v6) error that came back for a probe's packet, and the device that sent it."""

    version: int  # 4 or 6
    type: int
    code: int
    offender: str  # the address of the device that sent it

    @property
    def name(self) -> str:
        known = NAMES.get((self.version, self.type), {})
        if self.code in known:
            return known[self.code]
        kind = TYPE_NAMES.get((self.version, self.type), f"type {self.type}")
        return f"{kind}, code {self.code}"

    @property
    def state(self) -> State:
        """The same for both families: a port unreachable is `refused` (nothing listens, or a
        firewall says so: the path reached a device that answers for the port); every other
        error that ends the probe is `unreachable`, administratively prohibited included."""
        if self.type == DESTINATION_UNREACHABLE[self.version] and self.code == PORT_UNREACHABLE[self.version]:
            return State.REFUSED
        return State.UNREACHABLE

    @property
    def time_exceeded(self) -> bool:
        return self.type == TIME_EXCEEDED[self.version]

    def evidence(self) -> dict:
        return {"rejected_by": self.offender, "icmp": {"type": self.type, "code": self.code, "name": self.name}}


def keep_errors(sock: socket.socket) -> None:
    """Ask the kernel to keep the ICMP errors of this socket's packets in its error queue. Set
    before connect: an error that comes while it is unset is not kept."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def limit_hops(sock: socket.socket, hops: int) -> None:
    """The TTL (IPv4) or hop limit (IPv6) of the socket's packets."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)


def read_error(sock: socket.socket) -> IcmpError | None:
    """The ICMP error at the head of the socket's error queue, taken from it; None if the queue
    holds none (the error was local: no route, for one)."""
    while True:
        try:
            _, ancillary, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
        except OSError:  # empty (EAGAIN), or the socket is closed
            return None
        for level, kind, data in ancillary:
            ours = (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR))
            if ours and (found := parse_extended_err(data)):
                return found
        # A local error (EMSGSIZE, say) or something unexpected: look at the next one.


def parse_extended_err(data: bytes) -> IcmpError | None:
    """struct sock_extended_err and the offender's sockaddr after it, if the origin was ICMP(v6)."""
    if len(data) < EXTENDED_ERR.size + 2:
        return None
    _, origin, kind, code, _, _, _ = EXTENDED_ERR.unpack_from(data)
    (family,) = struct.unpack_from("=H", data, EXTENDED_ERR.size)
    start = EXTENDED_ERR.size
    if origin == SO_EE_ORIGIN_ICMP and family == socket.AF_INET and len(data) >= start + 8:
        # sockaddr_in: family, port, then the address
        return IcmpError(4, kind, code, socket.inet_ntop(socket.AF_INET, data[start + 4 : start + 8]))
    if origin == SO_EE_ORIGIN_ICMP6 and family == socket.AF_INET6 and len(data) >= start + 24:
        # sockaddr_in6: family, port, flow info, then the address
        return IcmpError(6, kind, code, socket.inet_ntop(socket.AF_INET6, data[start + 8 : start + 24]))
    return None
