"""Django itself: paths, the secret key, applications, templates, the database, static files, caches."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
if not DEBUG and len(SECRET_KEY) < 50:
    # Sessions, CSRF tokens and password resets are signed with it: a guessable key forges them.
    raise ImproperlyConfigured(
        "Set DJANGO_SECRET_KEY to at least 50 random characters, e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (or DJANGO_DEBUG=1 for development)."
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "knox",
    "mozilla_django_oidc",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "ports",
    "probes",
    "portal",
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
    "portal.middleware.ActingMiddleware",
]

# How long the change log keeps its entries (ports.tasks.purge_old_changes, daily).
CHANGE_LOG_RETENTION_DAYS = env_int("CHANGE_LOG_RETENTION_DAYS", 365)

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

# SQLite under var/ unless DATABASE_URL is set. No database variable is required: a probe site's
# worker runs without DATABASE_URL (it has no access to the portal's database) and still loads these settings.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that stops answering fails a connection in seconds, not minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(connect_timeout=10, keepalives=1, keepalives_idle=30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Redis in production (the broker, the API's rate limits); unset, `make run` needs none.
REDIS_URL = env_str("REDIS_URL")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)

# Rendered rows of checklists (ports.rows), kept per process beside the whole renderings: a read
# right after a change renders again the rows it changed. About 1 KB a row (JSON), 2.5 KB (page).
CHECKLIST_ROWS = env_int("CHECKLIST_ROWS", 20_000)

# Rendered checklists (JSON, CSV), kept per process under the deployment's checklist
# revision: a change makes a new key, so nothing stale is served. About 1.5 MB each at
# 2,500 rules; the least recently used go first.
# "throttle": the API's recent requests per user and per client address (API_RATE_USER,
# API_RATE_ANON), which every web process must count together: in Redis when REDIS_URL is set,
# else in the process (`make run` serves from one).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "checklists": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "checklists",
        "OPTIONS": {"MAX_ENTRIES": env_int("CHECKLIST_CACHE_ENTRIES", 32)},
    },
    # Each checklist's counts (ports.models.ChecklistCounts), small and one per deployment: a team's
    # list of hundreds of deployments reads them all at once, more than the renderings' cache keeps.
    "counts": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "counts",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    },
    "throttle": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portal",
            # A Redis that stops answering delays a request by seconds, not minutes (and lets it through).
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
        if REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "throttle",
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    ),
}
