"""Addresses as the portal and the probe engine judge them, in plain Python (no Django): what an
endpoint's text is (`Address`: any, an IP address, a network or a DNS name), and which addresses
no rule names and no probe reaches."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Kind(StrEnum):
    ANY = "any"  # a peer network of anyone (mail senders on the Internet)
    ADDRESS = "address"  # one IP address
    NETWORK = "network"  # a CIDR
    NAME = "name"  # a DNS hostname, resolved by whoever uses it


@dataclass(frozen=True, slots=True)
class Address:
    """What an endpoint's text is, decided here once for the derivation, the sort, the exports
    and the pages. `network` is the address as a network (/32, /128) or the CIDR; None for a
    name or any."""

    text: str
    kind: Kind
    network: Network | None = None

    @property
    def family(self) -> int | None:
        """4 or 6 for an address or network, None for "any" or a name (either family)."""
        return self.network.version if self.network is not None else None

    @property
    def sort_key(self) -> str:
        """Text that sorts addresses as numbers (.3 before .29), a network by its first address
        and length, "any" first and names last: the same on every database."""
        if self.network is None:
            return "0" if self.kind == Kind.ANY else f"9{self.text.lower()}"
        network = self.network
        return f"{network.version}{network.network_address.packed.hex()}{network.prefixlen:03d}"


@lru_cache(maxsize=4096)
def address_of(text: str) -> Address:
    """The Address an endpoint's text is; kept, as a checklist names the same few many times."""
    if text == Kind.ANY:
        return Address(text, Kind.ANY)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return Address(text, Kind.NAME)
    return Address(text, Kind.NETWORK if "/" in text else Kind.ADDRESS, network)


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# Addresses no rule names and no probe reaches, whatever the operator allows: AWS's IPv6
# metadata service sits in a private range, the others are special by their kind.
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254")}
BROADCAST = ipaddress.ip_address("255.255.255.255")


# IPv6 prefixes whose last 32 bits are an IPv4 address that a translator or a dual stack may
# reach: NAT64 (well-known and local-use), SIIT's translated form, and the deprecated
# IPv4-compatible form (::a.b.c.d; :: and ::1 themselves excluded below).
IPV4_IN_LAST_32_BITS = [
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
    ipaddress.ip_network("::/96"),
]


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: mapped, NAT64, SIIT, IPv4-compatible, 6to4,
    Teredo."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if int(ip) > 1 and any(ip in prefix for prefix in IPV4_IN_LAST_32_BITS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def never_probed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is never a probe's target (None if it may be one)."""
    if ip.version == 6:
        for inner in embedded_ipv4(ip):
            if reason := never_probed(inner):
                return f"{reason} ({inner}, which it leads to)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip == BROADCAST:
        return "the broadcast address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services answer there)"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    return None
