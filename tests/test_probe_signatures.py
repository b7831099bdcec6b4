"""What middleboxes do to the vendor's traffic, played by real responders on loopback, and what
the engine makes of each: SMTP inspection, TLS blocked or decrypted, reasons, IPv6."""

from __future__ import annotations

import dataclasses

import pytest

from probes.engine import Check
from probes.responders import Listeners, free_port, self_signed

from .test_probes import probe


def probe_named(checks: dict[str, Check], timeout: float) -> dict[str, object]:
    """Each named check's result."""
    found = probe(list(checks.values()), timeout=timeout)
    return {name: found[check.key] for name, check in checks.items()}


@pytest.fixture
def listeners():
    served = Listeners()
    yield served
    served.close()


@pytest.fixture(scope="module")
def certificates() -> dict:
    cert, key, pin = self_signed("mx.example.test")
    other_cert, other_key, _ = self_signed("mx.example.test", issuer_name="Corporate Inspection CA")
    forti_cert, forti_key, _ = self_signed("mx.example.test", issuer_name="FortiGate CA")
    local_cert, local_key, _ = self_signed("mx.example.test", issuer_name="Palo Alto Mail Relay")
    return {
        "server": (cert, key),
        "pin": pin,
        "other": (other_cert, other_key),
        "forti": (forti_cert, forti_key),
        "local": (local_cert, local_key),
    }


def smtp_cases(listeners: Listeners, certificates: dict, host: str = "127.0.0.1") -> dict[str, Check]:
    server, pin = certificates["server"], certificates["pin"]
    cases = {
        # (the responder's port, whether the check expects the server's pin)
        "honest_starttls": (listeners.smtp(host, tls=server), True),
        "first_seen_starttls": (listeners.smtp(host, tls=server), False),
        "honest_no_starttls": (listeners.smtp(host, starttls=False), False),
        "stripped_starttls": (listeners.smtp(host, starttls=False), True),
        "masked_keywords": (listeners.smtp(host, extensions=["PIPELINING", "XXXXXXXA", "XXXXXXXXXXXX"]), False),
        "ehlo_refused": (listeners.smtp(host, ehlo_reply='500 5.5.1 Command unrecognized: "EHLO"'), False),
        "starttls_refused": (listeners.smtp(host, starttls_reply="502 5.5.2 Error: command not recognized"), False),
        "starttls_declined": (listeners.smtp(host, starttls_reply="454 4.7.0 TLS not available"), False),
        "ehlo_busy": (listeners.smtp(host, ehlo_reply="421 4.3.2 Service shutting down"), False),
        "other_cert_after_starttls": (listeners.smtp(host, tls=certificates["other"]), True),
        "masked_banner": (listeners.smtp(host, banner="220 *******************************"), False),
    }
    return {
        name: Check(number, host, port, port, "tcp", "smtp", expected_pin=pin if pinned else "")
        for number, (name, (port, pinned)) in enumerate(cases.items(), start=1)
    }


def test_smtp_inspection_in_all_its_signatures(listeners, certificates):
    checks = smtp_cases(listeners, certificates)
    result = probe_named(checks, timeout=2)
    assert {name: r.state for name, r in result.items()} == {
        "honest_starttls": "open",
        "first_seen_starttls": "open",
        "honest_no_starttls": "open",
        "stripped_starttls": "intercepted",
        "masked_keywords": "intercepted",
        "ehlo_refused": "intercepted",
        "starttls_refused": "intercepted",
        "starttls_declined": "error",
        "ehlo_busy": "open",
        "other_cert_after_starttls": "intercepted",
        "masked_banner": "intercepted",
    }
    honest = result["honest_starttls"].evidence
    assert honest["starttls"] is True and honest["pin"] == certificates["pin"]
    assert "STARTTLS, then TLS certificate issued by CN=mx.example.test" in result["honest_starttls"].summary
    assert result["first_seen_starttls"].evidence["pin"] == certificates["pin"]  # what the worker then remembers
    assert "clear text" in result["honest_no_starttls"].summary
    assert "STARTTLS is not offered, though this server's certificate is known" in result["stripped_starttls"].summary
    masked = result["masked_keywords"]
    assert masked.evidence["masked_keywords"] == ["XXXXXXXA", "XXXXXXXXXXXX"]
    assert "250-XXXXXXXA" in masked.evidence["ehlo"]  # the raw EHLO lines are the evidence
    assert "EHLO was refused" in result["ehlo_refused"].summary
    assert "STARTTLS was offered, then refused ('502" in result["starttls_refused"].summary
    other = result["other_cert_after_starttls"]
    assert other.evidence["issuer"] == "CN=Corporate Inspection CA" and other.evidence["starttls"] is True
    assert "is not the expected" in other.summary


