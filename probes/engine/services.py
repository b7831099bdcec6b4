"""The services the engine speaks: how to make each answer over TCP, and over UDP the request
that makes it answer and how to read that answer. A service not named here is judged by the
connection alone (TCP) or is one-way (UDP)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from .dns import dns_query, parse_dns_udp_reply, speak_dns
from .ldap import speak_ldap
from .smtp import speak_smtp
from .sqlbrowser import SQL_BROWSER_REQUEST, parse_sql_browser_reply
from .tls import speak_tls

# --- Services over TCP ----------------------------------------------------------------

TCP_SERVICES: dict[str, Callable[..., Awaitable[dict]]] = {
    "smtp": speak_smtp,
    "tls": speak_tls,
    "dns": speak_dns,
    "ldap": speak_ldap,
}


# --- Services over UDP ----------------------------------------------------------------


def udp_exchange(service: str) -> tuple[bytes, Callable[[bytes, bytes], dict]] | None:
    """The request that makes a UDP service answer, and how to read its answer."""
    if service == "dns":
        return dns_query(int.from_bytes(os.urandom(2), "big")), parse_dns_udp_reply
    if service == "mssql_browser":
        return SQL_BROWSER_REQUEST, parse_sql_browser_reply
    return None
