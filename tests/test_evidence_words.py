"""A rule that does not answer says in words which path the probe took: from which site and
source address, to which address and port, with which timeout and how many tries. Real sockets,
on loopback only, or in a network namespace the test creates (with its own firewall rules and
routes) and removes. Evidence recorded before the path was still reads."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from probes.engine import Check, CheckResult, Engine
from probes.engine.core import Attempt, route_source
from probes.evidence import in_words
from probes.models import RunResult, readable_evidence
from probes.probing import reports
from probes.reports import MAX_REPORT_BYTES
from probes.responders import Listeners

ROOT = Path(__file__).resolve().parent.parent
PATH_KEYS = {"source", "source_port", "destination", "port", "protocol", "timeout", "tries", "cause"}


def probe(checks: list[Check], timeout: float = 1.0) -> dict[int, CheckResult]:
    found: dict[int, CheckResult] = {}
    asyncio.run(Engine(timeout=timeout).run(checks, lambda check, result: found.__setitem__(check.key, result)))
    return found


def closed_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    """A port that nothing listens on (just freed)."""
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind((host, 0))
        return taken.getsockname()[1]


def words(result: CheckResult, site: str = "dmz") -> list[str]:
    """What a user reads, as the API and the page build it: from the result with its site."""
    return RunResult(run=1, item=None, site=site, state=result.state, evidence=result.evidence).evidence_words


def test_a_refused_port_says_from_where_to_where_with_which_timeout_and_tries():
    port = closed_port("127.0.4.2")
    (result,) = probe([Check(1, "127.0.4.2", port, port, "tcp", "tls")], timeout=3).values()

    assert result.state == "refused"
    evidence = result.evidence
    assert set(evidence) == PATH_KEYS
    assert evidence["source"] == "127.0.0.1" and evidence["source_port"] > 0  # the SYN's own address
    assert evidence.items() >= {"destination": "127.0.4.2", "port": port, "protocol": "tcp"}.items()
    assert evidence.items() >= {"timeout": 3, "tries": 1, "cause": "ECONNREFUSED"}.items()
    assert words(result) == [
        f"From site dmz (127.0.0.1) to 127.0.4.2 port {port}/tcp: refused "
        "(the SYN was answered with a reset, ECONNREFUSED), 1 try, 3 s timeout."
    ]
    # Small, JSON-safe, and kept as it is by the recorder and in a site's report.
    assert readable_evidence(json.loads(json.dumps(evidence))) == evidence
    (report,) = reports(1, "w@h:dmz", {1: dataclasses.asdict(result)})
    assert len(json.dumps(report)) < min(MAX_REPORT_BYTES, 1000)


def test_udp_refused_and_unanswered_say_their_path():
    refused = closed_port("127.0.0.1", socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes the query, never answers
        silent.bind(("127.0.0.1", 0))
        quiet = silent.getsockname()[1]
        found = probe(
            [Check(1, "127.0.0.1", refused, refused, "udp", "dns"), Check(2, "127.0.0.1", quiet, quiet, "udp", "dns")]
        )

    assert (found[1].state, found[2].state) == ("refused", "filtered")
    assert words(found[1], "hq") == [
        f"From site hq (127.0.0.1) to 127.0.0.1 port {refused}/udp: refused "
        "(rejected by 127.0.0.1 itself: port unreachable, ICMP type 3 code 3), 1 try, 1 s timeout."
    ]
    assert words(found[2], "hq") == [
        f"From site hq (127.0.0.1) to 127.0.0.1 port {quiet}/udp: filtered: no answer within 1 s, 1 try."
    ]


def test_a_dropped_syn_and_a_range_say_their_path():
    listeners = Listeners()
    try:
        dropping = listeners.filtered("127.0.4.7")  # the kernel drops the SYNs, as a DROP rule does
        first = closed_port("127.0.4.8")
        found = probe(
            [
                Check(1, "127.0.4.7", dropping, dropping, "tcp", "http"),
                Check(2, "127.0.4.8", first, first + 1, "tcp", "http"),
            ]
        )
    finally:
        listeners.close()

    assert found[1].state == "filtered" and set(found[1].evidence) == PATH_KEYS
    assert words(found[1]) == [
        f"From site dmz (127.0.0.1) to 127.0.4.7 port {dropping}/tcp: filtered: no SYN-ACK within 1 s, 1 try."
    ]
    # A range says the path once, for each of its ports; a port's own entry stays small.
    ranged = found[2]
    assert ranged.evidence["ports"][str(first)].keys() == {"state", "latency_ms", "detail", "cause"}
    assert words(ranged) == [
        f"0 of 2 ports open (refused: {first}-{first + 1}).",
        f"From site dmz (127.0.0.1) to 127.0.4.8 ports {first}-{first + 1}/tcp, 1 try a port, 1 s timeout each.",
        "Cause: ECONNREFUSED.",
    ]


# Probes from inside the namespace (traffic on its own loopback only), and prints the results.
IN_NAMESPACE = textwrap.dedent(
    """
    import asyncio, dataclasses, json

    from probes.engine import Check, Engine

    checks = [
        Check(1, "127.0.0.1", 9449, 9449, "tcp", "http"),  # an nft drop rule
        Check(2, "127.0.0.1", 9450, 9450, "tcp", "http"),  # an nft reject, ICMP host unreachable
        Check(3, "127.0.9.1", 9449, 9449, "tcp", "http"),  # an unreachable route: nothing is sent
        Check(4, "127.0.9.1", 53, 53, "udp", "dns"),
    ]
    found = {}
    asyncio.run(Engine(timeout=1).run(checks, lambda check, result: found.__setitem__(check.key, result)))
    print(json.dumps({key: dataclasses.asdict(result) for key, result in found.items()}))
    """
)

RULES = """
table ip evidence_test {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 9449 drop
        tcp dport 9450 reject with icmp type host-unreachable
    }
}
"""


def test_a_firewall_that_drops_or_rejects_in_a_namespace_of_our_own_is_said_with_its_path():
    namespace = f"portal-evidence-{os.getpid()}"

    def run(*command: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", namespace, *command], input=stdin, capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout

    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        run("ip", "link", "set", "lo", "up")
        run("ip", "route", "add", "unreachable", "127.0.9.0/24", "table", "local")
        run("nft", "-f", "-", stdin=RULES)
        found = {
            int(key): CheckResult(**result)
            for key, result in json.loads(run(sys.executable, "-c", IN_NAMESPACE)).items()
        }
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=True)

    assert [found[key].state for key in (1, 2, 3, 4)] == ["filtered", "unreachable", "unreachable", "unreachable"]
    assert words(found[1]) == [
        "From site dmz (127.0.0.1) to 127.0.0.1 port 9449/tcp: filtered: no SYN-ACK within 1 s, 1 try."
    ]
    assert words(found[2]) == [
        "From site dmz (127.0.0.1) to 127.0.0.1 port 9450/tcp: unreachable (rejected by 127.0.0.1 itself: "
        "host unreachable, ICMP type 3 code 1), 1 try, 1 s timeout."
    ]
    # No route: the connect failed before a local address was bound, and no route gives one.
    assert "source" not in found[3].evidence and found[3].evidence["destination"] == "127.0.9.1"
    assert words(found[3]) == [
        "From site dmz to 127.0.9.1 port 9449/tcp: unreachable (no route to the host, EHOSTUNREACH), "
        "1 try, 1 s timeout."
    ]
    assert words(found[4]) == [
        "From site dmz to 127.0.9.1 port 53/udp: unreachable (no route to the host, EHOSTUNREACH), nothing sent, "
        "1 s timeout."
    ]


def test_the_source_comes_from_the_route_when_no_socket_was_bound():
    assert route_source("127.0.4.2") == "127.0.0.1" and route_source("::1") == "::1"  # nothing is sent
    check = Check(1, "127.0.4.2", 9449, 9449, "tcp", "http")
    assert Attempt(tries=1).evidence(check, "127.0.4.2", 9449, 2.5) == {
        "source": "127.0.0.1",
        "destination": "127.0.4.2",
        "port": 9449,
        "protocol": "tcp",
        "timeout": 2.5,
        "tries": 1,
    }
    evidence = {"port": 9449, "destination": "127.0.4.2", "protocol": "tcp", "timeout": 2.5, "tries": 2, "cause": "X"}
    assert in_words(evidence, state="error") == [
        "To 127.0.4.2 port 9449/tcp: the probe failed (X), 2 tries, 2.5 s timeout each."
    ]


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        ({"port": 9449, "cause": "ECONNREFUSED"}, ["Port 9449.", "Cause: ECONNREFUSED."]),
        ({"port": 9449, "cause": "no SYN-ACK within 3 s"}, ["Port 9449.", "Cause: no SYN-ACK within 3 s."]),
        (
            {
                "ports": {"17505": {"state": "refused", "cause": "ECONNREFUSED"}, "17506": {"state": "open"}},
                "open": 1,
                "total": 2,
                "cause": "ECONNREFUSED",
            },
            ["1 of 2 ports open (open: 17506, refused: 17505).", "Cause: ECONNREFUSED."],
        ),
        ({"reason": "no live probe worker in site 'branch'"}, ["no live probe worker in site 'branch'."]),
        ({}, []),
    ],
)
def test_evidence_recorded_before_the_path_still_reads(evidence, expected):
    assert in_words(evidence) == expected
    assert in_words(evidence, site="dmz", state="refused") == expected
    assert RunResult(run=1, item=None, site="dmz", state="refused", evidence=evidence).evidence_words == expected
