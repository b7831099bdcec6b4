"""The probe engine: checks a rule's path from this side of the network, with asyncio.

Knows nothing of the database: it takes checks (a host, ports, a protocol and the service
expected there) and returns what it found, port by port and summarised per check.
Names are resolved once, then every port is probed by address. Concurrency is bounded
overall and per destination, so a thousand silent (filtered) ports cost about one
timeout, not a thousand.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ports.rules import number_runs
from ports.validators import is_ip_address, never_probed

OPEN, REFUSED, FILTERED, UNREACHABLE = "open", "refused", "filtered", "unreachable"
DNS_ERROR, INTERCEPTED, UNVERIFIABLE, ERROR = "dns_error", "intercepted", "unverifiable", "error"
NOT_PROBED = "not_probed"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def refusal(address: str, allowed: Iterable[Network]) -> str | None:
    """Why the engine will not connect to an address (None if it may): never to the kinds no
    rule names, and only inside the networks its probe site may reach."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    reason = never_probed(ip)
    if reason:
        return f"{address} is {reason}: never probed"
    allowed = list(allowed)
    if not any(ip.version == network.version and ip in network for network in allowed):
        networks = ", ".join(map(str, allowed)) or "none"
        return (
            f"{address} is outside the networks this probe site may reach ({networks}): not probed. "
            "The operator opens more with PROBE_ALLOWED_NETWORKS."
        )
    return None


# For a range whose ports disagree, the item shows the most telling of their states.
SEVERITY = [INTERCEPTED, ERROR, DNS_ERROR, UNREACHABLE, FILTERED, REFUSED, UNVERIFIABLE, OPEN]

UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


@dataclass(frozen=True)
class Check:
    key: int
    host: str
    port_start: int
    port_end: int
    protocol: str  # tcp or udp
    service: str  # ports.choices.Service
    expected_pin: str = ""  # sha256/<base64> of the certificate's public key, for TLS

    @property
    def ports(self) -> range:
        return range(self.port_start, self.port_end + 1)


@dataclass
class PortResult:
    port: int
    state: str
    latency_ms: float | None = None
    detail: str = ""
    evidence: dict = field(default_factory=dict)


@dataclass
class CheckResult:
    state: str
    summary: str
    address: str = ""
    latency_ms: float | None = None
    evidence: dict = field(default_factory=dict)


class Finding(Exception):
    """What a service exchange found when it was not the service answering as itself: a state,
    a sentence for people, and the evidence (with its low-level `cause`)."""

    state = ERROR

    def __init__(self, reason: str, evidence: dict) -> None:
        super().__init__(reason)
        self.evidence = evidence


class Intercepted(Finding):
    """The service answered, but not as itself: something in the path speaks for it."""

    state = INTERCEPTED


