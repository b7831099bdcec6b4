"""Validation of the addresses, hostnames, networks and site names that admins type in, and of API tokens' lifetimes."""

import ipaddress
import re
import socket

from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ValidationError

from .addresses import is_ip_address, never_probed

# RFC 1123 labels; a name must not look like a (mistyped) dotted IPv4 address.
# Used with fullmatch(): "$" alone would let a trailing newline through ("dmz\n").
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")


def parse_cron(value: str) -> crontab:
    """Five cron fields (minute, hour, day of month, month, day of week) as Celery's schedule."""
    fields = value.split()
    if len(fields) != 5:
        raise ValidationError("Give five fields: minute hour day-of-month month day-of-week, e.g. '15 */4 * * *'.")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute, hour, day_of_week, day_of_month, month_of_year)
    except (ValueError, KeyError, IndexError) as wrong:
        raise ValidationError(f"Not a cron expression: {str(wrong).rstrip('.')}.") from wrong


def validate_cron(value: str) -> None:
    parse_cron(value)


def normalize_address(value: str) -> str:
    """An address as the portal keeps it: IPv4-mapped IPv6 as IPv4, IPv6 compressed. Zone ids and
    addresses no rule can name (unspecified, multicast, broadcast, link-local) are refused."""
    if "%" in value:
        raise ValidationError(f'"{value}" has a zone id (%...): give the address alone.', code="invalid_host")
    ip = ipaddress.ip_address(value)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    reason = never_probed(ip)
    if reason:
        raise ValidationError(f"{value} is {reason}: no firewall rule names it.", code="invalid_host")
    return str(ip)


def is_numeric_ipv4_form(value: str) -> bool:
    """Hex, octal, integer or short forms that resolvers read as an IPv4 address (0x7f000001, 0177.1)."""
    try:
        socket.inet_aton(value)
    except OSError:
        return False
    return True


def validate_host(value: str) -> None:
    """An IP address or a DNS hostname; "any" is for peer networks only."""
    validate_name(value)  # one line, no control characters (a NUL would break the parsers too)
    if "%" in value:
        raise ValidationError(f'"{value}" has a zone id (%...): give the address alone.', code="invalid_host")
    if is_ip_address(value):
        normalize_address(value)
        return
    if is_numeric_ipv4_form(value):
        raise ValidationError(
            f'"{value}" is a numeric form of an IPv4 address: write it as four decimal numbers (a.b.c.d).',
            code="invalid_host",
        )
    if value.casefold() == "any":
        raise ValidationError(
            '"any" is for peer networks only: a host needs its IP address or hostname.', code="invalid_host"
        )
    name = value.rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(f'"{value}" is neither an IP address nor a valid hostname.', code="invalid_host")


def validate_network(value: str) -> None:
    """A network in CIDR notation (host bits zero), or "any"."""
    validate_name(value)  # one line, no control characters (a NUL would break the parsers too)
    if value == "any":
        return
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValidationError(
            f'"{value}" is not a network in CIDR notation or "any": {exc}.', code="invalid_network"
        ) from exc


# Control characters (and line or paragraph separators), which no name needs: in an export
# they would end a line or a cell where the reader does not expect it.
# A team's name, as long as its column: DIRECTORY_GROUP_TEAMS' names are checked against it at start.
TEAM_NAME_LENGTH = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def validate_name(value: str) -> None:
    """A name is one line of text: no control characters (tabs and newlines included)."""
    if _CONTROL.search(value):
        raise ValidationError("A name may not contain control characters (newlines, tabs, ...).", code="control")


def validate_text(value: str) -> None:
    """Free text may have lines, but no other control characters."""
    if _CONTROL_BUT_LINES.search(value):
        raise ValidationError("The text may not contain control characters other than newlines.", code="control")


def validate_site(value: str) -> None:
    """A probe site's name, which becomes part of a queue name (probes.<site>)."""
    if not SITE_NAME.fullmatch(value):
        raise ValidationError(
            "A site name is lower-case letters, digits, '-' and '_', starting with a letter or digit.",
            code="invalid_site",
        )


def validate_token_days(days: int) -> None:
    """An API token's lifetime in days: at least one, at most API_TOKEN_MAX_DAYS (read now, not at
    import: the ceiling is the operator's, and a test may change it)."""
    if days < 1:
        raise ValidationError("A token lives at least 1 day.", code="min_value")
    if days > settings.API_TOKEN_MAX_DAYS:
        raise ValidationError(
            f"A token lives at most {settings.API_TOKEN_MAX_DAYS} days (API_TOKEN_MAX_DAYS): ask for fewer.",
            code="max_value",
        )
