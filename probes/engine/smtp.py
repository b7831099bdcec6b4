"""SMTP: the session a mail server would get (banner, EHLO, STARTTLS), and what inspecting
firewalls do to it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

from .checks import Check
from .findings import Finding, Intercepted
from .tls import tls_handshake


async def _read_smtp_reply(reader: asyncio.StreamReader) -> list[str]:
    lines = []
    while True:
        line = (await reader.readline()).decode("ascii", "replace").rstrip("\r\n")
        if not line:
            raise ConnectionError("connection closed during an SMTP reply")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


def is_masked(reply: str) -> bool:
    """A reply an inspecting firewall has starred out (e.g. "220 ****************")."""
    text = reply[4:].replace(" ", "")
    return text.count("*") >= 4 and text.count("*") >= len(text) / 2


def is_masked_keyword(keyword: str) -> bool:
    """An EHLO keyword overwritten with X's, as Cisco ASA's ESMTP inspection does (STARTTLS
    becomes "XXXXXXXA"); real extensions that start with X (XCLIENT, XFORWARD) stay apart."""
    return re.fullmatch(r"X{4,}[A-Z0-9]?", keyword.upper()) is not None


async def speak_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: Check) -> dict:
    """The session a mail server would get: banner, EHLO, and STARTTLS with the certificate's pin.

    What inspecting firewalls do to it (Cisco ASA ESMTP inspection and its predecessor
    mailguard, and others): a banner starred out, EHLO keywords masked with X's (STARTTLS
    among them), EHLO refused though the banner says ESMTP, STARTTLS offered then refused, or
    the TLS that follows answered with another certificate. Each is `intercepted`.
    """
    banner = await _read_smtp_reply(reader)
    evidence: dict = {"banner": banner}
    if is_masked(banner[0]):
        raise Intercepted(
            f"SMTP banner masked by an inspecting device: {banner[0]!r}",
            evidence | {"masked": True, "cause": "banner of asterisks"},
        )
    writer.write(b"EHLO port-probe.invalid\r\n")
    ehlo = await _read_smtp_reply(reader)
    evidence["ehlo"] = ehlo
    if any(is_masked(line) for line in ehlo):
        raise Intercepted(f"EHLO reply masked by an inspecting device: {ehlo!r}", evidence | {"cause": "asterisks"})
    if not ehlo[0].startswith("250"):
        # "Command unrecognized / not implemented" after a banner that announced ESMTP: the
        # server knows EHLO, so something in between answered. A busy or refusing server (421,
        # 550) is the server itself.
        if banner[0].startswith("220") and "ESMTP" in banner[0].upper() and ehlo[0][:3] in ("500", "502"):
            raise Intercepted(
                f"the banner announces ESMTP, but EHLO was refused ({ehlo[0]!r}): a device in the path that "
                "allows only basic SMTP answers for the server",
                evidence | {"cause": f"EHLO answered {ehlo[0][:3]}"},
            )
        writer.write(b"QUIT\r\n")
        return {"detail": f"SMTP banner {banner[0]!r}; EHLO not supported ({ehlo[0]!r})", **evidence}
    keywords = [line[4:].split()[0].upper() for line in ehlo[1:] if line[4:].split()]
    masked = [keyword for keyword in keywords if is_masked_keyword(keyword)]
    if masked:
        raise Intercepted(
            f"EHLO keywords masked by an inspecting device: {', '.join(masked)} (STARTTLS and other extensions "
            "are hidden from the appliance)",
            evidence | {"masked_keywords": masked, "cause": "EHLO keywords overwritten with X"},
        )
    if "STARTTLS" not in keywords:
        writer.write(b"QUIT\r\n")
        if check.expected_pin:
            raise Intercepted(
                f"STARTTLS is not offered, though this server's certificate is known ({check.expected_pin}): "
                "a device in the path removed it, and mail would travel in clear text",
                evidence | {"starttls": False, "expected_pin": check.expected_pin, "cause": "STARTTLS missing"},
            )
        detail = (
            f"SMTP banner {banner[0]!r}; STARTTLS not offered, so mail travels in clear text (if the server "
            "offers it, a device in the path removed it: set the expected TLS pin to have that reported)"
        )
        return {"detail": detail, **evidence, "starttls": False}
    writer.write(b"STARTTLS\r\n")
    reply = await _read_smtp_reply(reader)
    if not reply[0].startswith("220"):
        refused = evidence | {"starttls": True, "starttls_reply": reply, "cause": f"STARTTLS answered {reply[0][:3]}"}
        if reply[0][:3] in ("500", "502"):  # unknown to whoever answered, though the server offered it
            raise Intercepted(
                f"STARTTLS was offered, then refused ({reply[0]!r}): a device in the path answers for the server",
                refused,
            )
        raise Finding(f"STARTTLS was offered, then declined by the server ({reply[0]!r})", refused)
    tls = await tls_handshake(writer, check, evidence | {"starttls": True})
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.write(b"QUIT\r\n")
    detail = f"SMTP banner {banner[0]!r}; STARTTLS, then TLS certificate issued by {tls['issuer']}, {tls['pin']}"
    return {"detail": detail, **evidence, "starttls": True, **tls}
