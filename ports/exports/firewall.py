"""A rule set in firewall syntaxes: nftables, iptables-restore (IPv4 and IPv6), Cisco ASA, PAN-OS.

Every flow (RuleSet.flows: the rules of one source, destination, protocol and ports) is one
allow rule, commented with its number, requirement ids and purposes; numbers are the
checklist's, the same in every format. Flows that carry TLS are marked for exemption from
SSL decryption: PAN-OS gets `no-decrypt` decryption rules, the others name it in the comment.

A hostname cannot go into an nftables or iptables rule without a DNS lookup at load time, so
such flows are written as comments to resolve by hand; ASA and PAN-OS take FQDN objects. The
derivation never mixes address families in one rule, and an ASA object is of the family of the
rules that use it (`fqdn v4` or `fqdn v6` for a name). Each syntax also says how to take its
rules out again (rollback), for the change request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from ..addresses import Kind, Network, address_of
from .rule_set import Flow, RuleSet

EXEMPT = "exempt from SSL decryption"


@dataclass(frozen=True)
class Target:
    """Where an export goes: a title (a comment), the name of its table, chain, ACL or rule
    prefix, and the firewall's zone (PAN-OS) or interface (ASA) of each site."""

    title: str
    name: str
    zones: dict[str, str] = field(default_factory=dict)
    zones_ignored: tuple[str, ...] = ()  # sites of the zone map that the deployment does not use

    @classmethod
    def of(cls, rule_set: RuleSet, params: dict) -> Target:
        zones, ignored = params.get("zones") or {}, tuple(params.get("zones_ignored") or ())
        return cls(rule_set.title, f"fes_{rule_set.deployment.pk}", zones, ignored)

    def zone(self, site: str) -> str:
        return self.zones.get(site, "any")


def _is_name(value: str) -> bool:
    return address_of(value).kind == Kind.NAME


def _is_any(value: str) -> bool:
    return address_of(value).kind == Kind.ANY


def _names_a_host(flow: Flow) -> bool:
    return _is_name(flow.rule.source.address) or _is_name(flow.rule.destination.address)


def _family(flow: Flow) -> int | None:
    """4 or 6: the family of the flow's addresses; None if it has none ("any" and names only)."""
    return flow.rule.source.family or flow.rule.destination.family


def _comment(flow: Flow, limit: int) -> str:
    """Number, exemption, requirement ids and purposes, as one line of safe characters."""
    exempt = f" [{EXEMPT}]" if flow.carries_tls else ""
    text = f"#{flow.number}{exempt} {flow.uids}: {flow.purpose}"
    text = re.sub(r"[^\w .,:;#/()\[\]+-]", "", text)
    return text.encode()[:limit].decode(errors="ignore")  # limits count bytes (nft: 128)


def _one_line(text: str) -> str:
    """What users typed, as one line of printable text, so that it stays a comment."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", text)


def _header(rule_set: RuleSet, target: Target, mark: str) -> list[str]:
    lines = [
        f"{mark} {_one_line(target.title)}",
        f"{mark} {len(rule_set.flows)} firewall rules ({len(rule_set.items)} checklist items merged by flow); "
        f"rule set fingerprint sha256:{rule_set.fingerprint}",
        f"{mark} Do not drop, block or inspect (DPI/IPS) this traffic. Rules marked [{EXEMPT}] carry TLS:",
        f"{mark} exempt them from SSL decryption.",
    ]
    if target.zones_ignored:  # site names (SITE_NAME), already: _one_line is a second guard
        sites = _one_line(", ".join(target.zones_ignored))
        lines.append(f"{mark} zones given for sites this deployment does not use: {sites}")
    return lines


def _object_name(prefix: str, value: str, limit: int = 63) -> str:
    """An object's name derived from its value, so that it is the same in every export."""
    name = f"{prefix}-{re.sub(r'[^A-Za-z0-9_.-]', '.', value.replace('/', '_'))}"
    if len(name) > limit:
        name = f"{name[: limit - 9]}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"
    return name