def tls_cases(listeners: Listeners, certificates: dict, host: str = "127.0.0.1") -> dict[str, Check]:
    pin = certificates["pin"]
    cases = {
        "reset": (listeners.tls_broken("reset", host), ""),
        "closed": (listeners.tls_broken("close", host), ""),
        "not_tls": (listeners.tls_broken("plain", host), ""),
        "inspection_ca": (listeners.tls(*certificates["forti"], host), ""),
        "a_place_not_a_proxy": (listeners.tls(*certificates["local"], host), ""),
        "silent": (listeners.tls_broken("hang", host), ""),
        "pinned": (listeners.tls(*certificates["server"], host), pin),
        "decrypted": (listeners.tls(*certificates["other"], host), pin),
    }
    return {
        name: Check(100 + number, host, port, port, "tcp", "tls", expected_pin=expected)
        for number, (name, (port, expected)) in enumerate(cases.items())
    }


def test_tls_blocked_or_inspected_is_not_open_and_says_why(listeners, certificates):
    checks = tls_cases(listeners, certificates)
    result = probe_named(checks, timeout=2)
    assert {name: r.state for name, r in result.items()} == {
        "reset": "intercepted",
        "closed": "intercepted",
        "not_tls": "error",
        "inspection_ca": "intercepted",
        "a_place_not_a_proxy": "open",
        "silent": "error",
        "pinned": "open",
        "decrypted": "intercepted",
    }
    assert result["reset"].summary == "reset during the TLS handshake: a device inspecting TLS may be blocking it"
    assert result["reset"].evidence["cause"] == "ECONNRESET"
    assert result["closed"].summary.startswith("closed during the TLS handshake")
    assert "is not TLS" in result["not_tls"].summary and result["not_tls"].evidence["cause"]
    assert result["inspection_ca"].evidence["inspection_ca"] == "FortiGate"
    assert "TLS-inspecting product" in result["inspection_ca"].summary
    assert "inspection_ca" not in result["a_place_not_a_proxy"].evidence
    assert "the TLS handshake got no answer within 2 s" in result["silent"].summary


def test_no_answer_without_its_reason(listeners, certificates):
    """Every state but open carries a sentence (never a dangling colon) and a low-level cause."""
    checks = {
        **smtp_cases(listeners, certificates),
        **tls_cases(listeners, certificates),
        "refused": Check(200, "127.0.0.1", (closed := free_port()), closed, "tcp", "tcp"),
        "filtered": Check(201, "127.0.0.1", (port := listeners.filtered()), port, "tcp", "tcp"),
        "trap": Check(202, "127.0.0.1", 162, 162, "udp", "snmp_trap"),
        "unresolvable": Check(203, "no-such-host.invalid", 25, 25, "tcp", "smtp"),
    }
    not_open = {name: result for name, result in probe_named(checks, timeout=1).items() if result.state != "open"}
    assert len(not_open) >= 14
    for name, result in not_open.items():
        assert result.summary.strip() and not result.summary.rstrip().endswith(":"), (name, result.summary)
        cause = result.evidence.get("cause") or result.evidence.get("reason")
        assert cause, (name, result.evidence)


def test_ipv6_targets_are_probed_like_ipv4_ones(listeners, certificates):
    host = "::1"
    open_port = listeners.open_tcp(host)
    filtered = listeners.filtered(host)
    refused = free_port(host)
    checks = {
        "open": Check(1, host, open_port, open_port, "tcp", "tcp"),
        "refused": Check(2, host, refused, refused, "tcp", "tcp"),
        "filtered": Check(3, host, filtered, filtered, "tcp", "tcp"),
        "smtp": smtp_cases(listeners, certificates, host)["honest_starttls"],
        "stripped": smtp_cases(listeners, certificates, host)["stripped_starttls"],
        "tls_reset": tls_cases(listeners, certificates, host)["reset"],
        "decrypted": tls_cases(listeners, certificates, host)["decrypted"],
    }
    checks = {name: dataclasses.replace(check, key=number) for number, (name, check) in enumerate(checks.items())}
    result = probe_named(checks, timeout=1)
    assert {name: r.state for name, r in result.items()} == {
        "open": "open",
        "refused": "refused",
        "filtered": "filtered",
        "smtp": "open",
        "stripped": "intercepted",
        "tls_reset": "intercepted",
        "decrypted": "intercepted",
    }
    assert {r.address for r in result.values()} == {"::1"}
