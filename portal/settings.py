"""Settings, all from environment variables.

With nothing set the portal runs on an embedded default (SQLite and a filesystem
broker under ``var/``) so that ``make run`` needs nothing installed; setting
``DATABASE_URL`` and ``REDIS_URL`` switches to PostgreSQL and Redis.
"""

import datetime
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
if not DEBUG and len(SECRET_KEY) < 50:
    from django.core.exceptions import ImproperlyConfigured

    # Sessions, CSRF tokens and password resets are signed with it: a guessable key forges them.
    raise ImproperlyConfigured(
        "Set DJANGO_SECRET_KEY to at least 50 random characters, e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (or DJANGO_DEBUG=1 for development)."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "ports",
    "probes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Logins (pages, admin, the API's session login) are throttled: after AXES_FAILURE_LIMIT wrong
# passwords for a username from one address, that pair is locked out for AXES_COOLOFF_TIME.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = datetime.timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_CLIENT_IP_CALLABLE = "portal.client.client_ip"

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that stops answering fails a connection in seconds, not minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(connect_timeout=10, keepalives=1, keepalives_idle=30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Behind a TLS-terminating proxy in production. Its X-Forwarded-Proto is trusted only when
# said so: without such a proxy, any client could claim https.
if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Likewise its X-Forwarded-For, for the client's address that logins are throttled by.
TRUST_X_FORWARDED_FOR = env_bool("DJANGO_TRUST_X_FORWARDED_FOR")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT")
# Health checks and scrapes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# When set, /metrics asks for "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that an anonymous request is answered 401 with a
        # WWW-Authenticate header rather than 403.
        "rest_framework.authentication.TokenAuthentication",
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
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Port-requirement portal API",
    "DESCRIPTION": (
        "Firewall rules that a Forcepoint Email Security deployment needs: the vendor's port "
        "catalog, deployments, and the checklist derived from them."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # 3.1: a nullable reference is oneOf [the schema, null]; 3.0 has no way to say it that validators agree on.
    "OAS_VERSION": "3.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "InterfaceEnum": "ports.choices.Interface",
        "RoleEnum": "ports.choices.Role",
        "ItemStatusEnum": "ports.choices.ItemStatus",
        "ProbeStateEnum": "probes.choices.ProbeState",
        "RunStatusEnum": "probes.choices.RunStatus",
    },
}

# Celery: Redis in production; an embedded filesystem broker otherwise, so a real
# worker runs beside `make run` with nothing to install.
REDIS_URL = os.environ.get("REDIS_URL", "")
# A task not acknowledged this long after delivery (its worker died) is delivered again.
CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "300"))
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # Look for such tasks every few seconds (kombu's default sweep is every 100 s).
        "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
        "unacked_restore_throttle": 1,
        # Where this worker keeps the messages it holds. A site worker sets its own
        # (BROKER_UNACKED_KEY=unacked.<site>), so that its broker user needs no access to the
        # central one, which holds other sites' tasks (README, "Broker users per site").
        **{
            f"unacked{suffix}_key": os.environ.get("BROKER_UNACKED_KEY", "unacked") + suffix
            for suffix in ("", "_index", "_mutex")
        },
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge after the work, one message at a time, and put a task back when its worker
# is lost: a killed worker's probes are done again by the next one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Below the visibility timeout, so that a running task is never delivered twice.
CELERY_TASK_TIME_LIMIT = int(CELERY_VISIBILITY_TIMEOUT * 0.8)
CELERY_TASK_SOFT_TIME_LIMIT = int(CELERY_VISIBILITY_TIMEOUT * 0.7)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Remote control (inspect, ping) uses broker pub/sub, which a site's broker user is not given:
# site workers run with WORKER_REMOTE_CONTROL=0 (README, "Broker users per site").
CELERY_WORKER_ENABLE_REMOTE_CONTROL = os.environ.get("WORKER_REMOTE_CONTROL", "1") != "0"
# How often beat looks for deployments whose probe schedule has come (seconds).
PROBE_SCHEDULE_TICK = float(os.environ.get("PROBE_SCHEDULE_TICK", "60"))
CELERY_BEAT_SCHEDULE = {
    "expire-overdue-probe-runs": {"task": "probes.tasks.expire_overdue_runs", "schedule": 15.0},
    "start-due-probe-runs": {"task": "probes.tasks.start_due_runs", "schedule": PROBE_SCHEDULE_TICK},
    "purge-old-probe-results": {"task": "probes.tasks.purge_old_results", "schedule": 3600.0},
    "check-silent-probe-sites": {"task": "probes.tasks.check_silent_sites", "schedule": 60.0},
}

# A change request of more rules than this is rendered by a worker (POST .../change-requests/):
# 2,000 rules take about 5 s here (bench/export_pdf.py: 2-2.6 ms per rule).
EXPORT_SYNC_RULES = int(os.environ.get("EXPORT_SYNC_RULES", "2000"))
# DejaVu Sans (regular, bold, mono) for the PDF: Debian's fonts-dejavu-core.
PDF_FONT_DIR = os.environ.get("PDF_FONT_DIR", "/usr/share/fonts/truetype/dejavu")

