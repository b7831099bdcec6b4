"""Hosts, login throttling, HTTPS behind a proxy, cookies and HSTS."""

import datetime

from .base import DEBUG
from .env import env_bool, env_int, env_list, env_str
from .ldap import LDAP_BACKENDS
from .oidc import OIDC_BACKENDS

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# Logins (pages, admin, the API's session login) are throttled: after AXES_FAILURE_LIMIT wrong
# passwords for a username from one address, that pair is locked out for AXES_COOLOFF_TIME. The
# directory's backends (LDAP, OpenID Connect), where configured, come before the local accounts.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    *LDAP_BACKENDS,
    *OIDC_BACKENDS,
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_CLIENT_IP_CALLABLE = "portal.client.client_ip"
AXES_USERNAME_CALLABLE = "portal.client.sign_in_name"
# A failed sign-in during which the directory could not be used checked no password: not counted
# (axes calls it a whitelist; it is asked again before each sign-in, when nothing is noted yet).
AXES_WHITELIST_CALLABLE = "portal.directory.unavailable.not_counted"

# Behind a TLS-terminating proxy in production. Its X-Forwarded-Proto is trusted only when
# said so: without such a proxy, any client could claim https.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO") else None
# Likewise its X-Forwarded-For, for the client's address that logins are throttled by.
TRUST_X_FORWARDED_FOR = env_bool("DJANGO_TRUST_X_FORWARDED_FOR")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT")
# Health checks and scrapes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD")
# When set, /metrics asks for "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = env_str("METRICS_TOKEN")
