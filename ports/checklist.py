"""From a deployment to its checklist: the concrete rules its catalog version asks for."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .choices import Role
from .models import Appliance, ChecklistItem, Deployment, Requirement

# The item fields that follow from the rule (besides its key and position).
RULE_FIELDS = [
    "requirement_id",
    "source_role",
    "source_name",
    "source",
    "source_site",
    "destination_role",
    "destination_name",
    "destination",
    "destination_site",
    "interface",
    "protocol",
    "port_start",
    "port_end",
]


@dataclass(frozen=True)
class Endpoint:
    role: str
    name: str
    address: str
    site: str


@dataclass(frozen=True)
class Rule:
    requirement: Requirement
    source: Endpoint
    destination: Endpoint
    interface: str
    port_start: int
    port_end: int

    @property
    def key(self) -> str:
        """What makes two rules the same firewall rule; names and sites are only labels."""
        parts = (
            self.requirement.uid,
            self.source.address,
            self.destination.address,
            self.interface,
            self.requirement.protocol,
            str(self.port_start),
            str(self.port_end),
        )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def item_fields(self) -> dict[str, object]:
        return {
            "requirement_id": self.requirement.pk,
            "source_role": self.source.role,
            "source_name": self.source.name,
            "source": self.source.address,
            "source_site": self.source.site,
            "destination_role": self.destination.role,
            "destination_name": self.destination.name,
            "destination": self.destination.address,
            "destination_site": self.destination.site,
            "interface": self.interface,
            "protocol": self.requirement.protocol,
            "port_start": self.port_start,
            "port_end": self.port_end,
        }


@dataclass
class SyncResult:
    added: int
    removed: int
    kept: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def appliance_endpoint(appliance: Appliance, interface: str) -> Endpoint:
    return Endpoint(Role.APPLIANCE, appliance.hostname, appliance.address(interface) or "", appliance.site)


def derive_rules(deployment: Deployment) -> tuple[list[Rule], list[str]]:
    """The deployment's rules in catalog order, and what kept a requirement from becoming one."""
    requirements = [r for r in deployment.catalog_version.requirements.all() if r.applies_to(deployment.features)]
    appliances = list(deployment.appliances.all())
    peers: dict[str, list[Endpoint]] = defaultdict(list)
    for host in deployment.hosts.all():
        peers[host.role].append(Endpoint(host.role, host.name, host.address, host.site))
    for network in deployment.peer_networks.all():
        peers[network.role].append(Endpoint(network.role, network.name, network.network, network.site))

    rules: list[Rule] = []
    warnings: list[str] = []
    if not appliances:
        warnings.append("The deployment has no appliances yet.")

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)

    for requirement in requirements:
        port_start, port_end = deployment.dlp_ports(requirement)
        label = f"{requirement.uid} ({requirement.description}, {requirement.ports}/{requirement.protocol})"
        remote_role = requirement.listener if requirement.initiator == Role.APPLIANCE else requirement.initiator
        if remote_role != Role.PEER_APPLIANCE and not peers[remote_role] and appliances:
            warn(f"No {Role(remote_role).label} is defined: {label} has no rule.")
            continue
        for appliance in appliances:
            interface = appliance.interface_for(requirement)
            if interface is None:
                warn(f"{appliance.hostname} has no address on {requirement.interface_text}: {label} has no rule.")
                continue
            local = appliance_endpoint(appliance, interface)
            if requirement.initiator == Role.APPLIANCE:
                pairs = [(local, peer) for peer in peers[remote_role]]
            elif remote_role == Role.PEER_APPLIANCE:
                # Appliances of a cluster reach each other on the same interface.
                pairs = [
                    (Endpoint(Role.PEER_APPLIANCE, other.hostname, other.address(interface) or "", other.site), local)
                    for other in appliances
                    if other != appliance and other.address(interface)
                ]
            else:
                pairs = [(peer, local) for peer in peers[remote_role]]
            rules.extend(
                Rule(requirement, source, destination, interface, port_start, port_end) for source, destination in pairs
            )

    unique = list({rule.key: rule for rule in rules}.values())
    return unique, warnings


@transaction.atomic
def regenerate_checklist(deployment: Deployment) -> SyncResult:
    """Bring the stored checklist in line with the deployment, in one transaction.

    Items whose rule still exists keep their status and history; the others are removed,
    and new rules are added as to do.
    """
    # One regeneration of a deployment at a time: the row lock orders concurrent saves.
    Deployment.objects.select_for_update().only("pk").get(pk=deployment.pk)
    rules, warnings = derive_rules(deployment)
    existing = {item.key: item for item in deployment.checklist.all()}
    to_create: list[ChecklistItem] = []
    to_update: list[ChecklistItem] = []
    for position, rule in enumerate(rules):
        fields = rule.item_fields() | {"position": position}
        item = existing.pop(rule.key, None)
        if item is None:
            to_create.append(ChecklistItem(deployment=deployment, key=rule.key, **fields))
        elif any(getattr(item, name) != value for name, value in fields.items()):
            for name, value in fields.items():
                setattr(item, name, value)
            to_update.append(item)
    ChecklistItem.objects.filter(pk__in=[item.pk for item in existing.values()]).delete()
    ChecklistItem.objects.bulk_update(to_update, fields=[*RULE_FIELDS, "position"])
    ChecklistItem.objects.bulk_create(to_create)
    deployment.checklist_warnings = warnings
    deployment.checklist_generated_at = timezone.now()
    deployment.save(update_fields=["checklist_warnings", "checklist_generated_at"])
    return SyncResult(added=len(to_create), removed=len(existing), kept=len(rules) - len(to_create))