# Rendered checklists (JSON, CSV), kept per process under the deployment's checklist
# revision: a change makes a new key, so nothing stale is served. About 1.5 MB each at
# 2,500 rules; the least recently used go first.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "checklists": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "checklists",
        "OPTIONS": {"MAX_ENTRIES": int(os.environ.get("CHECKLIST_CACHE_ENTRIES", "32"))},
    },
}

# Probes
PROBE_TIMEOUT = float(os.environ.get("PROBE_TIMEOUT", "3"))
PROBE_CONCURRENCY = int(os.environ.get("PROBE_CONCURRENCY", "1000"))
PROBE_PER_DESTINATION = int(os.environ.get("PROBE_PER_DESTINATION", "64"))
PROBE_HEARTBEAT_INTERVAL = float(os.environ.get("PROBE_HEARTBEAT_INTERVAL", "10"))
PROBE_HEARTBEAT_TIMEOUT = float(os.environ.get("PROBE_HEARTBEAT_TIMEOUT", "30"))
# Touched at each heartbeat sent: a site worker's container health check reads its age.
PROBE_HEARTBEAT_FILE = os.environ.get("PROBE_HEARTBEAT_FILE", "/tmp/portal-heartbeat")
# How long a run waits for its sites' workers beyond the probing itself.
PROBE_QUEUE_GRACE = float(os.environ.get("PROBE_QUEUE_GRACE", "120"))
PROBE_RUNS_PER_MINUTE = int(os.environ.get("PROBE_RUNS_PER_MINUTE", "10"))
# How long each run's raw results are kept; the items' current state and state changes stay.
PROBE_RESULT_RETENTION_DAYS = float(os.environ.get("PROBE_RESULT_RETENTION_DAYS", "30"))
# Alerts (README, "Alerts"): a rule that broke, an interception, a silent site, a failed run.
# A rule that keeps changing state alerts at most once per window (seconds).
ALERT_FLAP_WINDOW = float(os.environ.get("ALERT_FLAP_WINDOW", "3600"))
ALERT_SITE_SILENT_AFTER = float(os.environ.get("ALERT_SITE_SILENT_AFTER", "300"))
# A failed delivery is tried again after 30 s, 60 s, 120 s, ... (ALERT_MAX_RETRIES times).
ALERT_RETRY_BASE = float(os.environ.get("ALERT_RETRY_BASE", "30"))
ALERT_MAX_RETRIES = int(os.environ.get("ALERT_MAX_RETRIES", "5"))
ALERT_WEBHOOK_TIMEOUT = float(os.environ.get("ALERT_WEBHOOK_TIMEOUT", "10"))
# Where webhooks may go: the networks of your chat and ticket systems' receivers.
ALERT_WEBHOOK_ALLOWED_NETWORKS = [
    network.strip()
    for network in os.environ.get("ALERT_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128").split(",")
    if network.strip()
]
ALERT_FROM_EMAIL = os.environ.get("ALERT_FROM_EMAIL", "portal@localhost")
# Django's SMTP backend: the mail relay alerts go through.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "0") == "1"
EMAIL_TIMEOUT = 10

# Limits on what one request may ask for; each answered with a 4xx that names it.
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(2 * 1024 * 1024)))
MAX_APPLIANCES = int(os.environ.get("MAX_APPLIANCES", "200"))
MAX_HOSTS = int(os.environ.get("MAX_HOSTS", "500"))
MAX_RULES = int(os.environ.get("MAX_RULES", "20000"))
MAX_PROBE_ITEMS = int(os.environ.get("MAX_PROBE_ITEMS", "20000"))


# The networks each probe site's workers may connect to, checked by the worker for every
# address (after resolving names): "site=cidr,cidr;other=cidr", "*" for any site without its
# own entry. Loopback only unless the operator opens more: the portal is no port scanner.
def parse_allowed_networks(text: str) -> dict[str, list[str]]:
    """ "site=cidr,cidr;other=cidr" as {site: [cidr]}; a mistake stops the process, saying which."""
    import ipaddress

    from django.core.exceptions import ImproperlyConfigured

    allowed: dict[str, list[str]] = {}
    for entry in filter(str.strip, text.split(";")):
        site, equals, networks = entry.partition("=")
        if not equals or not site.strip():
            raise ImproperlyConfigured(f"PROBE_ALLOWED_NETWORKS: {entry.strip()!r} is not site=networks.")
        try:
            cidrs = [str(ipaddress.ip_network(n.strip(), strict=True)) for n in networks.split(",") if n.strip()]
        except ValueError as exc:
            raise ImproperlyConfigured(f"PROBE_ALLOWED_NETWORKS: {entry.strip()!r}: {exc}.") from exc
        allowed[site.strip()] = cidrs
    return allowed


PROBE_ALLOWED_NETWORKS = parse_allowed_networks(os.environ.get("PROBE_ALLOWED_NETWORKS", "*=127.0.0.0/8,::1/128"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
