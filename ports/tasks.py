import datetime
import time
from collections.abc import Callable

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from .exports import ExportParams, RuleSet
from .exports.layout import render_pdf
from .exports.pdf import change_request
from .models import ChangeRequestJob, ObjectChange


@shared_task
def render_change_request(job_id: int) -> None:
    """Render a queued change request; claimed with a conditional update so it runs once."""
    if not ChangeRequestJob.objects.filter(pk=job_id, status=ChangeRequestJob.Status.QUEUED).update(
        status=ChangeRequestJob.Status.RUNNING, stage="collecting rules", progress=5
    ):
        return
    job = ChangeRequestJob.objects.select_related("deployment__team", "deployment__catalog_version__product").get(
        pk=job_id
    )
    user = get_user_model().objects.filter(pk=job.requested_by_id).first()
    try:
        # The parameters were validated when the job was made; read back from JSON the same way.
        stored = ExportParams(data=job.params, context={"deployment": job.deployment})
        stored.is_valid(raise_exception=True)
        params = stored.validated_data
        rule_set = RuleSet.build(job.deployment, params)
        job.advance(20, f"gathering {len(rule_set.flows)} rules", rule_count=len(rule_set.flows))
        content = change_request(rule_set, params, user)
        job.advance(40, "laying out the PDF")
        pdf = render_pdf(content, progress=progress_of(job, 40, 95, "laying out the PDF"))
        rule_set.remember("pdf", user)
        job.advance(
            100,
            "done",
            pdf=pdf,
            fingerprint=rule_set.fingerprint,
            status=ChangeRequestJob.Status.DONE,
            finished=timezone.now(),
        )
    except Exception as exc:  # the job row must say what went wrong
        job.advance(
            job.progress, "failed", status=ChangeRequestJob.Status.FAILED, error=str(exc), finished=timezone.now()
        )
        raise


def progress_of(job: ChangeRequestJob, start: int, end: int, stage: str, every: float = 1.0) -> Callable[[float], None]:
    """A callback that moves the job from `start` to `end` percent as a share of its work is done,
    written at most once every `every` seconds: ReportLab calls it a few times a page, and the
    page that polls the job asks once a second."""
    written = time.monotonic()

    def advance(share: float) -> None:
        nonlocal written
        now = time.monotonic()
        if now - written >= every:
            written = now
            job.advance(start + int((end - start) * share), stage)

    return advance


@shared_task
def purge_old_changes() -> int:
    """Delete the change log's entries older than CHANGE_LOG_RETENTION_DAYS (beat, daily)."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.CHANGE_LOG_RETENTION_DAYS)
    deleted, _ = ObjectChange.objects.filter(time__lt=cutoff).delete()
    return deleted
