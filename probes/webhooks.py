"""Webhooks: a JSON body signed with HMAC-SHA256, posted only to the networks webhooks may reach.

The name is resolved once: every address it resolves to is checked, and the POST connects to
those addresses (the name still in the Host header, TLS's SNI and the certificate's check), so a
resolver that answers an allowed address and then another cannot send the POST elsewhere."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from django.conf import settings

from ports.addresses import never_probed

SIGNATURE_HEADER = "X-Portal-Signature"


class DeliveryError(Exception):
    """A delivery failed; `final` when trying again cannot help (a target not allowed)."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook URL whose name was resolved once and every address checked: the POST goes to
    these addresses and no other, so a resolver cannot answer differently for the connection."""

    scheme: str
    host: str
    port: int
    path: str
    # (family, socket address) as getaddrinfo gave them, in its order.
    addresses: tuple[tuple[int, tuple], ...]

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def check_webhook_target(url: str) -> WebhookTarget:
    """A webhook goes only to addresses in ALERT_WEBHOOK_ALLOWED_NETWORKS: what a user types
    must not turn the portal into a way to reach its own network's other services. Every address
    the name resolves to must be allowed (a resolver may answer a mix), and the link-local,
    metadata, unspecified, multicast and broadcast addresses never are."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:  # "Port out of range"
        raise DeliveryError("A webhook's port is 1-65535.", final=True) from exc
    if port == 0:
        raise DeliveryError("A webhook's port is 1-65535.", final=True)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("A webhook is an http:// or https:// URL with a host.", final=True)
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        # The ASCII form of the name: what DNS, the Host header and TLS's SNI all carry.
        host = parts.hostname.encode("idna").decode()
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid name"
        # Not final: a resolver that fails now (EAI_AGAIN) may answer at the next try.
        raise DeliveryError(f"{parts.hostname} does not resolve ({reason}).") from exc
    allowed = [ipaddress.ip_network(n) for n in settings.ALERT_WEBHOOK_ALLOWED_NETWORKS]
    addresses: dict[tuple[int, tuple], None] = {}  # ordered, without the repeats getaddrinfo gives
    for family, _, _, _, sockaddr in found:
        ip = ipaddress.ip_address(sockaddr[0])
        if reason := never_probed(ip):
            raise DeliveryError(f"{host} resolves to {ip}, {reason}: webhooks never go there.", final=True)
        if not any(ip in network for network in allowed):
            raise DeliveryError(
                f"{host} resolves to {ip}, outside the networks webhooks may reach (ALERT_WEBHOOK_ALLOWED_NETWORKS).",
                final=True,
            )
        addresses[(family, sockaddr)] = None
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return WebhookTarget(parts.scheme, host, port, path, tuple(addresses))


def _connect(target: WebhookTarget, timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that takes it. The socket is made
    from getaddrinfo's own answer: nothing here resolves the name (or an address) again."""
    error: OSError = OSError(f"{target.host} has no address")
    for family, sockaddr in target.addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
        else:
            return sock
    raise error


class _CheckedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the checked addresses; the name stays in the Host header."""

    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = _connect(self.target, self.timeout)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked addresses: SNI and the certificate's check are for the name."""

    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        self.tls = ssl.create_default_context()  # the system's CAs, hostname checked
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.target = target

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(_connect(self.target, self.timeout), server_hostname=self.target.host)


def post_webhook(url: str, secret: str, payload: dict) -> None:
    """POST the signed body to the addresses just checked. Redirects are not followed (a
    redirect could lead anywhere: it is an answer like any other), and no proxy is used."""
    target = check_webhook_target(url)
    body = json.dumps(payload, sort_keys=True).encode()
    timeout = settings.ALERT_WEBHOOK_TIMEOUT
    kind = _CheckedHTTPSConnection if target.scheme == "https" else _CheckedHTTPConnection
    connection = kind(target, timeout)
    try:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body)}
        connection.request("POST", target.path, body=body, headers=headers)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(network_error(exc, target.where, timeout)) from exc
    finally:
        connection.close()
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status} from receiver")


def network_error(exc: OSError | http.client.HTTPException, where: str, timeout: float) -> str:
    """What went wrong talking to `where` (host:port), in words a channel's owner can act on:
    the page shows this, never an exception's repr."""
    if isinstance(exc, TimeoutError):  # socket.timeout too, and TLS handshakes that time out
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError):  # before ConnectionResetError: a subclass
        return f"{where} closed the connection without an answer"
    if isinstance(exc, http.client.HTTPException):
        return f"{where} did not answer as HTTP"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by {where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the TLS certificate of {where} was not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc.strerror or exc}"
    return f"{where} could not be reached: {exc.strerror or exc}"
