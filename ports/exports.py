"""A checklist as a change request's rule set: which items, in which order, and its fingerprint."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass

from django.db.models import QuerySet

from .choices import CatalogTable, ItemStatus
from .models import ChecklistItem, Deployment

# Latest probe states that mean the rule does not work (yet).
FAILING_STATES = {"refused", "filtered", "unreachable", "dns_error", "intercepted", "error"}
# Services whose traffic an SSL-decrypting or inspecting middlebox breaks (the vendor's warning).
INSPECTION_SENSITIVE = {"tls", "smtp", "ldap"}


class Scope:
    ALL = "all"
    UNVERIFIED = "unverified"  # not yet verified (nor waived)
    FAILED = "failed"  # the latest probe failed
    SELECTION = "selection"  # the items given by id

    choices = [ALL, UNVERIFIED, FAILED, SELECTION]


@dataclass(frozen=True)
class ExportRule:
    """One rule of a change request, as a firewall team reads it."""

    number: int
    item: int
    requirement: str
    source: str
    source_name: str
    source_site: str
    destination: str
    destination_name: str
    destination_site: str
    protocol: str
    port_start: int
    port_end: int
    direction: str  # as the firewall sees it: into or out of the appliance
    interface: str
    purpose: str
    notes: tuple[str, ...]
    service: str
    status: str
    probe_state: str
    probe_checked_at: str
    probe_site: str

    @property
    def ports(self) -> str:
        return str(self.port_start) if self.port_start == self.port_end else f"{self.port_start}-{self.port_end}"

    @property
    def inspection_sensitive(self) -> bool:
        return self.service in INSPECTION_SENSITIVE

    @property
    def firewall(self) -> str:
        """The path a firewall team owns: from the source's site to the destination's."""
        return f"{self.source_site} → {self.destination_site}"

    def identity(self) -> list:
        return [self.requirement, self.source, self.destination, self.protocol, self.port_start, self.port_end]


def select_items(deployment: Deployment, scope: str, ids: list[int] | None = None) -> QuerySet[ChecklistItem]:
    items = deployment.checklist.prefetch_related("requirement")
    if scope == Scope.UNVERIFIED:
        return items.exclude(status__in=[ItemStatus.VERIFIED, ItemStatus.WAIVED])
    if scope == Scope.FAILED:
        return items.filter(probe_results__is_latest=True, probe_results__state__in=FAILING_STATES)
    if scope == Scope.SELECTION:
        return items.filter(pk__in=ids or [])
    return items


def export_rules(items: QuerySet[ChecklistItem] | list[ChecklistItem], latest: dict[int, object]) -> list[ExportRule]:
    """The rules in checklist order, numbered, with each item's latest probe result."""
    rules = []
    for number, item in enumerate(items, start=1):
        requirement = item.requirement
        probe = latest.get(item.pk)
        inbound = requirement.table == CatalogTable.APPLIANCE
        rules.append(
            ExportRule(
                number=number,
                item=item.pk,
                requirement=requirement.uid,
                source=item.source,
                source_name=item.source_name,
                source_site=item.source_site,
                destination=item.destination,
                destination_name=item.destination_name,
                destination_site=item.destination_site,
                protocol=item.protocol,
                port_start=item.port_start,
                port_end=item.port_end,
                direction="inbound to appliance" if inbound else "outbound from appliance",
                interface=item.interface,
                purpose=requirement.description,
                notes=tuple(note["text"] for note in requirement.footnotes),
                service=requirement.service,
                status=item.status,
                probe_state=probe.state if probe else "",
                probe_checked_at=probe.checked_at.isoformat(timespec="seconds") if probe and probe.checked_at else "",
                probe_site=probe.site if probe else "",
            )
        )
    return rules


def fingerprint(rules: list[ExportRule]) -> str:
    """SHA-256 of the rule set (what is allowed, not its status), independent of order."""
    canonical = json.dumps(sorted(rule.identity() for rule in rules), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def rules_as_dicts(rules: list[ExportRule]) -> list[dict]:
    return [asdict(rule) | {"ports": rule.ports, "notes": list(rule.notes)} for rule in rules]


XLSX_COLUMNS = [
    ("number", "#"),
    ("source", "Source"),
    ("source_name", "Source name"),
    ("destination", "Destination"),
    ("destination_name", "Destination name"),
    ("protocol", "Protocol"),
    ("ports", "Port(s)"),
    ("direction", "Direction"),
    ("interface", "Interface"),
    ("purpose", "Purpose"),
    ("requirement", "Required by"),
    ("status", "Status"),
    ("probe_state", "Last probe"),
    ("probe_checked_at", "Probed at"),
]


def to_xlsx(rules: list[ExportRule], title: str, fingerprint_value: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Rules"
    sheet.append([label for _, label in XLSX_COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rules_as_dicts(rules):
        sheet.append([row[name] for name, _ in XLSX_COLUMNS])
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    about = workbook.create_sheet("About")
    about.append(["Checklist", title])
    about.append(["Fingerprint (SHA-256 of the rule set)", fingerprint_value])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