def _host_or_network(network: Network) -> str:
    return str(network.network_address) if network.num_addresses == 1 else str(network)


class Syntax(NamedTuple):
    """A firewall syntax: how to write a rule set in it and take rules out again, the file
    suffix of its export, its name for people, and whether it uses the sites' zones (Target)."""

    render: Callable[[RuleSet, Target], str]
    rollback: Callable[[list[Flow], Target], list[str]]
    suffix: str
    label: str
    uses_zones: bool = False


# --- nftables ----------------------------------------------------------------------------


def _nft_rule(flow: Flow) -> str | None:
    if _names_a_host(flow):
        return None
    rule = flow.rule
    matches = []
    for key, value in (("saddr", rule.source.address), ("daddr", rule.destination.address)):
        network = address_of(value).network
        if network is not None:
            family = "ip" if network.version == 4 else "ip6"
            matches.append(f"{family} {key} {_host_or_network(network)}")
    matches.append(f"{rule.protocol} dport {rule.ports}")
    return f'{" ".join(matches)} accept comment "{_comment(flow, 127)}"'


def nftables(rule_set: RuleSet, target: Target) -> str:
    """A table of family inet (IPv4 and IPv6) with a chain of accept rules; jump to it from
    your forward chain."""
    name = target.name
    lines = _header(rule_set, target, "#")
    lines += [f"table inet {name} {{", f"\tchain {name}_rules {{"]
    for flow in rule_set.flows:
        rule = _nft_rule(flow)
        if rule is None:
            source, destination = flow.rule.source.address, flow.rule.destination.address
            lines.append(f"\t\t# rule #{flow.number} names a host: resolve {source} / {destination} first")
        else:
            lines.append(f"\t\t{rule}")
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


def nftables_rollback(flows: list[Flow], target: Target) -> list[str]:
    name = target.name
    return [
        f"# The table holds only these rules: to take all of them out, nft delete table inet {name}",
        f"# To take out some: nft -a list chain inet {name} {name}_rules shows each rule's handle, then",
        *(f"nft delete rule inet {name} {name}_rules handle <handle of #{flow.number}>" for flow in flows),
    ]


# --- iptables-restore / ip6tables-restore --------------------------------------------------


def _xt_rule(flow: Flow, chain: str, family: int) -> str | None:
    """The rule's iptables arguments after -A/-D; None for a hostname or the other family."""
    rule = flow.rule
    if _names_a_host(flow) or (rule.source.family or rule.destination.family) not in (None, family):
        return None
    parts = [chain]
    for flag, value in (("-s", rule.source.address), ("-d", rule.destination.address)):
        network = address_of(value).network
        if network is not None:
            parts.append(f"{flag} {network}")
    ports = str(rule.ports).replace("-", ":")
    parts.append(f"-p {rule.protocol} -m {rule.protocol} --dport {ports}")
    parts.append(f'-m comment --comment "{_comment(flow, 250)}" -j ACCEPT')
    return " ".join(parts)


def _chain(target: Target) -> str:
    return target.name.upper()[:28]


def _xtables(family: int, tool: str) -> tuple[Callable[[RuleSet, Target], str], Callable]:
    def render(rule_set: RuleSet, target: Target) -> str:
        chain = _chain(target)
        lines = _header(rule_set, target, "#")
        lines += [f"# For {tool}: the IPv{family} rules; the others are in the other family's export."]
        lines += ["*filter", f":{chain} - [0:0]"]
        for flow in rule_set.flows:
            rule = _xt_rule(flow, chain, family)
            source, destination = flow.rule.source, flow.rule.destination
            if rule is not None:
                lines.append(f"-A {rule}")
            elif _names_a_host(flow):
                names = f"{source.address} / {destination.address}"
                lines.append(f"# rule #{flow.number} names a host: resolve {names} first")
            else:
                other = source.family or destination.family
                lines.append(f"# rule #{flow.number} is IPv{other}: see the other family's export")
        lines += ["COMMIT", ""]
        return "\n".join(lines)

    def rollback(flows: list[Flow], target: Target) -> list[str]:
        chain = _chain(target)
        deletions = [f"-D {rule}" for flow in flows if (rule := _xt_rule(flow, chain, family))]
        return [f"# {tool} --noflush < this file", "*filter", *deletions, "COMMIT"] if deletions else []

    render.__doc__ = f"An {tool} file with a chain of ACCEPT rules; jump to it from FORWARD."
    return render, rollback