def cause_of(exc: BaseException) -> str:
    """The low-level cause of a failure: the errno's name, the TLS library's reason, or the type."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"EOF after {len(exc.partial)} of {exc.expected} bytes"
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """An exception as words, never empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Engine:
    timeout: float = 3.0
    concurrency: int = 1000
    per_destination: int = 64
    allowed: tuple[Network, ...] = LOOPBACK  # the networks the engine may connect to

    async def run(self, checks: Iterable[Check], on_result: Callable[[Check, CheckResult], None]) -> None:
        """Probe every check; `on_result` is called as each one completes."""
        checks = list(checks)
        self._overall = asyncio.Semaphore(self.concurrency)
        self._per_destination: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.per_destination)
        )
        addresses = await self._resolve_all({check.host for check in checks})

        async def one(check: Check) -> None:
            address = addresses[check.host]
            on_result(check, address if isinstance(address, CheckResult) else await self.probe(check, address))

        await asyncio.gather(*(one(check) for check in checks))

    async def _resolve_all(self, hosts: set[str]) -> dict[str, str | CheckResult]:
        names = sorted(hosts)
        found = await asyncio.gather(*(self._resolve(name) for name in names))
        return dict(zip(names, found, strict=True))

    async def _resolve(self, host: str) -> str | CheckResult:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        started = time.monotonic()
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), self.timeout
            )
        except (TimeoutError, OSError) as exc:
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            return CheckResult(
                DNS_ERROR,
                f"{host} does not resolve: {reason}",
                latency_ms=_ms(started),
                evidence={
                    "host": host,
                    "reason": reason,
                    "cause": "timeout" if isinstance(exc, TimeoutError) else cause_of(exc),
                },
            )
        return infos[0][4][0]

    async def probe(self, check: Check, address: str) -> CheckResult:
        # Checked here, after names are resolved, before anything is sent, whatever the database says.
        if reason := refusal(address, self.allowed):
            return CheckResult(NOT_PROBED, reason, address, evidence={"cause": "probe target policy"})
        if check.port_start == check.port_end:  # most rules: no gather, no task of its own
            return summarise(check, address, [await self._probe_port(check, address, check.port_start)])
        ports = await asyncio.gather(*(self._probe_port(check, address, port) for port in check.ports))
        return summarise(check, address, ports)

    async def _probe_port(self, check: Check, address: str, port: int) -> PortResult:
        # The destination's slot first: probes queued for one busy host must not hold
        # overall slots that other hosts' probes could use.
        async with self._per_destination[address], self._overall:
            started = time.monotonic()
            try:
                if check.protocol == "udp":
                    return await self._probe_udp(check, address, port, started)
                return await self._probe_tcp(check, address, port, started)
            except Exception as exc:  # a probe must report, never crash the run
                return PortResult(port, ERROR, _ms(started), describe(exc), {"cause": cause_of(exc)})

    async def _probe_tcp(self, check: Check, address: str, port: int, started: float) -> PortResult:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), self.timeout)
        except TimeoutError:
            return PortResult(
                port,
                FILTERED,
                None,
                f"no answer within {self.timeout:g} s: dropped, or the host is down",
                {"cause": f"no SYN-ACK within {self.timeout:g} s"},
            )
        except ConnectionRefusedError as exc:
            return PortResult(
                port,
                REFUSED,
                _ms(started),
                "connection refused (RST): nothing listens, or a firewall rejects",
                {"cause": cause_of(exc)},
            )
        except OSError as exc:
            if exc.errno in UNREACHABLE_ERRNOS:
                return PortResult(port, UNREACHABLE, _ms(started), describe(exc), {"cause": cause_of(exc)})
            raise
        latency = _ms(started)
        speak = TCP_SERVICES.get(check.service)
        try:
            if speak is None:
                return PortResult(port, OPEN, latency, "TCP connection accepted")
            try:
                evidence = await asyncio.wait_for(speak(reader, writer, check), self.timeout)
            except Finding as exc:
                return PortResult(port, exc.state, latency, str(exc), exc.evidence)
            except TimeoutError:
                if check.service == "tls":  # a server answers a ClientHello at once; silence is held traffic
                    return PortResult(
                        port,
                        ERROR,
                        latency,
                        f"TCP connected, but the TLS handshake got no answer within {self.timeout:g} s: "
                        "a device in the path may be holding TLS",
                        {"cause": "no ServerHello in time"},
                    )
                return PortResult(port, OPEN, latency, f"connected, but no {check.service} answer in time")
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
                reason = f"connected, then the {check.service} exchange failed: {describe(exc)}"
                return PortResult(port, ERROR, latency, reason, {"cause": cause_of(exc)})
            return PortResult(port, OPEN, latency, evidence.pop("detail"), evidence)
        finally:
            writer.close()
            with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _probe_udp(self, check: Check, address: str, port: int, started: float) -> PortResult:
        exchange = udp_exchange(check.service)
        if exchange is None:
            return PortResult(
                port,
                UNVERIFIABLE,
                None,
                f"{check.service} over UDP is one-way: nothing answers, so an open path cannot be "
                "told from a dropped one. Check that the receiver logs a test trap.",
                {"cause": "one-way protocol"},
            )
        request, parse = exchange
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagram(answered), remote_addr=(address, port))
        try:
            transport.sendto(request)
            try:
                data = await asyncio.wait_for(answered, self.timeout)
            except TimeoutError:
                return PortResult(
                    port,
                    FILTERED,
                    None,
                    f"no UDP answer within {self.timeout:g} s: dropped, or nothing answers",
                    {"cause": f"no datagram within {self.timeout:g} s"},
                )
            except ConnectionRefusedError as exc:
                return PortResult(
                    port,
                    REFUSED,
                    _ms(started),
                    "ICMP port unreachable: nothing listens, or a firewall rejects",
                    {"cause": cause_of(exc)},
                )
            except OSError as exc:
                if exc.errno in UNREACHABLE_ERRNOS:
                    return PortResult(port, UNREACHABLE, _ms(started), describe(exc), {"cause": cause_of(exc)})
                raise
            latency = _ms(started)
            try:
                evidence = parse(data, request)
            except ValueError as exc:
                return PortResult(
                    port, ERROR, latency, f"an answer that is not {check.service}: {exc}", {"cause": data[:64].hex()}
                )
            return PortResult(port, OPEN, latency, evidence.pop("detail"), evidence)
        finally:
            transport.close()


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, answered: asyncio.Future[bytes]) -> None:
        self.answered = answered

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.answered.done():
            self.answered.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answered.done():
            self.answered.set_exception(exc)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def summarise(check: Check, address: str, ports: list[PortResult]) -> CheckResult:
    """One result for a check: its port's, or for a range the most telling state with a count."""
    if len(ports) == 1:
        (only,) = ports
        return CheckResult(only.state, only.detail, address, only.latency_ms, {"port": only.port, **only.evidence})
    by_state: dict[str, list[int]] = defaultdict(list)
    for result in ports:
        by_state[result.state].append(result.port)
    state = min(by_state, key=SEVERITY.index)
    opened = len(by_state.get(OPEN, []))
    others = "; ".join(f"{s}: {number_runs(p)}" for s, p in sorted(by_state.items()) if s != OPEN)
    summary = f"{opened} of {len(ports)} open" + (f"; {others}" if others else "")
    latencies = [r.latency_ms for r in ports if r.latency_ms is not None]
    evidence = {
        "ports": {
            str(r.port): {
                "state": r.state,
                "latency_ms": r.latency_ms,
                "detail": r.detail,
                "cause": r.evidence.get("cause"),
            }
            for r in ports
        },
        "open": opened,
        "total": len(ports),
    }
    if state != OPEN:  # the range's verdict, with the cause of its first port in that state
        evidence["cause"] = next(r.evidence.get("cause") for r in ports if r.state == state)
    return CheckResult(state, summary, address, max(latencies) if latencies else None, evidence)


