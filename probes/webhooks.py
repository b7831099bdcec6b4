"""Webhooks: a JSON body signed with HMAC-SHA256, posted only to the networks webhooks may reach."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

SIGNATURE_HEADER = "X-Portal-Signature"


class DeliveryError(Exception):
    """A delivery failed; `final` when trying again cannot help (a target not allowed)."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect could lead anywhere: it is an answer like any other


def post_webhook(url: str, secret: str, payload: dict) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    check_webhook_target(url, final=True)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body)},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # the last: not HTTP at all
        raise DeliveryError(f"the webhook did not answer as HTTP: {exc!r}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"the webhook answered HTTP {status}")


def check_webhook_target(url: str, final: bool = False) -> None:
    """A webhook goes only to addresses in ALERT_WEBHOOK_ALLOWED_NETWORKS: what a user types
    must not turn the portal into a way to reach its own network's other services."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:  # "Port out of range"
        raise DeliveryError("A webhook's port is 1-65535.", final=True) from exc
    if port == 0:
        raise DeliveryError("A webhook's port is 1-65535.", final=True)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("A webhook is an http:// or https:// URL with a host.", final=True)
    try:
        found = socket.getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryError(f"{parts.hostname} does not resolve: {exc}", final=final) from exc
    allowed = [ipaddress.ip_network(n) for n in settings.ALERT_WEBHOOK_ALLOWED_NETWORKS]
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not any(ip in network for network in allowed):
            raise DeliveryError(
                f"{parts.hostname} ({ip}) is outside the networks webhooks may reach (ALERT_WEBHOOK_ALLOWED_NETWORKS).",
                final=True,
            )
