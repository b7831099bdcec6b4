"""Sign-in with an OpenID Connect provider (mozilla-django-oidc), on when OIDC_RP_CLIENT_ID is set.

The authorization code flow, always with PKCE (S256) and a nonce: the login page shows a button
(OIDC_PROVIDER_NAME) that sends the browser to the provider, whose answer comes back to
/oidc/callback/ (the redirect URI to register). The user is the portal's user of the username
claim's name (created at the first sign-in); the groups claim's values are groups of
DIRECTORY_GROUP_TEAMS, which make the user's teams and roles. Unset, /oidc/ answers 404.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import LOGIN_URL
from .env import env_bool, env_int, env_str

OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET")
# The provider's endpoints, as its discovery document (/.well-known/openid-configuration) names them:
# authorization_endpoint, token_endpoint, userinfo_endpoint and jwks_uri.
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT")
OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
# A provider that sends groups only for a scope of their own (e.g. "groups") is asked for it here.
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
# The client authenticates at the token endpoint with client_secret_post, or client_secret_basic when set.
OIDC_TOKEN_USE_BASIC_AUTH = env_bool("OIDC_TOKEN_USE_BASIC_AUTH")
# Seconds for each request to the provider (token, userinfo, keys): a provider that stops answering
# fails a sign-in with a message rather than holding a web worker.
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10)
# The provider as the login page names it: "Sign in with Entra ID", "Signing in with Entra ID failed: ...".
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "your company account")
# The claims (ID token or userinfo) that name the user and list their groups.
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")

# Fixed: PKCE with S256 on every sign-in (a provider may require it; an intercepted code is useless
# without the verifier kept in the session), and failures back to the login page, which says why.
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
LOGIN_REDIRECT_URL_FAILURE = LOGIN_URL

OIDC_BACKENDS = ["portal.directory.oidc.DirectoryOIDCBackend"] if OIDC_RP_CLIENT_ID else []

if OIDC_RP_CLIENT_ID:
    _missing = [
        name
        for name, value in [
            ("OIDC_RP_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
            ("OIDC_OP_AUTHORIZATION_ENDPOINT", OIDC_OP_AUTHORIZATION_ENDPOINT),
            ("OIDC_OP_TOKEN_ENDPOINT", OIDC_OP_TOKEN_ENDPOINT),
            ("OIDC_OP_USER_ENDPOINT", OIDC_OP_USER_ENDPOINT),
            # The ID token's signature is checked with the provider's keys (with the secret for HS*).
            ("OIDC_OP_JWKS_ENDPOINT", OIDC_OP_JWKS_ENDPOINT or OIDC_RP_SIGN_ALGO.startswith("HS")),
        ]
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set, so OpenID Connect sign-in needs {', '.join(_missing)}.")