iptables, iptables_rollback = _xtables(4, "iptables-restore")
ip6tables, ip6tables_rollback = _xtables(6, "ip6tables-restore")


# --- Cisco ASA -----------------------------------------------------------------------------


def _asa_network(value: str) -> str:
    network = address_of(value).network
    if network.num_addresses == 1:
        return f"host {network.network_address}"
    if network.version == 6:
        return str(network)  # ASA writes IPv6 prefixes as address/length
    return f"{network.network_address} {network.netmask}"


# A name's FQDN object resolves to one family (`fqdn v4` or `fqdn v6`): a name gets the object of
# each family its rules need, and the network group a rule uses holds the objects of the rule's
# family, or both for a rule of either family (a name to or from "any"). The IPv4 ones keep the
# names they always had.
_ASA_FQDN = {4: ("FQDN", "v4"), 6: ("FQDN6", "v6")}
_ASA_NAME_GROUP = {4: "NET", 6: "NET6", None: "NET46"}


def _asa_group(acl: str, value: str, family: int | None) -> str:
    """The network group a rule of this family uses for the value: an address or network is
    of one family by itself; a name has a group per family."""
    return _object_name(f"{acl}-{_ASA_NAME_GROUP[family] if _is_name(value) else 'NET'}", value)


def _asa_fqdn(acl: str, value: str, family: int) -> str:
    return _object_name(f"{acl}-{_ASA_FQDN[family][0]}", value, 64)


def _asa_service(acl: str, flow: Flow) -> str:
    return f"{acl}-{flow.rule.protocol.upper()}-{flow.rule.ports}"


def _asa_entries(flow: Flow, acl: str) -> list[str]:
    rule = flow.rule
    source, destination = (
        "any" if _is_any(value) else f"object-group {_asa_group(acl, value, _family(flow))}"
        for value in (rule.source.address, rule.destination.address)
    )
    return [
        f"access-list {acl} remark {_comment(flow, 100)}",
        f"access-list {acl} extended permit {rule.protocol} {source} {destination} "
        f"object-group {_asa_service(acl, flow)}",
    ]


def cisco_asa(rule_set: RuleSet, target: Target) -> str:
    """Network and service object-groups, then an extended access-list that uses them, bound to
    the interfaces given for the sources' sites (if any)."""
    acl = target.name.upper()
    lines = _header(rule_set, target, "!")
    flows = rule_set.flows
    # Each value once per group: a name once per family of the rules that use it.
    addresses = dict.fromkeys(
        (value, _family(flow) if _is_name(value) else None)
        for flow in flows
        for value in (flow.rule.source.address, flow.rule.destination.address)
        if not _is_any(value)
    )
    fqdns: set[str] = set()
    for value, family in addresses:
        group = _asa_group(acl, value, family)
        if _is_name(value):
            members = []
            for each in (4, 6) if family is None else (family,):
                fqdn = _asa_fqdn(acl, value, each)
                if fqdn not in fqdns:
                    fqdns.add(fqdn)
                    lines += [f"object network {fqdn}", f" fqdn {_ASA_FQDN[each][1]} {value}"]
                members.append(f" network-object object {fqdn}")
            lines += [f"object-group network {group}", *members]
        else:
            lines += [f"object-group network {group}", f" network-object {_asa_network(value)}"]
    services = {_asa_service(acl, flow): flow.rule for flow in flows}
    for group, rule in services.items():
        ports = rule.ports
        port = f"range {ports.start} {ports.end}" if ports.count > 1 else f"eq {ports.start}"
        lines += [f"object-group service {group} {rule.protocol}", f" port-object {port}"]
    for flow in flows:
        lines += _asa_entries(flow, acl)
    sites = dict.fromkeys(flow.rule.source.site for flow in flows)
    interfaces = dict.fromkeys(target.zones[site] for site in sites if site in target.zones)
    if interfaces:
        lines.append("! access-group replaces an interface's inbound ACL: merge into it instead if it has one.")
        lines += [f"access-group {acl} in interface {interface}" for interface in interfaces]
    lines.append("")
    return "\n".join(lines)


