"""Webhooks, their deliveries (the outbox) and each delivery's attempts (the log on the page)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class EventType(models.TextChoices):
    """What a webhook may ask for (the `type` of the body)."""

    JOB_SUCCEEDED = "job.succeeded", _("Job succeeded")
    JOB_FAILED = "job.failed", _("Job failed")
    JOB_CANCELLED = "job.cancelled", _("Job cancelled")
    OUTPUT_FLAGGED = "output.flagged", _("Output flagged")
    OUTPUT_APPROVED = "output.approved", _("Output approved")
    OUTPUT_REJECTED = "output.rejected", _("Output rejected")
    PROVENANCE_CONFIRMED = "provenance.confirmed", _("Provenance confirmed")


# The "Send test" button's event: sent to the one webhook whatever events it asked for.
PING = "ping"


class Webhook(models.Model):
    """A receiver URL of one project, the events it wants and the secret its bodies are signed
    with."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="webhooks"
    )
    # http(s) only, checked by apps/webhooks/transport.check_url (a URLField's validator would
    # refuse single-label hosts such as a compose service name).
    url = models.CharField(max_length=2000)
    events = models.JSONField(default=list, help_text="EventType values this receiver wants")
    active = models.BooleanField(default=True)
    # Kept as it is (not hashed): every delivery is signed with it, and admins see it on the page.
    secret = models.CharField(max_length=100)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "active"])]

    def __str__(self) -> str:
        return f"webhook {self.pk} → {self.url}"

    def wants(self, event_type: str) -> bool:
        return event_type in (self.events or [])


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class WebhookDelivery(models.Model):
    """One event for one webhook: written with the change that caused it, then POSTed (and
    retried) until a 2xx or the last attempt. `payload` is the body as it is sent, every time."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due (None once delivered or failed).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a Celery message was last sent for it (None: never, or a re-send is due); the sweep
    # sends again only what has waited a while, so a busy queue is not flooded.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # Held by the worker POSTing it now; a worker killed mid-request lets it go when this passes.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    redelivery_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="redeliveries"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["project", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"delivery {self.uuid} ({self.type}, {self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what the receiver answered (or why nothing was sent)."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0.0)
    status_code = models.IntegerField(null=True, blank=True)
    response_body = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    ok = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"
