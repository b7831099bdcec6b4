"""What was handed out: rule sets exported, change request PDFs rendered by a worker."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..broker import BrokerUnavailable, send
from .deployments import Deployment
from .teams import DeploymentPartQuerySet


class ChecklistExport(models.Model):
    """A rule set handed out (change request, firewall syntax), kept by its fingerprint so
    that a later export can say what changed since."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="exports")
    fingerprint = models.CharField(max_length=64)
    kind = models.CharField(max_length=20)
    rules = models.JSONField(help_text="The rules' identities: [{requirement, source, destination, protocol, ...}].")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "-created"]
        # One row per rule set: exporting it again (or polling the checklist) adds nothing.
        constraints = [
            models.UniqueConstraint(fields=["deployment", "fingerprint"], name="checklistexport_unique_fingerprint")
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.deployment} ({self.fingerprint[:12]})"


class ChangeRequestJob(models.Model):
    """A change request rendered by a worker (large checklists), then downloaded."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="change_request_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    params = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent.")
    stage = models.CharField(max_length=100, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    rule_count = models.PositiveIntegerField(null=True)
    pdf = models.BinaryField(null=True, editable=False)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True)

    objects = DeploymentPartQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Change request job {self.pk} of {self.deployment}"

    def advance(self, progress: int, stage: str, **fields: object) -> None:
        ChangeRequestJob.objects.filter(pk=self.pk).update(progress=progress, stage=stage, **fields)

    def send(self) -> None:
        """Hand the job to a worker; if the broker cannot take it, fail the job saying so (and in `unsent`)."""
        self.unsent = ""
        try:
            send("ports.tasks.render_change_request", (self.pk,), task_id=f"change-request-{self.pk}")
        except BrokerUnavailable as unavailable:
            self.unsent = f"not sent to a worker: {unavailable}"
            self.advance(0, "failed", status=self.Status.FAILED, error=self.unsent, finished=timezone.now())
