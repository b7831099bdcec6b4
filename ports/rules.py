"""A firewall rule: the one value that derivation, checklist items, every export and every page use.

A rule is a requirement of the catalog made concrete for a deployment: who opens the
connection (source), who listens (destination), the appliance interface it uses, the
protocol and the port range. Its identity is what a firewall allows; names and sites
are labels that may change without making it another rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from .addresses import Kind, address_of
from .choices import Role

TO_APPLIANCE = "to the appliance"
FROM_APPLIANCE = "from the appliance"
ROLE_LABELS = dict(Role.choices)
# Services that carry TLS (directly, or by STARTTLS on SMTP and LDAP): an SSL-decrypting or
# inspecting middlebox breaks them, which is the vendor's warning. Firewalls exempt them from decryption.
TLS_BEARING = {"tls", "smtp", "ldap"}
# Marks for the catalog's footnotes, one per footnote: the vendor's page marks both of its own "*".
FOOTNOTE_MARKS = ["*", "†", "‡", "§", "¶"]

# What a firewall allows: source, destination, protocol, first and last port.
FlowKey = tuple[str, str, str, int, int]


# Value types are NamedTuples: immutable, hashable and quick to build by the thousand.


class PortRange(NamedTuple):
    start: int
    end: int

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"

    @property
    def count(self) -> int:
        return self.end - self.start + 1

    def overlaps(self, other: PortRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def shifted(self, offset: int) -> PortRange:
        return PortRange(self.start + offset, self.end + offset)


class Endpoint(NamedTuple):
    role: str
    name: str
    address: str  # an IP address, a hostname, a CIDR or "any"
    site: str

    @property
    def family(self) -> int | None:
        """4 or 6 for an address or network, None for "any" or a hostname (either family)."""
        return address_of(self.address).family

    @property
    def kind(self) -> Kind:
        """Any, an address, a network or a name (addresses.Kind)."""
        return address_of(self.address).kind


class Requirement(Protocol):
    """What a rule reads of its catalog requirement (models.Requirement has it)."""

    uid: str
    description: str
    direction: str
    service: str
    table: str
    footnotes: list[dict]


class Rule(NamedTuple):
    requirement: Requirement
    source: Endpoint
    destination: Endpoint
    interface: str
    protocol: str
    ports: PortRange

    def identity(self) -> tuple[str, str, str, str, int, int]:
        """What makes two rules the same firewall rule: names, sites and the interface label
        (which follows from the appliance's address) are not part of it."""
        return (
            self.requirement.uid,
            self.source.address,
            self.destination.address,
            self.protocol,
            self.ports.start,
            self.ports.end,
        )

    @property
    def key(self) -> str:
        """The identity as a fixed-length key, for storing and looking up items."""
        return hashlib.sha256("|".join(map(str, self.identity())).encode()).hexdigest()

    @property
    def direction(self) -> str:
        """The flow as a firewall sees it, whatever word the vendor's page uses."""
        return TO_APPLIANCE if self.destination.role == Role.APPLIANCE else FROM_APPLIANCE

    @property
    def flow(self) -> FlowKey:
        """What a firewall allows. Rules of several requirements with the same flow are one line
        of a firewall: exports merge them under one number (ChecklistItem.number)."""
        return (self.source.address, self.destination.address, self.protocol, self.ports.start, self.ports.end)

    @property
    def carries_tls(self) -> bool:
        """Exempt it from SSL decryption and inspection (the vendor's warning)."""
        return self.requirement.service in TLS_BEARING

    @property
    def firewall(self) -> str:
        """The path a firewall team owns: from the source's site to the destination's."""
        return f"{self.source.site} → {self.destination.site}"

    @property
    def path(self) -> str:
        """Initiator → listener, by role."""
        return f"{ROLE_LABELS[self.source.role]} → {ROLE_LABELS[self.destination.role]}"

    def as_dict(self) -> dict[str, object]:
        """The rule's columns (RULE_COLUMNS), flat, as JSON, CSV and sheets show them."""
        requirement = self.requirement
        return {
            "source": self.source.address,
            "source_name": self.source.name,
            "source_role": self.source.role,
            "source_site": self.source.site,
            "destination": self.destination.address,
            "destination_name": self.destination.name,
            "destination_role": self.destination.role,
            "destination_site": self.destination.site,
            "protocol": self.protocol,
            "ports": str(self.ports),
            "port_start": self.ports.start,
            "port_end": self.ports.end,
            "direction": self.direction,
            "path": self.path,
            "interface": self.interface,
            "description": requirement.description,
            "requirement": requirement.uid,
            "vendor_direction": requirement.direction,
            "notes": [f"{note['sign']} {note['text']}" for note in requirement.footnotes],
            "service": requirement.service,
            "carries_tls": self.carries_tls,
            "table": requirement.table,
        }


# The columns of Rule.as_dict(), in reading order, with the heading a sheet gives each.
RULE_COLUMNS: list[tuple[str, str]] = [
    ("source", "Source"),
    ("source_name", "Source name"),
    ("source_role", "Source role"),
    ("source_site", "Source site"),
    ("destination", "Destination"),
    ("destination_name", "Destination name"),
    ("destination_role", "Destination role"),
    ("destination_site", "Destination site"),
    ("protocol", "Protocol"),
    ("ports", "Port(s)"),
    ("port_start", "First port"),
    ("port_end", "Last port"),
    ("direction", "Direction"),
    ("path", "Initiator → listener"),
    ("interface", "Interface"),
    ("description", "Purpose"),
    ("requirement", "Required by"),
    ("vendor_direction", "Vendor's direction"),
    ("notes", "Notes"),
    ("service", "Service"),
    ("carries_tls", "Carries TLS: exempt from decryption"),
    ("table", "Catalog table"),
]

IDENTITY_FIELDS = ["requirement", "source", "destination", "protocol", "port_start", "port_end"]


def fingerprint(rules: Iterable[Rule]) -> str:
    """SHA-256 of a rule set: what it allows, whatever the order, status or labels."""
    canonical = json.dumps(sorted(rule.identity() for rule in rules), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
