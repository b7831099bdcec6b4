"""Sign-in against LDAP or Active Directory (django-auth-ldap, portal.settings.ldap); the user's
groups make their teams and roles (ports.directory.follow_groups) at every sign-in.

Imported only through AUTHENTICATION_BACKENDS, when LDAP_SERVER_URI is set: python-ldap is not
installed otherwise. A directory that cannot be used fails the sign-in with a message on the login
page (portal.directory.unavailable), never a server error; local accounts sign in all the same.
"""

from __future__ import annotations

import logging

import ldap
from django.conf import settings
from django.contrib.auth import get_user_model
from django.dispatch import receiver
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, ldap_error

from ports.choices import DirectorySource
from ports.directory import follow_groups
from ports.models import DirectoryAccount

from . import unavailable

log = logging.getLogger(__name__)

# The directory was not reached, or not over TLS with a certificate the portal trusts (python-ldap
# says no more than that: "Can't contact LDAP server", "Connect error"), or it did not answer in time.
UNREACHABLE = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT)


def local_account(username: str) -> bool:
    """Whether `username` (as django-auth-ldap takes it: stripped, in any case) names a user the
    directory did not make: a local account, with a password of the portal's own or without one."""
    named = {f"{get_user_model().USERNAME_FIELD}__iexact": username.strip()}
    others = get_user_model()._default_manager.filter(**named)
    return others.exclude(directory_account__source=DirectorySource.LDAP).exists()


class DirectoryLDAPBackend(LDAPBackend):
    """The directory's user is the portal's user of the same name (lower-cased), created at their
    first sign-in without a password and linked to the directory (DirectoryAccount); names, email
    and teams follow the directory at every sign-in."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: object
    ) -> object | None:
        username = kwargs.get(get_user_model().USERNAME_FIELD, username)
        # A local account stays local: a directory user of the same name does not sign in as it
        # (nor become the portal's superuser "admin"); ModelBackend checks its password, if it has one.
        if username is None or local_account(username):
            return None
        user = super().authenticate(request, username=username, password=password)
        if user is None:
            return None
        DirectoryAccount.objects.get_or_create(
            user=user, defaults={"source": DirectorySource.LDAP, "subject": user.ldap_user.dn[:255]}
        )
        if self.settings.GROUP_SEARCH is None:
            return user
        try:
            groups = user.ldap_user.group_dns
        except ldap.LDAPError as error:
            # Teams and roles that could not be read are not left as they were: no sign-in.
            ldap_error.send(type(self), context="follow_groups", user=user, request=request, exception=error)
            return None
        follow_groups(user, groups)
        return user

    def get_user(self, user_id: int) -> object | None:
        # As ModelBackend: a user deactivated in the portal is signed out of every session at once.
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None


@receiver(ldap_error, sender=DirectoryLDAPBackend)
def directory_unavailable(
    sender: type, context: str, user: object, request: HttpRequest | None, exception: ldap.LDAPError, **kwargs: object
) -> None:
    """django-auth-ldap catches the directory's errors and fails the sign-in: say why on the login
    page, in words an anonymous visitor may read (not the directory's hosts nor its own message:
    those go to the log)."""
    uri = settings.AUTH_LDAP_SERVER_URI
    tls = settings.AUTH_LDAP_START_TLS or uri.startswith("ldaps://")
    if not isinstance(exception, UNREACHABLE):
        what = "answered the portal with an error (the portal's log says which)"
    elif tls:
        what = "could not be reached securely (no answer, or a certificate the portal does not trust)"
    else:
        what = "could not be reached"
    log.warning("Directory sign-in failed %s: %s %s: %r", context, uri, what, exception)
    if tls and isinstance(exception, UNREACHABLE):
        log.warning("Is LDAP_CA_FILE the CA of the directory's certificate, and does the certificate name its host?")
    unavailable.note(
        request, f"The directory {what}; directory accounts cannot sign in right now. Local accounts still can."
    )
