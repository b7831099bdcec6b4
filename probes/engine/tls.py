"""TLS: shake hands (on TLS ports, LDAPS, SMTP after STARTTLS) and judge who answered, by the
certificate's public key (its pin) or the CA of a TLS-inspecting product."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ports.addresses import is_ip_address

from .checks import Check
from .findings import Finding, Intercepted, cause_of, describe

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


async def tls_handshake(writer: asyncio.StreamWriter, check: Check, evidence: dict) -> dict:
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
    tls = await tls_handshake(writer, check, {})
    return {"detail": f"TLS certificate issued by {tls['issuer']}, {tls['pin']}", **tls}


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
