"""Celery: the broker, how tasks are acknowledged, and beat's schedule."""

from .base import REDIS_URL, VAR_DIR
from .env import env_float, env_int, env_str

# A task not acknowledged this long after delivery (its worker died) is delivered again.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 300)
# Redis in production; an embedded filesystem broker otherwise, so a real
# worker runs beside `make run` with nothing to install.
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Where this worker keeps the messages it holds. A site worker sets its own
    # (BROKER_UNACKED_KEY=unacked.<site>), so that its broker user needs no access to the
    # central one, which holds other sites' tasks (README, "Broker users per site").
    _unacked = env_str("BROKER_UNACKED_KEY", "unacked")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # Look for such tasks every few seconds (kombu's default sweep is every 100 s).
        "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
        "unacked_restore_throttle": 1,
        "unacked_key": _unacked,
        "unacked_index_key": f"{_unacked}_index",
        "unacked_mutex_key": f"{_unacked}_mutex",
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
# Alert deliveries wait on other people's servers: they have a queue and workers of their own
# (docker-compose.yml's `alerts`), so that a receiver that hangs holds none of the central
# worker's slots (exports, probes of the central site, beat's work). Their time limits are the
# task's own (probes.tasks.deliver_alert), seconds rather than the minutes above.
ALERTS_QUEUE = "portal.alerts"
CELERY_TASK_ROUTES = {"probes.tasks.deliver_alert": {"queue": ALERTS_QUEUE}}
# Remote control (inspect, ping) uses broker pub/sub, which a site's broker user is not given:
# site workers run with WORKER_REMOTE_CONTROL=0 (README, "Broker users per site").
CELERY_WORKER_ENABLE_REMOTE_CONTROL = env_str("WORKER_REMOTE_CONTROL", "1") != "0"

# How often beat looks for deployments whose probe schedule has come (seconds).
PROBE_SCHEDULE_TICK = env_float("PROBE_SCHEDULE_TICK", 60)
CELERY_BEAT_SCHEDULE = {
    "expire-overdue-probe-runs": {"task": "probes.tasks.expire_overdue_runs", "schedule": 15.0},
    "start-due-probe-runs": {"task": "probes.tasks.start_due_runs", "schedule": PROBE_SCHEDULE_TICK},
    "purge-old-probe-results": {"task": "probes.tasks.purge_old_results", "schedule": 3600.0},
    "check-silent-probe-sites": {"task": "probes.tasks.check_silent_sites", "schedule": 60.0},
    "purge-old-changes": {"task": "ports.tasks.purge_old_changes", "schedule": 86400.0},
    "warn-expiring-requests": {"task": "probes.tasks.warn_expiring_requests", "schedule": 3600.0},
}
