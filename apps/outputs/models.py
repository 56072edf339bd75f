from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Moderation(models.TextChoices):
    CLEAN = "clean", _("Clean")
    FLAGGED = "flagged", _("Flagged")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class Output(models.Model):
    """Something a model produced (text now, images later): with every parameter needed to redo it."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="outputs"
    )
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="outputs"
    )
    kind = models.CharField(max_length=16, choices=[("text", "Text"), ("image", "Image")])
    text = models.TextField(blank=True)
    prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    base_model = models.ForeignKey(
        "basemodels.BaseModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    adapter = models.ForeignKey(
        "basemodels.Adapter",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outputs",
    )
    sha256 = models.CharField(max_length=64, db_index=True)
    # Images: PNG (with A1111 `parameters` infotext and an AI disclosure) and a thumbnail, relative
    # to MEDIA_ROOT.
    file_path = models.CharField(max_length=500, blank=True)
    thumb_path = models.CharField(max_length=500, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    negative_prompt = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    moderation = models.CharField(
        max_length=16, choices=Moderation.choices, default=Moderation.CLEAN, db_index=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} output {self.pk}"


class Collection(models.Model):
    """A board of outputs that a project's members curate."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="collections"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    outputs = models.ManyToManyField(Output, related_name="collections", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="collection_name_unique")
        ]

    def __str__(self) -> str:
        return self.name