# --- Services over TCP ----------------------------------------------------------------


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
    tls = await _tls_handshake(writer, check, evidence | {"starttls": True})
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.write(b"QUIT\r\n")
    detail = f"SMTP banner {banner[0]!r}; STARTTLS, then TLS certificate issued by {tls['issuer']}, {tls['pin']}"
    return {"detail": detail, **evidence, "starttls": True, **tls}


# Names of the CAs that TLS-inspecting products re-sign decrypted traffic with, as they stand
# in an issuer's organisation or common name (never its locality: "L=Palo Alto" is no proxy).
INSPECTION_CA = re.compile(
    r"\b(FortiGate|Fortinet_CA_SSL|Zscaler|Palo Alto Networks|Forward[- ]Trust|Blue ?Coat|ProxySG|"
    r"Symantec Web|Sophos (?:SSL|Web|UTM)|Check Point|Netskope|Cisco Umbrella|McAfee Web Gateway|Skyhigh|"
    r"Barracuda Web|WatchGuard|SonicWall|Untangle|Kaspersky|Avast|ESET SSL Filter|Trend Micro|iboss|"
    r"Menlo Security|Smoothwall|Squid|Securly|Lightspeed)\b",
    re.IGNORECASE,
)


def inspection_ca(certificate: x509.Certificate) -> str | None:
    """The TLS-inspecting product whose CA issued the certificate, if its issuer names one."""
    names = [
        attribute.value
        for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME)
        for attribute in certificate.issuer.get_attributes_for_oid(oid)
    ]
    found = INSPECTION_CA.search(" / ".join(map(str, names)))
    return found.group(0) if found else None


