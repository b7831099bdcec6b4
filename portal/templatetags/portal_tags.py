"""Template tags of the portal's pages: `{% load portal_tags %}`."""

from __future__ import annotations

import datetime

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def when(value: datetime.datetime | None, precision: str = "minute") -> str:
    """A moment, written one way on every page: ISO 8601 in UTC, "2026-12-03 14:32 UTC", in a
    <time> element whose title gives it to the second; static/times.js (every page loads it) puts
    the reader's local time in that title, which only the browser knows.

    `{% when alert.created %}` gives "2026-12-03 14:32 UTC"; `{% when delivery.next_attempt_at "time" %}`
    the time of day to the second, "14:32:10 UTC", with the date before it when that is not
    today (UTC). Nothing (None, "") gives nothing."""
    if value in (None, ""):
        return ""
    if precision not in ("minute", "time"):
        raise template.TemplateSyntaxError(f'{{% when %}} takes "minute" or "time", not {precision!r}.')
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    utc = value.astimezone(datetime.UTC)
    if precision == "time":
        today = timezone.now().astimezone(datetime.UTC).date()
        shown = utc.strftime("%H:%M:%S UTC" if utc.date() == today else "%Y-%m-%d %H:%M:%S UTC")
    else:
        shown = utc.strftime("%Y-%m-%d %H:%M UTC")
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', iso, utc.strftime("%Y-%m-%d %H:%M:%S UTC"), shown)


@register.simple_tag
def oidc_provider() -> str:
    """The provider the login page offers to sign in with (OpenID Connect), or "" when none is configured."""
    return settings.OIDC_PROVIDER_NAME if settings.OIDC_RP_CLIENT_ID else ""
