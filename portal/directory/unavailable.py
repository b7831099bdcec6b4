"""A sign-in during which the directory could not be used (down, not answering, a certificate not
trusted, an error): the login page says so rather than "wrong password", and the lockout does not
count the attempt.

Apart from portal.directory.ldap, which notes it: that imports python-ldap, which is installed only
where LDAP sign-in is configured, while the lockout asks here at every failed sign-in.
"""

from __future__ import annotations

from django.http import HttpRequest


def note(request: HttpRequest | None, message: str) -> None:
    """Say on the request, for its login page (request.directory_unavailable), that the directory
    could not be used and why."""
    if request is not None:
        request.directory_unavailable = message


def not_counted(request: HttpRequest, credentials: dict | None = None) -> bool:
    """Whether axes leaves a failed sign-in out of the lockout (AXES_WHITELIST_CALLABLE): one during
    which the directory could not be used. It checked no password: the directory's backend skips
    local accounts (those with a password of the portal's), so the local one found none to check.
    Counting it would lock out users who retry during an outage, and keep them out after it.
    Axes also asks before the backends run, when nothing is noted: a locked-out pair stays locked out.

    Nor is a sign-in without a username: OpenID Connect's callback, whose password (if any) the
    provider checked. Counted, its refusals would lock out everyone behind the same address."""
    if credentials is not None and not credentials.get("username"):
        return True
    return bool(getattr(request, "directory_unavailable", ""))
