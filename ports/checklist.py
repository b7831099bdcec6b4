"""From a deployment to its checklist: the concrete rules its catalog version asks for."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from .addresses import address_of
from .choices import Role
from .models import (
    RULE_COLUMN_NAMES,
    Appliance,
    ChecklistExport,
    ChecklistItem,
    Deployment,
    Host,
    PeerNetwork,
    RuleColumns,
)
from .rules import IDENTITY_FIELDS, Endpoint, FlowKey, Rule, fingerprint


class TooManyRules(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(
            f"These appliances, hosts and features make {count} rules; a deployment has at most "
            f"{settings.MAX_RULES} (MAX_RULES). Split it, or leave out features it does not use."
        )


class NumberedRule(NamedTuple):
    """A rule with its rule number: a checklist item as a plan of a change shows it."""

    number: int
    rule: Rule

    def __str__(self) -> str:
        """One line, as a plan of a change lists it: "#12 127.0.0.1 → 127.0.4.2 9449/tcp: purpose"."""
        rule = self.rule
        return (
            f"#{self.number} {rule.source.address} → {rule.destination.address} "
            f"{rule.ports}/{rule.protocol}: {rule.requirement.description}"
        )


@dataclass
class SyncResult:
    """What a regeneration did to the stored checklist: the rules it added (with the numbers they
    got) and removed (with the numbers they had), in rule-number order, and how many it kept. A
    plan of a change (ports.deployments.plan_save) is this, rolled back."""

    added: list[NumberedRule]
    removed: list[NumberedRule]
    kept: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def appliance_endpoint(appliance: Appliance, interface: str, role: str = Role.APPLIANCE) -> Endpoint:
    return Endpoint(role, appliance.hostname, appliance.address(interface) or "", appliance.site)


def family_name(endpoint: Endpoint) -> str:
    return f"IPv{endpoint.family}"


def derive_rules(deployment: Deployment) -> tuple[list[Rule], list[str]]:
    """The deployment's rules in catalog order, and what kept a requirement from becoming one.

    Reads the deployment's hosts from the database, never from a cache of the instance, so
    the rules always follow what was just saved.
    """
    requirements = [r for r in deployment.catalog_version.requirements.all() if r.applies_to(deployment.features)]
    appliances = list(Appliance.objects.filter(deployment=deployment))
    peers: dict[str, list[Endpoint]] = defaultdict(list)
    for host in Host.objects.filter(deployment=deployment):
        peers[host.role].append(Endpoint(host.role, host.name, host.address, host.site))
    for network in PeerNetwork.objects.filter(deployment=deployment):
        peers[network.role].append(Endpoint(network.role, network.name, network.network, network.site))

    rules: list[Rule] = []
    warnings: list[str] = []
    missing: dict[str, list[str]] = defaultdict(list)  # role label: the requirements without a rule
    if not appliances:
        warnings.append("The deployment has no appliances yet.")

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)

    for requirement in requirements:
        ports = deployment.ports_for(requirement)
        label = f"{requirement.uid} ({requirement.description}, {requirement.ports}/{requirement.protocol})"
        remote_role = requirement.listener if requirement.initiator == Role.APPLIANCE else requirement.initiator
        if remote_role != Role.PEER_APPLIANCE and not peers[remote_role] and appliances:
            missing[Role(remote_role).label].append(f"{requirement.ports}/{requirement.protocol}")
            continue
        for appliance in appliances:
            if appliance.interface_for(requirement) is None:
                warn(f"{appliance.hostname} has no address on {requirement.interface_text}: {label} has no rule.")
                continue
            # (source, destination, interface) of each rule of this requirement on this appliance.
            flows: list[tuple[Endpoint, Endpoint, str]] = []
            if remote_role == Role.PEER_APPLIANCE:
                # Appliances of a cluster reach each other on the same interface.
                interface = appliance.interface_for(requirement)
                local = appliance_endpoint(appliance, interface)
                others = [other for other in appliances if other != appliance and other.address(interface)]
                flows += [
                    (appliance_endpoint(other, interface, Role.PEER_APPLIANCE), local, interface) for other in others
                ]
            else:
                for peer in peers[remote_role]:
                    # A rule never mixes IPv4 and IPv6: use the appliance's interface of the peer's family.
                    interface = appliance.interface_for(requirement, peer.family)
                    if interface is None:
                        warn(
                            f"{peer.name} ({peer.address}) is {family_name(peer)}, and {appliance.hostname} has no "
                            f"{family_name(peer)} address on {requirement.interface_text}: {label} has no rule "
                            "between them."
                        )
                        continue
                    local = appliance_endpoint(appliance, interface)
                    outbound = requirement.initiator == Role.APPLIANCE
                    flows.append((local, peer, interface) if outbound else (peer, local, interface))
            for source, destination, interface in flows:
                if None not in (source.family, destination.family) and source.family != destination.family:
                    warn(
                        f"{source.name} ({source.address}) and {destination.name} ({destination.address}) are of "
                        f"different address families: {label} has no rule between them."
                    )
                    continue
                rules.append(Rule(requirement, source, destination, interface, requirement.protocol, ports))

    if missing:  # one warning for all the roles without a host, before the others
        roles = "; ".join(f"{role} ({', '.join(ports)})" for role, ports in missing.items())
        count = sum(len(ports) for ports in missing.values())
        message = f"Missing roles: {roles}. Add a host for each: {count} requirements have no rule until then."
        warnings.insert(0, message)
    unique = list({rule.key: rule for rule in rules}.values())
    return unique, warnings


@transaction.atomic
def regenerate_checklist(deployment: Deployment) -> SyncResult:
    """Bring the stored checklist in line with the deployment, in one transaction.

    Items whose rule still exists keep their status and history; the others are removed,
    and new rules are added as to do. The whole rule set is kept under its fingerprint, so
    that any checklist handed out can be compared with a later one.
    """
    # One regeneration of a deployment at a time: the row lock orders concurrent saves.
    # The deployment is read again under the lock: the caller's instance may hold stale caches.
    given, deployment = (
        deployment,
        Deployment.objects.select_for_update(of=("self",)).select_related("catalog_version").get(pk=deployment.pk),
    )
    rules, warnings = derive_rules(deployment)
    if len(rules) > settings.MAX_RULES:
        raise TooManyRules(len(rules))
    # The items too, in pk order as every other writer of items locks them (LatestProbe.record,
    # ChecklistItem.change_status): nobody writes a result or a status of an item being removed.
    items = deployment.checklist.select_related("requirement").select_for_update(of=("self",)).order_by("pk")
    existing = {item.key: item for item in items}
    numbers = number_flows(rules, existing.values(), deployment.last_rule_number)
    to_create: list[ChecklistItem] = []
    to_update: list[ChecklistItem] = []
    added: list[NumberedRule] = []
    for position, rule in enumerate(rules):
        fields = RuleColumns.columns_of(rule) | {
            "position": position,
            "number": numbers[rule.flow],
            "source_key": address_of(rule.source.address).sort_key,
            "destination_key": address_of(rule.destination.address).sort_key,
        }
        item = existing.pop(rule.key, None)
        if item is None:
            to_create.append(ChecklistItem(deployment=deployment, key=rule.key, **fields))
            added.append(NumberedRule(numbers[rule.flow], rule))
        elif any(getattr(item, name) != value for name, value in fields.items()):
            for name, value in fields.items():
                setattr(item, name, value)
            to_update.append(item)
    ChecklistItem.objects.filter(pk__in=[item.pk for item in existing.values()]).delete()
    ChecklistItem.objects.bulk_update(
        to_update, fields=[*RULE_COLUMN_NAMES, "position", "number", "source_key", "destination_key"]
    )
    ChecklistItem.objects.bulk_create(to_create)
    deployment.checklist_warnings = warnings
    deployment.checklist_generated_at = timezone.now()
    deployment.checklist_fingerprint = remember_rule_set(deployment, rules, "checklist", None)
    deployment.checklist_revision += 1
    deployment.last_rule_number = max([deployment.last_rule_number, *numbers.values()])
    fields = [
        "checklist_warnings",
        "checklist_generated_at",
        "checklist_fingerprint",
        "checklist_revision",
        "last_rule_number",
    ]
    deployment.save(update_fields=fields)
    for name in fields:
        setattr(given, name, getattr(deployment, name))
    # The removed items' requirements were read with them: their rules cost no query.
    removed = sorted(existing.values(), key=lambda item: (item.number, item.position))
    return SyncResult(
        added=sorted(added, key=lambda found: found.number),  # stable: catalog order within a number
        removed=[NumberedRule(item.number, item.rule) for item in removed],
        kept=len(rules) - len(to_create),
    )


def number_flows(rules: list[Rule], items: Iterable[ChecklistItem], last: int) -> dict[FlowKey, int]:
    """The rule number of each flow: the one its items had, or a new one above `last` (the
    highest ever given). A firewall team's "rule 12" stays rule 12 while the flow is needed,
    and a number once given never names another flow."""
    numbers = {item.rule.flow: item.number for item in items}
    next_number = max([last, *numbers.values()]) + 1
    for rule in rules:
        if rule.flow not in numbers:
            numbers[rule.flow] = next_number
            next_number += 1
    return numbers


def remember_rule_set(deployment: Deployment, rules: list[Rule], kind: str, user: object) -> str:
    """Keep a rule set handed out under its fingerprint (once), so that a later export can say
    what changed since; returns the fingerprint."""
    value = fingerprint(rules)
    try:
        ChecklistExport.objects.get_or_create(
            deployment=deployment,
            fingerprint=value,
            defaults={"kind": kind, "created_by": user, "rules": [rule_identity(rule) for rule in rules]},
        )
    except IntegrityError:
        if Deployment.objects.filter(pk=deployment.pk).exists():
            raise
        raise Http404("The deployment was deleted meanwhile.") from None
    return value


def rule_identity(rule: Rule) -> dict[str, object]:
    return dict(zip(IDENTITY_FIELDS, rule.identity(), strict=True))
