"""The API's token authentication: `Authorization: Token <key>`, as DRF's tokens were sent, against
the portal's hashed, expiring tokens (ports.models.ApiToken).

knox's own TokenAuthentication reads every other token of the user at each request, to delete
the expired ones; this one reads one row (the token, with its user) and writes only a token's
first use in a minute (ApiToken.record_use). An expired token is refused saying so and when, and
stays listed as expired for its user to see why their script stopped."""

from __future__ import annotations

import datetime

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ports.models import ApiToken

NEW_TOKEN = "make a new one on the API tokens page (/tokens/) or with `manage.py create_token`"


class ExpiringTokenAuthentication(TokenAuthentication):
    """request.user is the token's user, request.auth the token (ports.acting reads a request with
    `auth` as made through a token). No credentials: None, so that the next class (the session) is
    tried, and an anonymous request is answered 401 with `WWW-Authenticate: Token`."""

    def authenticate_credentials(self, key: bytes) -> tuple[object, ApiToken]:
        try:
            found = ApiToken.find(key.decode())
        except UnicodeDecodeError:
            found = None
        if found is None:
            raise AuthenticationFailed("Invalid token: no such token, or it was revoked.")
        if found.is_expired:
            expired = found.expiry.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise AuthenticationFailed(
                f"This token ({found.token_key}…, {found.name!r}) expired at {expired}: {NEW_TOKEN}."
            )
        if not found.user.is_active:
            raise AuthenticationFailed("This token's user is deactivated: their tokens no longer work.")
        found.record_use()
        return found.user, found


class ExpiringTokenScheme(OpenApiAuthenticationExtension):
    """The schema's `tokenAuth` security scheme, named as before (DRF's tokens): generated clients
    keep their name for it."""

    target_class = ExpiringTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: object) -> dict:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
