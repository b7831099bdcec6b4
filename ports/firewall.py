"""A change request's rules in firewall syntaxes: nftables, iptables-restore, Cisco ASA, PAN-OS.

Every rule is an allow rule commented with its catalog id and purpose. A hostname cannot
go into an nftables or iptables rule without a DNS lookup at load time, so such rules are
written as comments to resolve by hand; ASA and PAN-OS take FQDN objects.
"""

from __future__ import annotations

import ipaddress
import re

from .exports import ExportRule


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
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


def _comment(rule: ExportRule, limit: int) -> str:
    text = f"#{rule.number} {rule.requirement}: {rule.purpose}"
    text = re.sub(r"[^\w .,:#/()+-]", "", text)
    return text[:limit]


def _header(rules: list[ExportRule], title: str, fingerprint: str, mark: str) -> list[str]:
    return [
        f"{mark} {title}",
        f"{mark} {len(rules)} rules; rule set fingerprint sha256:{fingerprint}",
        f"{mark} Do not drop, block or decrypt (SSL decryption, deep packet inspection) this traffic.",
    ]


# --- nftables ----------------------------------------------------------------------------


def nftables(rules: list[ExportRule], title: str, fingerprint: str, name: str) -> str:
    """A table with a regular chain of accept rules; jump to it from your forward chain."""
    lines = _header(rules, title, fingerprint, "#")
    lines += [f"table inet {name} {{", f"\tchain {name}_rules {{"]
    for rule in rules:
        if _is_name(rule.source) or _is_name(rule.destination):
            lines.append(f"\t\t# rule #{rule.number} names a host: resolve {rule.source} / {rule.destination} first")
            continue
        matches = []
        for field, value in (("saddr", rule.source), ("daddr", rule.destination)):
            network = _network(value)
            if network is not None:
                family = "ip" if network.version == 4 else "ip6"
                matches.append(f"{family} {field} {_host_or_network(network)}")
        matches.append(f"{rule.protocol} dport {rule.ports}")
        lines.append(f'\t\t{" ".join(matches)} accept comment "{_comment(rule, 127)}"')
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


def _host_or_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(network.network_address) if network.num_addresses == 1 else str(network)


# --- iptables-restore ----------------------------------------------------------------------


def iptables(rules: list[ExportRule], title: str, fingerprint: str, name: str) -> str:
    """An iptables-restore file (IPv4) with a chain of ACCEPT rules; jump to it from FORWARD."""
    chain = name.upper()[:28]
    lines = _header(rules, title, fingerprint, "#")
    lines += ["*filter", f":{chain} - [0:0]"]
    for rule in rules:
        if _is_name(rule.source) or _is_name(rule.destination):
            lines.append(f"# rule #{rule.number} names a host: resolve {rule.source} / {rule.destination} first")
            continue
        networks = [_network(rule.source), _network(rule.destination)]
        if any(n is not None and n.version == 6 for n in networks):
            lines.append(f"# rule #{rule.number} is IPv6: see the ip6tables or nftables export")
            continue
        parts = [f"-A {chain}"]
        for flag, network in zip(("-s", "-d"), networks, strict=True):
            if network is not None:
                parts.append(f"{flag} {network}")
        ports = rule.ports.replace("-", ":")
        parts.append(f"-p {rule.protocol} -m {rule.protocol} --dport {ports}")
        parts.append(f'-m comment --comment "{_comment(rule, 250)}" -j ACCEPT')
        lines.append(" ".join(parts))
    lines += ["COMMIT", ""]
    return "\n".join(lines)


# --- Cisco ASA -----------------------------------------------------------------------------


def _asa_network(value: str) -> str:
    if value == "any":
        return "any"
    if _is_name(value):
        return f"fqdn {value}"
    network = _network(value)
    if network.num_addresses == 1:
        return f"host {network.network_address}"
    return f"{network.network_address} {network.netmask}"


def cisco_asa(rules: list[ExportRule], title: str, fingerprint: str, name: str) -> str:
    """Network and service object-groups, then an extended access-list that uses them."""
    acl = name.upper()
    lines = _header(rules, title, fingerprint, "!")
    networks: dict[str, str] = {}
    services: dict[tuple[str, str], str] = {}
    for rule in rules:
        for value in (rule.source, rule.destination):
            if value != "any" and value not in networks:
                networks[value] = f"{acl}-NET-{len(networks) + 1}"
        key = (rule.protocol, rule.ports)
        if key not in services:
            services[key] = f"{acl}-{rule.protocol.upper()}-{rule.ports}"
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
    for rule in rules:
        source = "any" if rule.source == "any" else f"object-group {networks[rule.source]}"
        destination = "any" if rule.destination == "any" else f"object-group {networks[rule.destination]}"
        service = services[(rule.protocol, rule.ports)]
        lines.append(f"access-list {acl} remark {_comment(rule, 100)}")
        lines.append(f"access-list {acl} extended permit {rule.protocol} {source} {destination} object-group {service}")
    lines.append("")
    return "\n".join(lines)


# --- Palo Alto PAN-OS ----------------------------------------------------------------------


def panos(rules: list[ExportRule], title: str, fingerprint: str, name: str) -> str:
    """`set` commands: address and service objects, then one security rule per rule."""
    lines = _header(rules, title, fingerprint, "#")
    addresses: dict[str, str] = {}
    services: dict[tuple[str, str], str] = {}
    for rule in rules:
        for value in (rule.source, rule.destination):
            if value != "any" and value not in addresses:
                addresses[value] = f"{name}-{value.replace('/', '_').replace(':', '.')}"
        services.setdefault((rule.protocol, rule.ports), f"{name}-{rule.protocol}-{rule.ports}")
    for value, address in addresses.items():
        if _is_name(value):
            lines.append(f"set address {address} fqdn {value}")
        else:
            network = _network(value)
            lines.append(f"set address {address} ip-netmask {network}")
    for (protocol, ports), service in services.items():
        lines.append(f"set service {service} protocol {protocol} port {ports}")
    for rule in rules:
        source = addresses.get(rule.source, "any")
        destination = addresses.get(rule.destination, "any")
        rule_name = f"{name}-{rule.number:04d}"
        lines.append(
            f"set rulebase security rules {rule_name} from any to any source {source} destination {destination} "
            f"application any service {services[(rule.protocol, rule.ports)]} action allow "
            f'description "{_comment(rule, 255)}"'
        )
    lines.append("")
    return "\n".join(lines)


SYNTAXES = {
    "nftables": (nftables, "nft"),
    "iptables": (iptables, "rules"),
    "asa": (cisco_asa, "asa"),
    "panos": (panos, "panos"),
}
