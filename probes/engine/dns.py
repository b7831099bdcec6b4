"""DNS, over TCP and UDP: a query any DNS server answers, and how to read its reply."""

from __future__ import annotations

import asyncio
import os
import struct

from .checks import Check


def dns_query(query_id: int) -> bytes:
    """A query for the root's NS records, recursion not desired: any DNS server answers it."""
    header = struct.pack("!HHHHHH", query_id, 0x0000, 1, 0, 0, 0)
    return header + b"\x00" + struct.pack("!HH", 2, 1)


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def parse_dns_reply(data: bytes, request: bytes) -> dict:
    if len(data) < 12:
        raise ValueError(f"{len(data)} bytes is too short for a DNS header")
    query_id, flags, _, answers, authorities, _ = struct.unpack("!HHHHHH", data[:12])
    if query_id != struct.unpack("!H", request[:2])[0] or not flags & 0x8000:
        raise ValueError("not a reply to the query sent")
    rcode = RCODES.get(flags & 0x000F, str(flags & 0x000F))
    return {
        "detail": f"DNS answered {rcode} ({answers} answers, {authorities} authority records)",
        "rcode": rcode,
        "answers": answers,
    }


async def speak_dns(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: Check) -> dict:
    request = dns_query(int.from_bytes(os.urandom(2), "big"))
    writer.write(struct.pack("!H", len(request)) + request)
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return {"transport": "tcp", **parse_dns_reply(await reader.readexactly(length), request)}


def parse_dns_udp_reply(data: bytes, request: bytes) -> dict:
    return {"transport": "udp", **parse_dns_reply(data, request)}
