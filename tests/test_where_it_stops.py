"""Where the traffic stops, measured in a lab of network namespaces the test creates and removes:
a site, two routers and a server, linked by veth pairs with IPv4 and IPv6 addresses assigned
here, and nftables verdicts in the routers' forward chains. A rule rejected with an ICMP or
ICMPv6 error names the router that sent it (`rejected_by`, `icmp`); a dropped one is traced with
its own protocol and port (`path`, `stopped_after`). Probes run as a site worker runs them: its
engine built from its own settings, with no database. No traffic leaves the namespaces.

    site 10.231.1.2 -- 10.231.1.1 r1 10.231.2.1 -- 10.231.2.2 r2 10.231.3.1 -- 10.231.3.2 server
         fd31:1::2  --  fd31:1::1    fd31:2::1  --  fd31:2::2    fd31:3::1  --  fd31:3::2

The lab checked by hand first, from the site (`ip netns exec stops-site-<pid> ...`, the rules below):

    $ traceroute -T -n -q 1 -w 1 -m 4 -p 7121 10.231.3.2     # TCP, dropped at r2
    traceroute to 10.231.3.2 (10.231.3.2), 4 hops max, 60 byte packets
     1  10.231.1.1  0.201 ms
     2  10.231.2.2  0.101 ms
     3  *
     4  *
    $ traceroute -U -n -q 1 -w 1 -m 4 -p 7122 10.231.3.2     # UDP, dropped at r2
    traceroute to 10.231.3.2 (10.231.3.2), 4 hops max, 60 byte packets
     1  10.231.1.1  0.036 ms
     2  10.231.2.2  0.023 ms
     3  *
     4  *
    $ traceroute -T -n -q 1 -w 1 -p 7101 10.231.3.2         # rejected at r1: admin-prohibited
    traceroute to 10.231.3.2 (10.231.3.2), 30 hops max, 60 byte packets
     1  10.231.1.1  0.050 ms
     2  10.231.1.1  0.012 ms !X
    $ traceroute -6 -T -n -q 1 -w 1 -p 7111 fd31:3::2        # rejected at r2: no-route
    traceroute to fd31:3::2 (fd31:3::2), 30 hops max, 80 byte packets
     1  fd31:1::1  0.048 ms
     2  fd31:2::2  0.030 ms
     3  fd31:2::2  0.030 ms !N
    $ mtr --tcp -P 7121 -n -r -c 1 10.231.3.2
    HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev
      1.|-- 10.231.1.1                 0.0%     1    0.1   0.1   0.1   0.1   0.0
      2.|-- 10.231.2.2                 0.0%     1    0.1   0.1   0.1   0.1   0.0
      3.|-- ???                       100.0     1    0.0   0.0   0.0   0.0   0.0

A router answers Time Exceeded for the hop that ends at it before its forward chain judges the
packet: the router that drops a flow is the last hop that answers.

test_the_lab_agrees_with_traceroute runs traceroute -T again, each time.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from probes.engine import CheckResult
from probes.engine.icmp import EXTENDED_ERR, NAMES, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6, IcmpError, parse_extended_err
from probes.evidence import in_words

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = str(os.getpid())
SITE, R1, R2, SERVER = (f"{name}-{SUFFIX}" for name in ("stops-site", "stops-r1", "stops-r2", "stops-server"))
# Each link: (namespace, interface, IPv4, IPv6) at both ends.
LINKS = [
    ((SITE, "s0", "10.231.1.2", "fd31:1::2"), (R1, "a0", "10.231.1.1", "fd31:1::1")),
    ((R1, "a1", "10.231.2.1", "fd31:2::1"), (R2, "b0", "10.231.2.2", "fd31:2::2")),
    ((R2, "b1", "10.231.3.1", "fd31:3::1"), (SERVER, "v0", "10.231.3.2", "fd31:3::2")),
]
ROUTES = {
    SITE: [("default", "10.231.1.1", "fd31:1::1")],
    R1: [("10.231.3.0/24", "10.231.2.2", None), ("fd31:3::/64", None, "fd31:2::2")],
    R2: [("10.231.1.0/24", "10.231.2.1", None), ("fd31:1::/64", None, "fd31:2::1")],
    SERVER: [("default", "10.231.3.1", "fd31:3::1")],
}
SERVER_ADDRESS = {4: "10.231.3.2", 6: "fd31:3::2"}
R1_ADDRESS = {4: "10.231.1.1", 6: "fd31:1::1"}  # what r1 sends from, toward the site
R2_ADDRESS = {4: "10.231.2.2", 6: "fd31:2::2"}

# The server: TCP 7001 and DNS on 7053/udp answer; nothing listens on 7002/tcp or 7003/udp.
OPEN_TCP, CLOSED_TCP, DNS_UDP, CLOSED_UDP = 7001, 7002, 7053, 7003

# Verdicts in the routers' forward chains: (port, protocol, IPv4 reject, IPv6 reject), "drop" to drop.
R1_RULES = [
    (7101, "tcp", "admin-prohibited", "admin-prohibited"),  # 3/13, 1/1 (EACCES: was `error`)
    (7102, "udp", "host-prohibited", "policy-fail"),  # 3/10, 1/5 (EACCES: was `error`)
    (7103, "tcp", "5", "2"),  # source route failed (EOPNOTSUPP: was `error`), beyond scope
    (7104, "tcp", "drop", "drop"),
]
R2_RULES = [
    (7111, "tcp", "host-unreachable", "no-route"),  # 3/1, 1/0
    (7112, "tcp", "prot-unreachable", "reject-route"),  # 3/2 (ENOPROTOOPT: was `error`), 1/6 (EACCES)
    (7113, "udp", "net-unreachable", "addr-unreachable"),  # 3/0: a soft error for UDP, was `filtered`
    (7114, "tcp", "port-unreachable", "port-unreachable"),  # a firewall that says nothing listens
    (7121, "tcp", "drop", "drop"),
    (7122, "udp", "drop", "drop"),
]

# state, who rejected (None: nobody), the ICMP (type, code) and its name, by IP version
EXPECTED = {
    (OPEN_TCP, "tcp"): {4: ("open", None, None, ""), 6: ("open", None, None, "")},
    (CLOSED_TCP, "tcp"): {4: ("refused", None, None, ""), 6: ("refused", None, None, "")},
    (DNS_UDP, "udp"): {4: ("open", None, None, ""), 6: ("open", None, None, "")},
    (CLOSED_UDP, "udp"): {
        4: ("refused", SERVER_ADDRESS[4], (3, 3), "port unreachable"),
        6: ("refused", SERVER_ADDRESS[6], (1, 4), "port unreachable"),
    },
    (7101, "tcp"): {
        4: ("unreachable", R1_ADDRESS[4], (3, 13), "communication administratively prohibited"),
        6: ("unreachable", R1_ADDRESS[6], (1, 1), "communication administratively prohibited"),
    },
    (7102, "udp"): {
        4: ("unreachable", R1_ADDRESS[4], (3, 10), "host administratively prohibited"),
        6: ("unreachable", R1_ADDRESS[6], (1, 5), "source address failed ingress/egress policy"),
    },
    (7103, "tcp"): {
        4: ("unreachable", R1_ADDRESS[4], (3, 5), "source route failed"),
        6: ("unreachable", R1_ADDRESS[6], (1, 2), "beyond the scope of the source address"),
    },
    (7111, "tcp"): {
        4: ("unreachable", R2_ADDRESS[4], (3, 1), "host unreachable"),
        6: ("unreachable", R2_ADDRESS[6], (1, 0), "no route to destination"),
    },
    (7112, "tcp"): {
        4: ("unreachable", R2_ADDRESS[4], (3, 2), "protocol unreachable"),
        6: ("unreachable", R2_ADDRESS[6], (1, 6), "reject route to destination"),
    },
    (7113, "udp"): {
        4: ("unreachable", R2_ADDRESS[4], (3, 0), "network unreachable"),
        6: ("unreachable", R2_ADDRESS[6], (1, 3), "address unreachable"),
    },
    (7114, "tcp"): {
        4: ("refused", R2_ADDRESS[4], (3, 3), "port unreachable"),
        6: ("refused", R2_ADDRESS[6], (1, 4), "port unreachable"),
    },
}
# Dropped: the hops that answer a trace, from the site outward.
DROPPED = {
    (7104, "tcp"): {4: [R1_ADDRESS[4]], 6: [R1_ADDRESS[6]]},
    (7121, "tcp"): {4: [R1_ADDRESS[4], R2_ADDRESS[4]], 6: [R1_ADDRESS[6], R2_ADDRESS[6]]},
    (7122, "udp"): {4: [R1_ADDRESS[4], R2_ADDRESS[4]], 6: [R1_ADDRESS[6], R2_ADDRESS[6]]},
}

# The server's answering services, until its stdin closes.
SERVER_SCRIPT = textwrap.dedent(
    f"""
    import sys
    from probes.responders import Listeners

    listeners = Listeners()
    for host in sys.argv[1:]:
        listeners.open_tcp(host, {OPEN_TCP})
        listeners.dns(host, {DNS_UDP})
    print("ready", flush=True)
    sys.stdin.read()
    listeners.close()
    """
)

# What a site worker does with a run's checks (probes.probing.site_engine: its settings, no
# database), from the site's namespace; prints the results and the ORM modules loaded (none).
SITE_SCRIPT = textwrap.dedent(
    """
    import asyncio, dataclasses, json, sys, time
    from probes.engine import Check
    from probes.probing import site_engine

    checks = [Check(**check) for check in json.loads(sys.argv[1])]
    engine = site_engine("dmz", float(sys.argv[2]))
    if len(sys.argv) > 3:  # a deadline, seconds from now
        engine.deadline = asyncio.new_event_loop().time() + float(sys.argv[3])
    found = {}
    started = time.monotonic()
    asyncio.run(engine.run(checks, lambda check, result: found.__setitem__(check.key, dataclasses.asdict(result))))
    orm = [name for name in sys.modules if name.startswith(("django.db", "django.apps"))]
    print(json.dumps({"results": found, "orm": orm, "seconds": time.monotonic() - started}))
    """
)


def run(*command: str, stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def inside(namespace: str, *command: str, stdin: str | None = None) -> str:
    return run("ip", "netns", "exec", namespace, *command, stdin=stdin)


def forward_rules(rules: list[tuple[int, str, str, str]]) -> str:
    lines = []
    for port, protocol, v4, v6 in rules:
        for family, verdict, kind in (("ipv4", v4, "icmp"), ("ipv6", v6, "icmpv6")):
            action = "drop" if verdict == "drop" else f"reject with {kind} type {verdict}"
            lines.append(f"meta nfproto {family} {protocol} dport {port} {action}")
    body = "\n".join(lines)
    return (
        f"table inet lab {{\n chain forward {{\n type filter hook forward priority 0; policy accept;\n{body}\n }}\n}}\n"
    )


@pytest.fixture(scope="module")
def lab():
    """The four namespaces, their links, routes and firewalls, and the server's services."""
    namespaces: list[str] = []
    server = None
    try:
        for namespace in (SITE, R1, R2, SERVER):
            run("ip", "netns", "add", namespace)
            namespaces.append(namespace)
            inside(namespace, "ip", "link", "set", "lo", "up")
            # No duplicate address detection: addresses (link-local ones too) usable at once, not
            # "tentative" for the first second, when neighbour discovery would lose the first probes.
            inside(namespace, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        for (left, left_if, left_v4, left_v6), (right, right_if, right_v4, right_v6) in LINKS:
            run("ip", "link", "add", left_if, "netns", left, "type", "veth", "peer", "name", right_if, "netns", right)
            for namespace, interface, v4, v6 in (
                (left, left_if, left_v4, left_v6),
                (right, right_if, right_v4, right_v6),
            ):
                inside(namespace, "ip", "addr", "add", f"{v4}/24", "dev", interface)
                inside(namespace, "ip", "addr", "add", f"{v6}/64", "dev", interface)
                inside(namespace, "ip", "link", "set", interface, "up")
        for namespace, routes in ROUTES.items():
            for network, via_v4, via_v6 in routes:
                if via_v4:
                    inside(namespace, "ip", "route", "add", network, "via", via_v4)
                if via_v6:
                    inside(namespace, "ip", "-6", "route", "add", network, "via", via_v6)
        for router, rules in ((R1, R1_RULES), (R2, R2_RULES)):
            # Forwarding on; ICMP errors not rate-limited (real routers send a few a second: the
            # lab's many probes at once would lose answers to that limit, not to the rules).
            sysctls = ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
            sysctls += ["net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"]
            inside(router, "sysctl", "-qw", *sysctls)
            inside(router, "nft", "-f", "-", stdin=forward_rules(rules))
        server = subprocess.Popen(
            ["ip", "netns", "exec", SERVER, sys.executable, "-c", SERVER_SCRIPT, *SERVER_ADDRESS.values()],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout.readline().strip() == "ready"
        # Neighbour discovery loses the first IPv6 packet of a cold lab (its SYN is sent again after
        # 1 s): one connection each way first, as a site's network has its neighbours known.
        for address in SERVER_ADDRESS.values():
            inside(SITE, sys.executable, "-c", f"import socket; socket.create_connection(({address!r}, {OPEN_TCP}), 5)")
        yield
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(10)
        for namespace in namespaces:  # their veth pairs go with them
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)


def probe_from_site(checks: list[dict], timeout: float = 1, deadline: float | None = None, **env: str) -> dict:
    """The checks probed from the site's namespace as the site's worker would (no database)."""
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    environment |= {"PROBE_ALLOWED_NETWORKS": "dmz=10.231.0.0/16,fd31::/16", "PROBE_TRACE_HOPS": "16", **env}
    arguments = [json.dumps(checks), str(timeout)] + ([str(deadline)] if deadline is not None else [])
    done = subprocess.run(
        ["ip", "netns", "exec", SITE, sys.executable, "-c", SITE_SCRIPT, *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["orm"] == [], f"a site worker loaded {found['orm']}"
    probe_from_site.seconds = found["seconds"]
    return {int(key): CheckResult(**result) for key, result in found["results"].items()}


def check(key: int, version: int, port: int, protocol: str) -> dict:
    service = "dns" if protocol == "udp" else "http"
    return {"key": key, "host": SERVER_ADDRESS[version], "port_start": port, "port_end": port} | {
        "protocol": protocol,
        "service": service,
    }


@pytest.mark.parametrize("version", [4, 6])
def test_each_rejection_names_the_device_and_its_icmp_code(lab, version):
    flows = list(EXPECTED)
    found = probe_from_site([check(n, version, port, protocol) for n, (port, protocol) in enumerate(flows)])

    for n, flow in enumerate(flows):
        state, by, icmp, name = EXPECTED[flow][version]
        result = found[n]
        assert result.state == state, (flow, result)
        if by is None:
            assert "rejected_by" not in result.evidence and "icmp" not in result.evidence, (flow, result)
            continue
        kind, code = icmp
        assert result.evidence["rejected_by"] == by, (flow, result)
        assert result.evidence["icmp"] == {"type": kind, "code": code, "name": name}, (flow, result)
        said = f"ICMP port unreachable from {by}" if state == "refused" else f"rejected by {by}: {name}"
        assert result.summary.startswith(said), (flow, result)

    # In words, as the page and the API say them.
    admin = found[flows.index((7101, "tcp"))]
    icmp = "ICMP type 3 code 13" if version == 4 else "ICMPv6 type 1 code 1"
    assert in_words(admin.evidence, "dmz", admin.state) == [
        f"From site dmz ({LINKS[0][0][2 if version == 4 else 3]}) to {SERVER_ADDRESS[version]} port 7101/tcp: "
        f"unreachable (rejected by {R1_ADDRESS[version]}: communication administratively prohibited, {icmp}), "
        "1 try, 1 s timeout."
    ]
    closed = found[flows.index((CLOSED_UDP, "udp"))]
    assert (
        f"(rejected by {SERVER_ADDRESS[version]} itself: port unreachable"
        in in_words(closed.evidence, "dmz", "refused")[0]
    )


@pytest.mark.parametrize("version", [4, 6])
def test_a_dropped_flow_is_traced_to_the_last_hop_that_answers(lab, version):
    flows = list(DROPPED)
    found = probe_from_site([check(n, version, port, protocol) for n, (port, protocol) in enumerate(flows)])

    for n, flow in enumerate(flows):
        result, path = found[n], DROPPED[flow][version]
        assert result.state == "filtered", (flow, result)
        assert result.evidence["path"] == path, (flow, result)
        assert result.evidence["stopped_after"] == path[-1] and result.evidence["stopped_hop"] == len(path)
        # The first window of hops (8) found silence after the last answer: no second one.
        assert result.evidence["traced_hops"] == 8
        assert result.summary.startswith(f"no answer after {path[-1]}, hop {len(path)} from site dmz"), result
        assert in_words(result.evidence, "dmz", "filtered")[-1] == (
            f"No answer after {path[-1]}, hop {len(path)} from site dmz: the traffic stops there or just beyond "
            f"(hops that answered: {', '.join(path)})."
        )
    # The trace runs while the probe waits out its timeout (1 s): a dropped flow costs about that.
    assert probe_from_site.seconds < 1.5


def test_tracing_stays_within_its_limits(lab):
    """At most PROBE_TRACE_MAX traces a run; none that could not end before the run's deadline;
    none at all with PROBE_TRACE_HOPS=0. Every dropped flow is still `filtered`."""
    dropped = [check(n, 4, port, protocol) for n, (port, protocol) in enumerate(DROPPED)]

    one = probe_from_site(dropped, PROBE_TRACE_MAX="1")
    traced = [r for r in one.values() if "path" in r.evidence]
    skipped = [r for r in one.values() if "not_traced" in r.evidence]
    assert len(traced) == 1 and len(skipped) == 2
    limit = "the run reached its limit of 1 traces (PROBE_TRACE_MAX)"
    assert skipped[0].evidence["not_traced"] == limit
    assert in_words(skipped[0].evidence, "dmz", "filtered")[-1] == f"Not traced: {limit}."

    late = probe_from_site(dropped, deadline=0.2)
    assert {r.evidence["not_traced"] for r in late.values()} == {"no time left before the run's deadline"}

    off = probe_from_site(dropped, PROBE_TRACE_HOPS="0")
    assert all(r.state == "filtered" and not {"path", "not_traced"} & set(r.evidence) for r in off.values())


def test_the_lab_agrees_with_traceroute(lab):
    """The lab's truth by a standard tool: traceroute -T (TCP SYN to the port, TTL 1, 2, ...)
    sees the same hops answer as the engine's trace."""
    for version in (4, 6):
        (result,) = probe_from_site([check(1, version, 7121, "tcp")]).values()
        shown = inside(
            SITE, "traceroute", f"-{version}", "-T", "-n", "-q", "1", "-w", "1", "-m", "4", "-p", "7121",
            SERVER_ADDRESS[version],
        )  # fmt: skip
        hops = re.findall(r"^\s*\d+\s+([0-9a-f.:]+)\s", shown, flags=re.MULTILINE)
        assert hops == result.evidence["path"], shown


def test_every_icmp_code_has_its_name_and_one_state_in_both_families():
    for (version, kind), codes in NAMES.items():
        for code, name in codes.items():
            error = IcmpError(version, kind, code, "192.0.2.1")
            refused = (version, kind, code) in ((4, 3, 3), (6, 1, 4))  # port unreachable
            assert (error.name, error.state) == (name, "refused" if refused else "unreachable")
    assert IcmpError(6, 1, 99, "2001:db8::1").name == "destination unreachable, code 99"
    assert IcmpError(4, 11, 0, "192.0.2.1").time_exceeded and IcmpError(6, 3, 0, "2001:db8::1").time_exceeded


def test_the_error_queue_entry_is_read_with_its_sender():
    """struct sock_extended_err and the sender's sockaddr after it, as the kernel writes them."""
    header = EXTENDED_ERR.pack(113, SO_EE_ORIGIN_ICMP, 3, 13, 0, 0, 0)
    v4 = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + socket.inet_pton(socket.AF_INET, "10.0.2.1")
    assert parse_extended_err(header + v4 + bytes(8)) == IcmpError(4, 3, 13, "10.0.2.1")
    header = EXTENDED_ERR.pack(13, SO_EE_ORIGIN_ICMP6, 1, 1, 0, 0, 0)
    v6 = struct.pack("=H", socket.AF_INET6) + bytes(6) + socket.inet_pton(socket.AF_INET6, "fd31:2::2") + bytes(4)
    assert parse_extended_err(header + v6) == IcmpError(6, 1, 1, "fd31:2::2")
    local = EXTENDED_ERR.pack(90, 1, 0, 0, 0, 0, 0) + bytes(16)  # SO_EE_ORIGIN_LOCAL: EMSGSIZE, no ICMP
    assert parse_extended_err(local) is None
