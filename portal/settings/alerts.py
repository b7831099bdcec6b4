"""Alerts (README, "Alerts"): a rule that broke, an interception, a silent site, a failed run."""

from .env import env_float, env_int, env_list, env_str

# A rule that keeps changing state alerts at most once per window (seconds).
ALERT_FLAP_WINDOW = env_float("ALERT_FLAP_WINDOW", 3600)
ALERT_SITE_SILENT_AFTER = env_float("ALERT_SITE_SILENT_AFTER", 300)
# How many days before a change request's temporary rules expire its team hears of it, and a
# rollback request is drafted (probes.tasks.warn_expiring_requests, daily).
REQUEST_EXPIRY_WARNING_DAYS = env_int("REQUEST_EXPIRY_WARNING_DAYS", 7)
# A failed delivery is tried again after 30 s, 60 s, 120 s, ... (ALERT_MAX_RETRIES times).
ALERT_RETRY_BASE = env_float("ALERT_RETRY_BASE", 30)
ALERT_MAX_RETRIES = env_int("ALERT_MAX_RETRIES", 5)
# Each step of a webhook's POST (connect, TLS, the answer) gets this long: a receiver slower than
# that fails this try and is tried again later, rather than holding an alerts worker.
ALERT_WEBHOOK_TIMEOUT = env_float("ALERT_WEBHOOK_TIMEOUT", 5)
# Where webhooks may go: the networks of your chat and ticket systems' receivers.
ALERT_WEBHOOK_ALLOWED_NETWORKS = env_list("ALERT_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
ALERT_FROM_EMAIL = env_str("ALERT_FROM_EMAIL", "portal@localhost")

# Django's SMTP backend: the mail relay alerts go through.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_str("EMAIL_USE_TLS", "0") == "1"
EMAIL_TIMEOUT = 10