async def _tls_handshake(writer: asyncio.StreamWriter, check: Check, evidence: dict) -> dict:
    """Shake hands over the connection (TLS ports, LDAPS, SMTP after STARTTLS) and judge who
    answered: the expected public key, or else no certificate of a TLS-inspecting product."""
    context = ssl.create_default_context()
    # The probe checks who answers, not the chain: the pin below is the verdict.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    server_name = None if is_ip_address(check.host) else check.host
    try:
        await writer.start_tls(context, server_hostname=server_name)
    except ConnectionResetError as exc:
        # An RST carries an errno; asyncio reports a plain close (EOF) mid-handshake the same way, without one.
        how = "reset" if exc.errno else "closed"
        raise Intercepted(
            f"{how} during the TLS handshake: a device inspecting TLS may be blocking it",
            evidence | {"cause": cause_of(exc) if exc.errno else "EOF during the TLS handshake"},
        ) from exc
    except ssl.SSLError as exc:
        alert = re.search(r"ALERT_([A-Z_]+)", exc.reason or "")
        if alert:
            reason = f"the server ended the TLS handshake with the alert {alert.group(1).lower()}"
        elif exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            reason = "the answer to the TLS handshake is not TLS: something else listens, or answers for the server"
        else:
            reason = f"the TLS handshake failed: {describe(exc)}"
        raise Finding(reason, evidence | {"cause": cause_of(exc)}) from exc
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    certificate = x509.load_der_x509_certificate(der)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    tls = {
        "issuer": certificate.issuer.rfc4514_string(),
        "subject": certificate.subject.rfc4514_string(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "pin": pin,
        "tls_version": ssl_object.version(),
    }
    inspection = inspection_ca(certificate)
    if inspection:
        tls["inspection_ca"] = inspection
    if check.expected_pin and pin != check.expected_pin:
        raise Intercepted(
            f"certificate public key {pin} is not the expected {check.expected_pin} (issuer {tls['issuer']}):"
            " TLS is decrypted or answered by another device",
            evidence | tls | {"expected_pin": check.expected_pin, "cause": "unexpected public key"},
        )
    if inspection and not check.expected_pin:
        raise Intercepted(
            f"certificate issued by {tls['issuer']}, the CA of a TLS-inspecting product ({inspection}):"
            " the traffic is decrypted on the way",
            evidence | tls | {"cause": "issuer of an inspection CA"},
        )
    return tls


async def speak_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: Check) -> dict:
    tls = await _tls_handshake(writer, check, {})
    return {"detail": f"TLS certificate issued by {tls['issuer']}, {tls['pin']}", **tls}


def dns_query(query_id: int) -> bytes:
    """A query for the root's NS records, recursion not desired: any DNS server answers it."""
    header = struct.pack("!HHHHHH", query_id, 0x0000, 1, 0, 0, 0)
    return header + b"\x00" + struct.pack("!HH", 2, 1)


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def parse_dns_reply(data: bytes, request: bytes) -> dict:
    if len(data) < 12:
        raise ValueError(f"{len(data)} bytes is too short for a DNS header")
    query_id, flags, _, answers, authorities, _ = struct.unpack("!HHHHHH", data[:12])
    if query_id != struct.unpack("!H", request[:2])[0] or not flags & 0x8000:
        raise ValueError("not a reply to the query sent")
    rcode = RCODES.get(flags & 0x000F, str(flags & 0x000F))
    return {
        "detail": f"DNS answered {rcode} ({answers} answers, {authorities} authority records)",
        "rcode": rcode,
        "answers": answers,
    }


async def speak_dns(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: Check) -> dict:
    request = dns_query(int.from_bytes(os.urandom(2), "big"))
    writer.write(struct.pack("!H", len(request)) + request)
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return {"transport": "tcp", **parse_dns_reply(await reader.readexactly(length), request)}


def _ber(tag: int, content: bytes) -> bytes:
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def ldap_rootdse_request(message_id: int = 1) -> bytes:
    """An anonymous search of the root DSE (base "", scope base, (objectClass=*))."""
    attributes = _ber(0x30, b"".join(_ber(0x04, a) for a in (b"namingContexts", b"supportedLDAPVersion")))
    search = (
        _ber(0x04, b"")  # baseObject
        + _ber(0x0A, b"\x00")  # scope: baseObject
        + _ber(0x0A, b"\x00")  # derefAliases: never
        + _ber(0x02, b"\x00")  # sizeLimit
        + _ber(0x02, b"\x05")  # timeLimit
        + _ber(0x01, b"\x00")  # typesOnly: false
        + _ber(0x87, b"objectClass")  # filter: present
        + attributes
    )
    return _ber(0x30, _ber(0x02, bytes([message_id])) + _ber(0x63, search))