def cisco_asa_rollback(flows: list[Flow], target: Target) -> list[str]:
    acl = target.name.upper()
    return [f"no {entry}" for flow in flows for entry in _asa_entries(flow, acl)]


# --- Palo Alto PAN-OS ----------------------------------------------------------------------


def _panos_address(name: str, value: str) -> str:
    return "any" if _is_any(value) else _object_name(name, value)


def _panos_rule(flow: Flow, target: Target) -> str:
    return f"{target.name}-{flow.number:04d}"


def panos(rule_set: RuleSet, target: Target) -> str:
    """`set` commands: address and service objects, one security rule per flow, and a
    `no-decrypt` decryption rule for each flow that carries TLS."""
    name = target.name
    lines = _header(rule_set, target, "#")
    flows = rule_set.flows
    addresses = dict.fromkeys(
        value for flow in flows for value in (flow.rule.source.address, flow.rule.destination.address)
    )
    for value in addresses:
        if _is_any(value):
            continue
        kind = "fqdn" if _is_name(value) else "ip-netmask"
        lines.append(
            f"set address {_panos_address(name, value)} {kind} {value if kind == 'fqdn' else address_of(value).network}"
        )
    for rule in {(flow.rule.protocol, str(flow.rule.ports)): flow.rule for flow in flows}.values():
        lines.append(f"set service {name}-{rule.protocol}-{rule.ports} protocol {rule.protocol} port {rule.ports}")
    for flow in flows:
        rule = flow.rule
        match = (
            f"from {target.zone(rule.source.site)} to {target.zone(rule.destination.site)} "
            f"source {_panos_address(name, rule.source.address)} "
            f"destination {_panos_address(name, rule.destination.address)}"
        )
        service = f"{name}-{rule.protocol}-{rule.ports}"
        lines.append(
            f"set rulebase security rules {_panos_rule(flow, target)} {match} application any service {service} "
            f'action allow description "{_comment(flow, 255)}"'
        )
        if flow.carries_tls:
            lines.append(
                f"set rulebase decryption rules {_panos_rule(flow, target)}-no-decrypt {match} source-user any "
                f"category any service {service} type ssl-forward-proxy action no-decrypt "
                f'description "{_comment(flow, 255)}"'
            )
    lines.append("")
    return "\n".join(lines)


def panos_rollback(flows: list[Flow], target: Target) -> list[str]:
    lines = []
    for flow in flows:
        lines.append(f"delete rulebase security rules {_panos_rule(flow, target)}")
        if flow.carries_tls:
            lines.append(f"delete rulebase decryption rules {_panos_rule(flow, target)}-no-decrypt")
    return lines


# The syntaxes, declared once: the API's URLs and parameters, the change request's rollback and
# the checklist page's export dialog are derived from it.
SYNTAXES = {
    "nftables": Syntax(nftables, nftables_rollback, "nft", "nftables"),
    "iptables": Syntax(iptables, iptables_rollback, "rules", "iptables (IPv4)"),
    "ip6tables": Syntax(ip6tables, ip6tables_rollback, "rules6", "ip6tables (IPv6)"),
    "asa": Syntax(cisco_asa, cisco_asa_rollback, "asa", "Cisco ASA", uses_zones=True),
    "panos": Syntax(panos, panos_rollback, "panos", "PAN-OS", uses_zones=True),
}
