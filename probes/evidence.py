"""A probe's evidence in words, for people: what answered, what the certificate said, which
ports of a range answered, and for a rule that does not answer, the path the probe took (from
which site and address, to which address and port, with which timeout and how many tries), the
device that rejected it (an ICMP error's sender), or where silence starts on its trace. The
page and the API show these sentences; the raw evidence stays in the API for tools."""

from __future__ import annotations

from ports.ranges import number_runs

# What an errno named as a probe's cause means on the path (probes.engine.findings.cause_of).
CAUSES = {
    "EHOSTUNREACH": "no route to the host",
    "ENETUNREACH": "no route to the network",
    "EHOSTDOWN": "the host is down",
    "ENETDOWN": "the network is down",
}


def _lines(value: object) -> str:
    return " / ".join(map(str, value)) if isinstance(value, list) else str(value)


def _seconds(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _tries(value: object) -> str:
    if value == 0:
        return "nothing sent"
    return "1 try" if value == 1 else f"{value} tries"


def rejection(evidence: dict) -> str:
    """ "rejected by 10.0.2.1: communication administratively prohibited, ICMP type 3 code 13"."""
    by, icmp = evidence["rejected_by"], evidence.get("icmp") or {}
    itself = " itself" if by == evidence.get("destination") else ""  # the host, not a device before it
    kind = "ICMPv6" if ":" in str(by) else "ICMP"
    return f"rejected by {by}{itself}: {icmp.get('name', '?')}, {kind} type {icmp.get('type')} code {icmp.get('code')}"


def where_silence_starts(evidence: dict, site: str = "") -> str:
    """What a filtered rule's trace found, as a sentence ("" if it was not traced)."""
    if evidence.get("stopped_after"):
        origin = f" from site {site}" if site else ""
        path = ", ".join(map(str, evidence.get("path") or []))
        return (
            f"No answer after {evidence['stopped_after']}, hop {evidence.get('stopped_hop', '?')}{origin}: "
            f"the traffic stops there or just beyond (hops that answered: {path})."
        )
    if "traced_hops" in evidence:
        return f"No hop answered a TTL-limited probe toward the port (hops 1-{evidence['traced_hops']})."
    if evidence.get("not_traced"):
        return f"Not traced: {evidence['not_traced']}."
    return ""


def _verdict(evidence: dict, state: str) -> str:
    """What happened on the path, with its cause, tries and timeout: after the colon of path()."""
    cause, protocol = evidence.get("cause"), evidence.get("protocol")
    timeout = _seconds(evidence["timeout"]) if "timeout" in evidence else None
    tries = _tries(evidence["tries"]) if "tries" in evidence else None
    if state == "filtered":
        answer = "no SYN-ACK" if protocol == "tcp" else "no answer"
        said = f"filtered: {answer} within {timeout} s" if timeout else f"filtered ({cause})" if cause else "filtered"
        return ", ".join(filter(None, [said, tries]))
    if state in ("refused", "unreachable") and evidence.get("rejected_by"):
        said = f"{state} ({rejection(evidence)})"
    elif state == "refused":
        how = "ICMP port unreachable came back" if protocol == "udp" else "the SYN was answered with a reset"
        said = f"refused ({how}, {cause})" if cause else f"refused ({how})"
    elif state == "unreachable":
        meaning = CAUSES.get(str(cause), "an ICMP unreachable came back")
        said = f"unreachable ({meaning}, {cause})" if cause else "unreachable"
    elif state == "error":
        said = f"the probe failed ({cause})" if cause else "the probe failed"
    else:
        said = f"{state} ({cause})" if state and cause else state or str(cause or "")
    each = " each" if isinstance(evidence.get("tries"), int) and evidence["tries"] > 1 else ""
    return ", ".join(filter(None, [said, tries, f"{timeout} s timeout{each}" if timeout else None]))


def path(evidence: dict, site: str = "", state: str = "") -> str:
    """One sentence: from which site and source address to which address and port(s), and what
    the probe found there ("From site dmz (127.0.4.20) to 127.0.4.2 port 9449/tcp: refused (...),
    1 try, 3 s timeout."). A range's says how each of its ports was tried."""
    source = evidence.get("source")
    origin = f"site {site} ({source})" if site and source else f"site {site}" if site else source
    protocol = f"/{evidence['protocol']}" if evidence.get("protocol") else ""
    to = f"From {origin} to {evidence['destination']}" if origin else f"To {evidence['destination']}"
    if isinstance(evidence.get("ports"), dict):
        ports = number_runs(sorted(int(port) for port in evidence["ports"]))
        each = [_tries(evidence["tries"]) + " a port"] if evidence.get("tries") else []
        if "timeout" in evidence:
            each.append(f"{_seconds(evidence['timeout'])} s timeout each")
        return f"{to} ports {ports}{protocol}" + "".join(f", {words}" for words in each) + "."
    where = f" port {evidence['port']}{protocol}" if "port" in evidence else ""
    return f"{to}{where}: {_verdict(evidence, state)}."


def in_words(evidence: dict, site: str = "", state: str = "") -> list[str]:
    """The evidence as sentences, in the order a reader checks them; nothing for no evidence.
    `site` and `state` are the result's own (its evidence does not repeat them). Evidence recorded
    before the path was (without `destination`) reads as it always did."""
    if not isinstance(evidence, dict):
        return []
    words = []
    on_path = "destination" in evidence
    ranged = "ports" in evidence and isinstance(evidence["ports"], dict)
    if ranged:
        by_state: dict[str, list[int]] = {}
        for port, result in evidence["ports"].items():
            by_state.setdefault(result.get("state", "?"), []).append(int(port))
        answered = ", ".join(f"{found}: {number_runs(ports)}" for found, ports in sorted(by_state.items()))
        total = evidence.get("total", len(evidence["ports"]))
        words.append(f"{evidence.get('open', 0)} of {total} ports open ({answered}).")
        if on_path:
            words.append(path(evidence, site, state))
    elif on_path:
        words.append(path(evidence, site, state))
    elif "port" in evidence:
        words.append(f"Port {evidence['port']}.")
    if ranged and evidence.get("rejected_by"):  # a single port's path sentence says it
        said = rejection(evidence)
        words.append(f"{said[0].upper()}{said[1:]}.")
    if trace := where_silence_starts(evidence, site):
        words.append(trace)
    if evidence.get("banner"):
        words.append(f"Banner: {_lines(evidence['banner'])}.")
    if evidence.get("masked"):
        words.append("The banner is masked with asterisks, as an SMTP-inspecting firewall does.")
    if evidence.get("ehlo"):
        words.append(f"EHLO answer: {_lines(evidence['ehlo'])}.")
    if evidence.get("masked_keywords"):
        words.append(f"EHLO keywords overwritten: {_lines(evidence['masked_keywords'])}.")
    if "starttls" in evidence:
        words.append("STARTTLS offered." if evidence["starttls"] else "STARTTLS not offered.")
    if evidence.get("issuer"):
        subject = evidence.get("subject") or "an unnamed subject"
        words.append(f"Certificate issued by {evidence['issuer']} to {subject}.")
    if evidence.get("pin"):
        words.append(f"Public key pin {evidence['pin']}.")
    if evidence.get("expected_pin"):
        words.append(f"Expected pin {evidence['expected_pin']}.")
    if evidence.get("inspection_ca"):
        words.append(f"The issuer is the CA of a TLS-inspecting product ({evidence['inspection_ca']}).")
    if evidence.get("tls_version"):
        words.append(f"{evidence['tls_version']}.")
    if evidence.get("rcode"):
        words.append(f"DNS answered {evidence['rcode']} with {evidence.get('answers', 0)} answers.")
    if evidence.get("reason"):
        words.append(f"{evidence['reason']}.")
    if evidence.get("cause") and (ranged or not on_path):  # a port's path sentence says it
        words.append(f"Cause: {evidence['cause']}.")
    return words
