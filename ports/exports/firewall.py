"""A rule set in firewall syntaxes: nftables, iptables-restore (IPv4 and IPv6), Cisco ASA, PAN-OS.

Every rule is an allow rule commented with its number, catalog id and purpose; numbers
are the rule set's (RuleSet.numbered()), the same in every format. A hostname cannot go
into an nftables or iptables rule without a DNS lookup at load time, so such rules are
written as comments to resolve by hand; ASA and PAN-OS take FQDN objects. The derivation
never mixes address families in one rule.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from ..rules import Rule
from . import RuleSet

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: str) -> Network | None:
    """The value as a network, None for "any"; ValueError for a hostname."""
    if value == "any":
        return None
    return ipaddress.ip_network(value, strict=False)


def _is_name(value: str) -> bool:
    try:
        _network(value)
    except ValueError:
        return True
    return False


def _family(rule: Rule) -> int | None:
    return rule.source.family or rule.destination.family


def _comment(number: int, rule: Rule, limit: int) -> str:
    text = f"#{number} {rule.requirement.uid}: {rule.requirement.description}"
    text = re.sub(r"[^\w .,:#/()+-]", "", text)
    return text[:limit]


def _header(rule_set: RuleSet, title: str, mark: str) -> list[str]:
    # The title holds what users typed (names): one line of printable text, so that it stays a comment.
    title = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", title)
    return [
        f"{mark} {title}",
        f"{mark} {len(rule_set.items)} rules; rule set fingerprint sha256:{rule_set.fingerprint}",
        f"{mark} Do not drop, block or decrypt (SSL decryption, deep packet inspection) this traffic.",
    ]


def _numbered_rules(rule_set: RuleSet) -> Iterator[tuple[int, Rule]]:
    return ((number, item.rule) for number, item in rule_set.numbered())


def _objects(rules: list[tuple[int, Rule]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The rules' distinct addresses (but "any") and (protocol, ports) services, in order of use:
    what ASA and PAN-OS declare as objects before the rules that use them."""
    addresses = dict.fromkeys(
        value for _, rule in rules for value in (rule.source.address, rule.destination.address) if value != "any"
    )
    services = dict.fromkeys((rule.protocol, str(rule.ports)) for _, rule in rules)
    return list(addresses), list(services)


def _host_or_network(network: Network) -> str:
    return str(network.network_address) if network.num_addresses == 1 else str(network)


# --- nftables ----------------------------------------------------------------------------


def nftables(rule_set: RuleSet, title: str, name: str) -> str:
    """A table of family inet (IPv4 and IPv6) with a chain of accept rules; jump to it from
    your forward chain."""
    lines = _header(rule_set, title, "#")
    lines += [f"table inet {name} {{", f"\tchain {name}_rules {{"]
    for number, rule in _numbered_rules(rule_set):
        if _is_name(rule.source.address) or _is_name(rule.destination.address):
            lines.append(
                f"\t\t# rule #{number} names a host: resolve {rule.source.address} / {rule.destination.address} first"
            )
            continue
        matches = []
        for field, value in (("saddr", rule.source.address), ("daddr", rule.destination.address)):
            network = _network(value)
            if network is not None:
                family = "ip" if network.version == 4 else "ip6"
                matches.append(f"{family} {field} {_host_or_network(network)}")
        matches.append(f"{rule.protocol} dport {rule.ports}")
        lines.append(f'\t\t{" ".join(matches)} accept comment "{_comment(number, rule, 127)}"')
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


# --- iptables-restore / ip6tables-restore --------------------------------------------------


