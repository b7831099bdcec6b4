"""API tokens (django-rest-knox): named, hashed, expiring (ports.models.ApiToken, README "API tokens").

A token lives API_TOKEN_DAYS unless its maker asks for another lifetime, which may not exceed
API_TOKEN_MAX_DAYS: a key that leaks stops working on its own, however long nobody notices.
"""

import datetime

from django.core.exceptions import ImproperlyConfigured

from .env import env_int

API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90)
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 365)
# Ten years at most: a lifetime past the calendar's end would fail every token made.
if not 1 <= API_TOKEN_MAX_DAYS <= 3650:
    raise ImproperlyConfigured(f"API_TOKEN_MAX_DAYS ({API_TOKEN_MAX_DAYS}) must be 1 to 3650 (ten years).")
if not 1 <= API_TOKEN_DAYS <= API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured(
        f"API_TOKEN_DAYS ({API_TOKEN_DAYS}) must be at least 1 and at most API_TOKEN_MAX_DAYS ({API_TOKEN_MAX_DAYS})."
    )

# The portal's own token model (with a name and its last use); knox's own AuthToken table stays empty.
KNOX_TOKEN_MODEL = "ports.ApiToken"
REST_KNOX = {
    "TOKEN_MODEL": KNOX_TOKEN_MODEL,
    "TOKEN_TTL": datetime.timedelta(days=API_TOKEN_DAYS),
    # A token's expiry is the one its maker saw: using it does not move it.
    "AUTO_REFRESH": False,
    # `Authorization: Token <key>`, as DRF's tokens were sent: the README's and the clients' header.
    "AUTH_HEADER_PREFIX": "Token",
}
