"""A probe's evidence in words, for people: what answered, what the certificate said, which
ports of a range answered. The page and the API show these sentences; the raw evidence stays
in the API for tools."""

from __future__ import annotations

from ports.ranges import number_runs


def _lines(value: object) -> str:
    return " / ".join(map(str, value)) if isinstance(value, list) else str(value)


def in_words(evidence: dict) -> list[str]:
    """The evidence as sentences, in the order a reader checks them; nothing for no evidence."""
    if not isinstance(evidence, dict):
        return []
    words = []
    if "ports" in evidence and isinstance(evidence["ports"], dict):
        by_state: dict[str, list[int]] = {}
        for port, result in evidence["ports"].items():
            by_state.setdefault(result.get("state", "?"), []).append(int(port))
        answered = ", ".join(f"{state}: {number_runs(ports)}" for state, ports in sorted(by_state.items()))
        total = evidence.get("total", len(evidence["ports"]))
        words.append(f"{evidence.get('open', 0)} of {total} ports open ({answered}).")
    elif "port" in evidence:
        words.append(f"Port {evidence['port']}.")
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
    if evidence.get("cause"):
        words.append(f"Cause: {evidence['cause']}.")
    return words