async def _read_ber(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    tag, first = await reader.readexactly(2)
    length = first
    if first & 0x80:
        length = int.from_bytes(await reader.readexactly(first & 0x7F), "big")
    return tag, await reader.readexactly(length)


def _ber_items(data: bytes) -> list[tuple[int, bytes]]:
    items, offset = [], 0
    while offset < len(data):
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[offset : offset + size], "big")
            offset += size
        items.append((tag, data[offset : offset + length]))
        offset += length
    return items


def _octet_strings(data: bytes) -> list[str]:
    """Every OCTET STRING inside a constructed BER value, depth first."""
    found = []
    for tag, content in _ber_items(data):
        if tag == 0x04:
            found.append(content.decode("utf-8", "replace"))
        elif tag & 0x20:
            found += _octet_strings(content)
    return found


async def speak_ldap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: Check) -> dict:
    writer.write(ldap_rootdse_request())
    tag, message = await _read_ber(reader)
    items = _ber_items(message)
    if tag != 0x30 or len(items) < 2 or items[1][0] not in (0x64, 0x65):
        raise ConnectionError("the answer is not an LDAP search result")
    if items[1][0] == 0x65:  # SearchResultDone without an entry: the server refused the anonymous read
        code = _ber_items(items[1][1])[0][1]
        return {"detail": f"LDAP answered; anonymous root DSE read refused (result {int.from_bytes(code, 'big')})"}
    strings = _octet_strings(items[1][1])
    values: dict[str, list[str]] = {}
    name = None
    for text in strings[1:]:  # the first is the entry's DN, "" for the root DSE
        if text in ("namingContexts", "supportedLDAPVersion"):
            name = text
            values[name] = []
        elif name:
            values[name].append(text)
    contexts = ", ".join(values.get("namingContexts", [])) or "none"
    return {"detail": f"LDAP root DSE read; naming contexts {contexts}", **values}


TCP_SERVICES: dict[str, Callable[..., Awaitable[dict]]] = {
    "smtp": speak_smtp,
    "tls": speak_tls,
    "dns": speak_dns,
    "ldap": speak_ldap,
}


# --- Services over UDP ----------------------------------------------------------------

SQL_BROWSER_REQUEST = b"\x03"  # CLNT_UCAST_EX: list the instances


def parse_sql_browser_reply(data: bytes, request: bytes) -> dict:
    if len(data) < 3 or data[0] != 0x05:
        raise ValueError("not an SQL Server Browser response (SVR_RESP)")
    (length,) = struct.unpack("<H", data[1:3])
    text = data[3 : 3 + length].decode("ascii", "replace")
    instances = []
    for record in filter(None, text.split(";;")):
        fields = record.split(";")
        instances.append(dict(zip(fields[::2], fields[1::2], strict=False)))
    names = ", ".join(
        f"{i.get('ServerName', '?')}\\{i.get('InstanceName', '?')} tcp {i.get('tcp', '-')}" for i in instances
    )
    return {"detail": f"SQL Server Browser lists {names or 'no instances'}", "instances": instances}


def parse_dns_udp_reply(data: bytes, request: bytes) -> dict:
    return {"transport": "udp", **parse_dns_reply(data, request)}


def udp_exchange(service: str) -> tuple[bytes, Callable[[bytes, bytes], dict]] | None:
    """The request that makes a UDP service answer, and how to read its answer."""
    if service == "dns":
        return dns_query(int.from_bytes(os.urandom(2), "big")), parse_dns_udp_reply
    if service == "mssql_browser":
        return SQL_BROWSER_REQUEST, parse_sql_browser_reply
    return None


def parse_pin(value: str) -> str:
    """Normalise a pin given as sha256/<base64> or as hex."""
    value = value.strip()
    if value.startswith("sha256/"):
        raw = base64.b64decode(value[7:], validate=True)
    elif re.fullmatch(r"[0-9a-fA-F:]{64,95}", value):
        raw = bytes.fromhex(value.replace(":", ""))
    else:
        raise ValueError("a pin is sha256/<base64> or 64 hex digits")
    if len(raw) != 32:
        raise ValueError("a SHA-256 pin is 32 bytes")
    return "sha256/" + base64.b64encode(raw).decode()
