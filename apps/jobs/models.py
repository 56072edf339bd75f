from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.urls import reverse

from apps.jobs.states import TERMINAL, JobState


class Queue(models.TextChoices):
    GPU = "gpu", "GPU"
    CPU = "cpu", "CPU"
    CHAIN = "chain", "Chain signer"


class Job(models.Model):
    """A unit of long work. The row is the truth; Celery messages only point at it."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=64, db_index=True)
    queue = models.CharField(max_length=16, choices=Queue.choices)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True
    )
    # Fencing token: incremented by every claim. A worker whose attempt is no longer the row's
    # attempt has lost the job and may not write anything for it.
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    # When the Celery message was last sent (None: never, or a re-send is due now).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Usage accounting (apps/quotas): seconds workers spent on this job over all its attempts,
    # and the device of the latest attempt. attempt_started_at: when the running attempt began.
    worker_seconds = models.FloatField(default=0.0)
    device = models.CharField(max_length=200, blank=True)
    attempt_started_at = models.DateTimeField(null=True, blank=True)
    # Workers that died (lease lost, process gone) while running this job: a job that kills
    # its workers (out of memory) fails after PlatformPolicy.max_worker_losses of them.
    worker_losses = models.PositiveIntegerField(default=0)
    # The owner's line (apps/jobs/services.py job_queue_move, job_claim_turn): the job's place
    # among its owner's queued jobs of the same project and queue, in the same units as `id`
    # (None: its id, i.e. submission order). Set only when the owner reorders the line.
    queue_rank = models.BigIntegerField(null=True, blank=True)
    # Claimed on another job's message (its owner had moved it ahead): its own message, when it
    # arrives, is a turn for the owner's next queued job instead of a duplicate.
    ran_ahead = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "state"]),
            models.Index(fields=["state", "queue"]),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.kind}, {self.state})"

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", args=[self.project_id, self.pk])

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def kind_label(self) -> str:
        """The kind's label in the active language (labels are msgids of the catalogue)."""
        from django.utils.translation import gettext

        from apps.jobs import registry

        kind = registry.find(self.kind)
        return gettext(kind.label) if kind else self.kind


def line_order() -> tuple:
    """The order of an owner's queued jobs of one project and queue (their line): the place they
    were moved to, or their submission order; ties by age."""
    return (
        Coalesce("queue_rank", "id", output_field=models.BigIntegerField()).asc(),
        "created_at",
        "id",
    )


class EventKind(models.TextChoices):
    STATE = "state"
    PROGRESS = "progress"
    METRICS = "metrics"
    LOG = "log"
    PREVIEW = "preview"
    ARTIFACT = "artifact"
    TEXT = "text"  # streamed generation: {"index": n, "delta": "..."}


class JobEvent(models.Model):
    """Append-only log of what happened in a job, numbered 1, 2, 3… per job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    data = models.JSONField(default=dict)
    attempt = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="one_event_per_seq")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq} {self.kind}"

    def as_message(self) -> dict:
        return {
            "type": "event",
            "seq": self.seq,
            "kind": self.kind,
            "data": self.data,
            "ts": self.created_at.isoformat() if self.created_at else None,
        }