def _xtables(family: int, tool: str) -> Callable[[RuleSet, str, str], str]:
    def render(rule_set: RuleSet, title: str, name: str) -> str:
        chain = name.upper()[:28]
        lines = _header(rule_set, title, "#")
        lines += [f"# For {tool}: the IPv{family} rules; the others are in the other family's export."]
        lines += ["*filter", f":{chain} - [0:0]"]
        for number, rule in _numbered_rules(rule_set):
            if _is_name(rule.source.address) or _is_name(rule.destination.address):
                lines.append(
                    f"# rule #{number} names a host: resolve {rule.source.address} / {rule.destination.address} first"
                )
                continue
            if _family(rule) not in (None, family):
                lines.append(f"# rule #{number} is IPv{_family(rule)}: see the other family's export")
                continue
            parts = [f"-A {chain}"]
            for flag, value in (("-s", rule.source.address), ("-d", rule.destination.address)):
                network = _network(value)
                if network is not None:
                    parts.append(f"{flag} {network}")
            ports = str(rule.ports).replace("-", ":")
            parts.append(f"-p {rule.protocol} -m {rule.protocol} --dport {ports}")
            parts.append(f'-m comment --comment "{_comment(number, rule, 250)}" -j ACCEPT')
            lines.append(" ".join(parts))
        lines += ["COMMIT", ""]
        return "\n".join(lines)

    render.__doc__ = f"An {tool} file with a chain of ACCEPT rules; jump to it from FORWARD."
    return render


iptables = _xtables(4, "iptables-restore")
ip6tables = _xtables(6, "ip6tables-restore")


# --- Cisco ASA -----------------------------------------------------------------------------


def _asa_network(value: str) -> str:
    network = _network(value)
    if network.num_addresses == 1:
        return f"host {network.network_address}"
    if network.version == 6:
        return str(network)  # ASA writes IPv6 prefixes as address/length
    return f"{network.network_address} {network.netmask}"


def cisco_asa(rule_set: RuleSet, title: str, name: str) -> str:
    """Network and service object-groups, then an extended access-list that uses them."""
    acl = name.upper()
    lines = _header(rule_set, title, "!")
    rules = list(_numbered_rules(rule_set))
    addresses, ports = _objects(rules)
    networks = {value: f"{acl}-NET-{number}" for number, value in enumerate(addresses, start=1)}
    services = {key: f"{acl}-{key[0].upper()}-{key[1]}" for key in ports}
    for value, group in networks.items():
        if _is_name(value):
            lines += [f"object network {group}-FQDN", f" fqdn v4 {value}"]
            lines += [f"object-group network {group}", f" network-object object {group}-FQDN"]
        else:
            lines += [f"object-group network {group}", f" network-object {_asa_network(value)}"]
    for (protocol, ports), group in services.items():
        start, _, end = ports.partition("-")
        port = f"range {start} {end}" if end else f"eq {start}"
        lines += [f"object-group service {group} {protocol}", f" port-object {port}"]
    for number, rule in rules:
        source, destination = (
            "any" if value == "any" else f"object-group {networks[value]}"
            for value in (rule.source.address, rule.destination.address)
        )
        service = services[(rule.protocol, str(rule.ports))]
        lines.append(f"access-list {acl} remark {_comment(number, rule, 100)}")
        lines.append(f"access-list {acl} extended permit {rule.protocol} {source} {destination} object-group {service}")
    lines.append("")
    return "\n".join(lines)


# --- Palo Alto PAN-OS ----------------------------------------------------------------------


def panos(rule_set: RuleSet, title: str, name: str) -> str:
    """`set` commands: address and service objects, then one security rule per rule."""
    lines = _header(rule_set, title, "#")
    rules = list(_numbered_rules(rule_set))
    values, ports = _objects(rules)
    addresses = {value: f"{name}-{value.replace('/', '_').replace(':', '.')}" for value in values}
    services = {key: f"{name}-{key[0]}-{key[1]}" for key in ports}
    for value, address in addresses.items():
        if _is_name(value):
            lines.append(f"set address {address} fqdn {value}")
        else:
            lines.append(f"set address {address} ip-netmask {_network(value)}")
    for (protocol, ports), service in services.items():
        lines.append(f"set service {service} protocol {protocol} port {ports}")
    for number, rule in rules:
        source = addresses.get(rule.source.address, "any")
        destination = addresses.get(rule.destination.address, "any")
        lines.append(
            f"set rulebase security rules {name}-{number:04d} from any to any source {source} "
            f"destination {destination} application any service {services[(rule.protocol, str(rule.ports))]} "
            f'action allow description "{_comment(number, rule, 255)}"'
        )
    lines.append("")
    return "\n".join(lines)


SYNTAXES = {
    "nftables": (nftables, "nft"),
    "iptables": (iptables, "rules"),
    "ip6tables": (ip6tables, "rules6"),
    "asa": (cisco_asa, "asa"),
    "panos": (panos, "panos"),
}
