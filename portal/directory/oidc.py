"""Sign-in with an OpenID Connect provider: mozilla-django-oidc's authorization code flow, with
PKCE and a nonce (portal.settings.oidc), its user named by the username claim and their teams
following the groups claim (ports.directory.follow_groups).

Unconfigured (no OIDC_RP_CLIENT_ID), the views answer 404. A sign-in that fails, whatever failed
(the user cancelled at the provider, a state that is not this browser's, a provider that refuses
the code or cannot be reached, a token that does not verify), lands on the login page saying why
in words; the details go to the log.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from ports.choices import DirectorySource
from ports.directory import follow_groups
from ports.models import DirectoryAccount

log = logging.getLogger(__name__)

# Django's user's fields' lengths: a longer username is refused rather than cut (two would meet),
# longer names and emails are cut.
USERNAME_MAX = 150
FIELD_MAX = {"email": 254, "first_name": 150, "last_name": 150}

# The provider's error codes (RFC 6749 4.1.2.1, OpenID Connect Core 3.1.2.6) in words. The code
# is one of a known few; its error_description, which anyone can put in a link, is only logged.
PROVIDER_ERRORS = {
    "access_denied": "you did not allow it, or cancelled it.",
    "login_required": "the provider asks you to sign in there first.",
    "interaction_required": "the provider asks you to sign in there first.",
    "consent_required": "the provider asks you to allow the portal first.",
    "account_selection_required": "the provider asks you to choose an account first.",
    "temporarily_unavailable": "the provider is not available just now.",
}
# The state is unknown: not this browser's sign-in, an old one, or a link made elsewhere.
STALE = "it was started in another window or too long ago. Please try again."
# The provider refused the code, could not be reached, or answered what does not verify.
UNVERIFIED = (
    "the portal could not complete it with the provider. Please try again; if it fails again, "
    "tell an administrator (the portal's log says why)."
)


def configured() -> bool:
    return bool(settings.OIDC_RP_CLIENT_ID)


class Refused(SuspiciousOperation):
    """Claims the portal does not sign in with; the message is said on the login page."""


class DirectoryOIDCBackend(OIDCAuthenticationBackend):
    """The provider's user (its `sub`) is the portal's user made at their first sign-in, named by
    the username claim (OIDC_USERNAME_CLAIM, lower-cased, as LDAP's), with no password, and linked
    to the provider (DirectoryAccount): a name that is already another account's is refused. Their
    name and email follow the provider's, and their teams the groups claim (OIDC_GROUPS_CLAIM), at
    every sign-in."""

    def authenticate(self, request: HttpRequest | None, **credentials: object) -> object | None:
        # Only the callback's call is this backend's (the nonce and PKCE verifier kept in the session):
        # a password sign-in whose URL carries ?code=...&state=... must not make it redeem a code.
        if request is None or set(credentials) != {"nonce", "code_verifier"} or not credentials["code_verifier"]:
            return None
        return super().authenticate(request, **credentials)

    def get_userinfo(self, access_token: str, id_token: str, payload: dict) -> dict:
        """The ID token's claims with the userinfo endpoint's over them: Entra ID puts the username
        and groups in the ID token only, Keycloak and others in both or in userinfo only."""
        audience = payload.get("aud")
        if self.OIDC_RP_CLIENT_ID not in (audience if isinstance(audience, list) else [audience]):
            raise SuspiciousOperation(f"the ID token is for {audience!r}, not for this client")
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):  # OpenID Connect Core 5.3.2
            raise SuspiciousOperation("the userinfo's sub is not the ID token's")
        return {**payload, **userinfo}

    def verify_claims(self, claims: dict) -> bool:
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise Refused("the provider did not say who you are (its 'sub' claim); please tell an administrator.")
        name = claims.get(settings.OIDC_USERNAME_CLAIM)
        if not isinstance(name, str) or not name.strip() or len(name) > USERNAME_MAX:
            raise Refused(
                f"the provider did not say your username (its {settings.OIDC_USERNAME_CLAIM!r} claim); "
                "please tell an administrator."
            )
        return True

    def filter_users_by_claims(self, claims: dict) -> QuerySet:
        # By the provider's sub, linked at the first sign-in: not by email (mozilla-django-oidc's
        # default; an email is no account's key here), nor by a name, which may be a local account's.
        linked = {"directory_account__source": DirectorySource.OIDC, "directory_account__subject": claims["sub"]}
        return self.UserModel.objects.filter(**linked)

    def create_user(self, claims: dict) -> object:
        name = claims[settings.OIDC_USERNAME_CLAIM].strip().lower()
        if self.UserModel.objects.filter(username__iexact=name).exists():
            # A local account stays local, as with LDAP (and a directory user stays the directory's):
            # a provider's user of the same name does not sign in as it (nor as the superuser "admin").
            raise Refused("this name is already an account of the portal's, which does not sign in this way.")
        with transaction.atomic():
            user = self.UserModel.objects.create_user(name)  # no password
            DirectoryAccount.objects.create(user=user, source=DirectorySource.OIDC, subject=claims["sub"])
        log.info("OpenID Connect sign-in created the user %s", user.get_username())
        return self.update_user(user, claims)

    def update_user(self, user: object, claims: dict) -> object:
        # The provider's email and names, as long as the fields take (Django's names: 150 characters).
        changed = []
        for field, claim in (("email", "email"), ("first_name", "given_name"), ("last_name", "family_name")):
            value = claims.get(claim)
            if isinstance(value, str) and value and getattr(user, field) != value[: FIELD_MAX[field]]:
                setattr(user, field, value[: FIELD_MAX[field]])
                changed.append(field)
        if changed:
            user.save(update_fields=changed)
        follow_groups(user, groups_of(claims))
        return user

    def get_user(self, user_id: int) -> object | None:
        # As ModelBackend: a user deactivated in the portal is signed out of every session at once.
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict) -> object | None:
        try:
            return super().get_or_create_user(access_token, id_token, payload)
        except Refused as refused:
            self.request.oidc_refusal = str(refused)  # for the login page (CallbackView)
            raise


def groups_of(claims: dict) -> list[str]:
    """The groups claim's values: a list of names (or a single name, as some providers send one).
    Without DIRECTORY_GROUP_TEAMS they decide nothing. With it, a sign-in without them is refused
    rather than taken as "in no group", which would take the user out of every directory team:
    the provider left them out (not asked for by OIDC_RP_SCOPES, not set up for this client), or
    sent a reference instead (Entra ID's `_claim_names`, for a user in more than 200 groups)."""
    groups = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(groups, str):
        return [groups]
    if isinstance(groups, list):
        return [group for group in groups if isinstance(group, str)]
    if not settings.DIRECTORY_GROUP_TEAMS:
        return []
    log.warning(
        "OpenID Connect sign-in refused: the %r claim (OIDC_GROUPS_CLAIM) is %s. Does the provider send groups "
        "for the scopes OIDC_RP_SCOPES asks? Entra ID sends _claim_names instead past 200 groups.",
        settings.OIDC_GROUPS_CLAIM,
        "a reference (_claim_names)" if "_claim_names" in claims else "missing" if groups is None else "no list",
    )
    raise Refused("the provider did not send your groups, which decide your teams; please tell an administrator.")


class SignInView(OIDCAuthenticationRequestView):
    """The login page's button: to the provider's authorization endpoint, with the state, nonce and
    PKCE verifier kept in the session."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not configured():
            raise Http404("OpenID Connect sign-in is not configured.")
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back: signed in, or to the login page saying why not."""

    refusal = ""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not configured():
            raise Http404("OpenID Connect sign-in is not configured.")
        state = request.GET.get("state", "")
        if state not in request.session.get("oidc_states", {}):
            # Not this browser's sign-in (mozilla-django-oidc would answer a bare 400), and not for a
            # link made elsewhere to sign the user out either (its ?error= would).
            log.warning("OpenID Connect callback with an unknown state")
            self.refusal = STALE
            return self.login_failure()
        if error := request.GET.get("error"):
            log.warning(
                "OpenID Connect provider answered %s: %s", error[:100], request.GET.get("error_description", "")[:500]
            )
            self.refusal = PROVIDER_ERRORS.get(
                error, f"the provider refused it ({error if error.isidentifier() and len(error) <= 40 else 'error'})."
            )
        try:
            return super().get(request)
        # Beside the library's refusals, a provider's answer of the wrong shape (a list for an object,
        # a key without its "kid"): the sign-in fails saying so, never a server error.
        except (
            SuspiciousOperation,
            requests.RequestException,
            jwt.PyJWTError,
            KeyError,
            TypeError,
            AttributeError,
            ValueError,
        ) as error:
            log.warning("OpenID Connect sign-in failed: %s", error)
            self.refusal = UNVERIFIED
            return self.login_failure()

    def login_failure(self) -> HttpResponse:
        user = getattr(self, "user", None)
        if user is not None and not user.is_active:
            reason = "your account in the portal is disabled."
        else:
            reason = self.refusal or getattr(self.request, "oidc_refusal", "") or UNVERIFIED
        messages.error(self.request, f"Signing in with {settings.OIDC_PROVIDER_NAME} failed: {reason}")
        # Back to the login page, and from there where the user was going.
        wanted = self.request.session.get("oidc_login_next")
        return HttpResponseRedirect(self.failure_url + (f"?{urlencode({'next': wanted})}" if wanted else ""))
