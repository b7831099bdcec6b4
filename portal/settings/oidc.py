"""Sign-in with an OpenID Connect provider (mozilla-django-oidc), on when OIDC_RP_CLIENT_ID is set."""

from .env import env_str

OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_BACKENDS = ["portal.directory.oidc.DirectoryOIDCBackend"] if OIDC_RP_CLIENT_ID else []
