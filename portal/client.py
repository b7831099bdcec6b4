"""Who a request comes from, as far as the portal can tell."""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address: the last one the trusted proxy appended to X-Forwarded-For
    (DJANGO_TRUST_X_FORWARDED_FOR), else the connection's own. Behind a proxy, REMOTE_ADDR is
    the proxy's for everyone, and a lockout by it would lock every user out at once."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR", "")


def sign_in_name(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The name a sign-in is counted under by the lockout (AXES_USERNAME_CALLABLE): the username
    typed, stripped and casefolded, as the directory compares names. Counted as typed, "HEIDI" and
    "Heidi" would each get their own five guesses at the directory's heidi."""
    name = credentials.get("username") if credentials else request.POST.get("username")
    return name.strip().casefold() if isinstance(name, str) else name
