"""The REST API, its OpenAPI schema, and the limits on what one request may ask for."""

from .env import env_bool, env_int, env_rate, env_str
from .security import TRUST_X_FORWARDED_FOR

API_SCHEMA_PUBLIC = env_bool("API_SCHEMA_PUBLIC")

# Rate limits of the whole API (/api/), counted over a sliding window in the cache "throttle"
# (Redis, shared by every web process): per user for requests with a token or a session (a user's
# token and browser share one count), per client address for anonymous ones. Over it: 429 with
# Retry-After. "0" (or empty) turns one off.
# 1200/min is 20 requests a second for a whole minute, or 1,200 at once: a provisioning tool
# looping over a fleet stays well below it, e.g. Ansible's uri (at its default 5 forks each task
# starts a module, a few requests a second in all) or a script calling upsert, checklist and an
# export per deployment (each answer takes tens of milliseconds to seconds); what trips it is
# a loop gone wrong, which would otherwise hold the web workers (3 per container) from everyone.
# Many rules change status in one request (checklist/status/), not one request per rule.
API_RATE_USER = env_rate("API_RATE_USER", "1200/min")
# Anonymous requests reach only what needs no login: the schema and its documentation when
# API_SCHEMA_PUBLIC=1 (the rest answers 401 before any count). A browser reading the
# documentation makes 2; a generator fetches the schema once.
API_RATE_ANON = env_rate("API_RATE_ANON", "60/min")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that an anonymous request is answered 401 with a
        # WWW-Authenticate header rather than 403. Hashed, expiring tokens (README "API tokens").
        "portal.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The API takes JSON: one request type per operation, which client generators handle.
    "DEFAULT_PARSER_CLASSES": ["portal.parsers.BoundedJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "portal.pagination.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.errors.api_exception_handler",
    # Their rates are API_RATE_USER and API_RATE_ANON, which they read at each request (DRF's own
    # throttles copy DEFAULT_THROTTLE_RATES once, at import).
    "DEFAULT_THROTTLE_CLASSES": ["portal.api.throttling.UserRateThrottle", "portal.api.throttling.AnonRateThrottle"],
    # The client behind the TLS proxy is the address it appends to X-Forwarded-For, as for logins
    # (portal.client.client_ip, which the portal's throttles call); without the proxy, the connection's.
    "NUM_PROXIES": 1 if TRUST_X_FORWARDED_FOR else 0,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Port-requirement portal API",
    "DESCRIPTION": (
        "Firewall rules that a Forcepoint Email Security deployment needs: the vendor's port "
        "catalog, deployments, and the checklist derived from them."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its documentation map the whole API: for signed-in users and tokens, unless
    # API_SCHEMA_PUBLIC=1 opens them.
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.AllowAny" if API_SCHEMA_PUBLIC else "rest_framework.permissions.IsAuthenticated"
    ],
    # 3.1: a nullable reference is oneOf [the schema, null]; 3.0 has no way to say it that validators agree on.
    "OAS_VERSION": "3.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The enums' hook first: it rebuilds the components, which the next adds to.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "portal.api.schema.declare_errors"],
    "ENUM_NAME_OVERRIDES": {
        "InterfaceEnum": "ports.choices.Interface",
        "RoleEnum": "ports.choices.Role",
        "ItemStatusEnum": "ports.choices.ItemStatus",
        "ProbeStateEnum": "probes.choices.ProbeState",
        "RunStatusEnum": "probes.choices.RunStatus",
        "SourceEnum": "probes.choices.PinSource",  # the TLS pin's, named so before the change log's
        "ChangeSourceEnum": "ports.choices.ChangeSource",
        "ChangeActionEnum": "ports.choices.ChangeAction",
        "ChangedObjectEnum": "ports.choices.ChangedObject",
        # The names the alerts' enums had before channels chose their kinds of alert.
        "AlertKindEnum": "probes.choices.AlertKind",
        "AlertChannelKindEnum": "probes.choices.ChannelKind",
        "RequestStateEnum": "ports.choices.RequestState",
        "RequestActionEnum": "ports.choices.RequestAction",
    },
}

# Limits on what one request may ask for; each answered with a 4xx that names it.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 2 * 1024 * 1024)
MAX_APPLIANCES = env_int("MAX_APPLIANCES", 200)
MAX_HOSTS = env_int("MAX_HOSTS", 500)
MAX_RULES = env_int("MAX_RULES", 20000)
MAX_PROBE_ITEMS = env_int("MAX_PROBE_ITEMS", 20000)

# A change request of more rules than this is rendered by a worker (POST .../change-requests/):
# 2,000 rules take about 5 s here (bench/export_pdf.py: 2-2.6 ms per rule).
EXPORT_SYNC_RULES = env_int("EXPORT_SYNC_RULES", 2000)
# DejaVu Sans (regular, bold, mono) for the PDF: Debian's fonts-dejavu-core.
PDF_FONT_DIR = env_str("PDF_FONT_DIR", "/usr/share/fonts/truetype/dejavu")
