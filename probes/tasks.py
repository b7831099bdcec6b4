"""The central workers' tasks: deliver alerts, and beat's schedule. The sites' own task is
probing.probe_site; what the sites report is written by the recorder (probes.recorder)."""

from __future__ import annotations

import datetime
import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ports.choices import ProbeSchedule
from ports.models import ChangeRequest, Deployment

from .alerts.delivery import deliver, retry_delays
from .alerts.raising import alert_silent_sites, warn_expiring
from .choices import DeliveryStatus, RunStatus
from .models import AlertDelivery, ProbeBatch, ProbeRun
from .webhooks import DeliveryError

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    # A try resolves a name, connects and waits for the answer, each step within its timeout; a
    # resolver that hangs or a receiver that trickles its answer is stopped here (soft, then hard),
    # so that a try holds an alerts worker for seconds, not the central tasks' minutes.
    soft_time_limit=2 * max(settings.ALERT_WEBHOOK_TIMEOUT, settings.EMAIL_TIMEOUT),
    time_limit=2 * max(settings.ALERT_WEBHOOK_TIMEOUT, settings.EMAIL_TIMEOUT) + 5,
)
def deliver_alert(self, delivery_id: int) -> None:
    """Send one alert to one channel, on the alerts' own queue (CELERY_TASK_ROUTES); on failure try
    again after each of retry_delays() (ALERT_RETRY_BASE seconds, doubled each time,
    ALERT_MAX_RETRIES times), then mark it failed, saying what went wrong in words."""
    delivery = AlertDelivery.objects.select_related("alert__team", "channel").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return
    try:
        deliver(delivery)
    except DeliveryError as exc:
        error, final = str(exc), exc.final
    except SoftTimeLimitExceeded:
        error, final = f"timed out after {self.soft_time_limit:g} s", False
    except Exception as exc:  # unforeseen: the log has the traceback, the page a sentence
        log.exception("alert delivery %s failed", delivery_id)
        error, final = f"the delivery failed unexpectedly ({type(exc).__name__}; see the alerts worker's log)", False
    else:
        AlertDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), attempts=F("attempts") + 1, next_attempt_at=None
        )
        return
    delays = retry_delays()
    final = final or self.request.retries >= len(delays)
    # The page says when the next try is: the countdown the retry below is given, from now.
    next_attempt_at = None if final else timezone.now() + datetime.timedelta(seconds=delays[self.request.retries])
    delivery.fail(error, final=final, next_attempt_at=next_attempt_at)
    if not final:
        # max_retries said here: the task's own default (Celery's 3) would end the schedule early
        # and leave the delivery pending for ever.
        raise self.retry(countdown=delays[self.request.retries], max_retries=len(delays))


@shared_task
def check_silent_sites() -> int:
    """Beat, every minute: alerts for probe sites without a live worker (alerts.alert_silent_sites)."""
    return alert_silent_sites()


@shared_task
def purge_old_results() -> int:
    """Delete the raw results older than PROBE_RESULT_RETENTION_DAYS (beat, hourly): the items'
    current state and their state changes stay. Returns how many batches went."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.PROBE_RESULT_RETENTION_DAYS)
    deleted, _ = ProbeBatch.objects.filter(received__lt=cutoff).delete()
    return deleted


@shared_task
def expire_overdue_runs() -> int:
    """Close runs past their deadline (beat, every 15 s): their pending items were not probed."""
    overdue = ProbeRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING], deadline__lte=timezone.now())
    for run in overdue:
        run.expire_if_overdue()
    return len(overdue)


@shared_task
def start_due_runs() -> int:
    """Continuous verification, run by beat: start the probe run of every deployment whose
    schedule has come. Each is claimed with a conditional update first (Deployment.claim_probe),
    so that two beats never start the same run twice. Returns how many runs were started."""
    now = timezone.now()
    # Schedules turned on since (a team's default): their clock starts now.
    # Only those whose schedule in force is on: the others (most, at scale) are not read every tick.
    on = [ProbeSchedule.HOURLY, ProbeSchedule.DAILY, ProbeSchedule.CRON]
    waiting = Deployment.objects.filter(next_probe_at__isnull=True).select_related("team")
    for deployment in waiting.filter(Q(probe_schedule__in=on) | Q(probe_schedule="", team__probe_schedule__in=on)):
        if (due := deployment.next_probe(now)) is not None:
            Deployment.objects.filter(pk=deployment.pk, next_probe_at__isnull=True).update(next_probe_at=due)
    started = 0
    for deployment in (
        Deployment.objects.filter(next_probe_at__lte=now).select_related("team").order_by("next_probe_at")
    ):
        if not deployment.claim_probe(now):
            continue  # another beat took it
        items = list(deployment.checklist.only(*ProbeRun.ITEM_FIELDS))
        if not items:
            continue
        try:
            ProbeRun.start(deployment, None, items, limited=False)
        except Exception:  # one deployment's failure must not stop the others' runs
            log.exception("scheduled probe run of deployment %s could not start", deployment.pk)
            continue
        started += 1
    return started


@shared_task
def warn_expiring_requests() -> int:
    """For each change request whose temporary rules expire within REQUEST_EXPIRY_WARNING_DAYS:
    its rollback drafted and its team alerted, once (beat, hourly). Returns how many."""
    by = timezone.localdate() + datetime.timedelta(days=settings.REQUEST_EXPIRY_WARNING_DAYS)
    warned = 0
    for request in ChangeRequest.objects.expiring(by).select_related("deployment__team"):
        with transaction.atomic():
            rollback = request.draft_rollback()
            if rollback is not None:
                warn_expiring(request, rollback)
                warned += 1
    return warned
