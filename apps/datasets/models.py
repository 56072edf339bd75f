from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from apps.datasets.licenses import LICENSES


class Schema(models.TextChoices):
    QA = "qa", _("Question / answer")
    INSTRUCTION = "instruction", _("Instruction (Alpaca)")
    CHAT = "chat", _("Chat conversations")
    PREFERENCE = "preference", _("Preference pairs")
    IMAGE_CAPTION = "image_caption", _("Images with captions")


class Dataset(models.Model):
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    schema = models.CharField(max_length=16, choices=Schema.choices)
    license = models.CharField(max_length=64, choices=LICENSES)
    source = models.CharField(
        max_length=500, help_text="Where the data comes from (organisation, URL, agreement)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="dataset_name_unique_in_project"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("datasets:detail", args=[self.project_id, self.pk])

    @property
    def latest_version(self):
        return self.versions.order_by("-number").first()


class Approval(models.TextChoices):
    NOT_REQUIRED = "not_required", _("Not required")
    PENDING = "pending", _("Awaiting approval")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class Operation(models.TextChoices):
    IMPORT = "import", _("Import")
    REDACT = "redact", _("PII redaction")
    DEDUP = "dedup", _("Duplicate removal")
    FILTER = "filter", _("Filter")


class DatasetVersion(models.Model):
    """An immutable version, identified by the SHA-256 of its canonical JSONL content."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    operation = models.CharField(max_length=16, choices=Operation.choices, default=Operation.IMPORT)
    operation_params = models.JSONField(default=dict, blank=True)
    source_filename = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=32, blank=True)
    source_encoding = models.CharField(max_length=32, blank=True)
    mapping = models.JSONField(default=dict, blank=True)
    template = models.TextField(blank=True)
    rows = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    validation_fraction = models.FloatField(default=0.0)
    split_seed = models.IntegerField(default=0)
    split_counts = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    pii_report = models.JSONField(null=True, blank=True)
    pii_scanned_at = models.DateTimeField(null=True, blank=True)
    dedup_report = models.JSONField(null=True, blank=True)
    # What the project's moderation rules found in the rows when the version was made
    # (apps.moderation.services.scan_rows: rule-set version, flagged rows by category, first
    # examples); None: not scanned (versions made before the rules existed).
    moderation_report = models.JSONField(null=True, blank=True)
    approval = models.CharField(
        max_length=16, choices=Approval.choices, default=Approval.NOT_REQUIRED
    )
    approval_comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # Relative to MEDIA_ROOT: datasets/<project>/<sha256>/data.jsonl (+ images/).
    storage_path = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="version_number_unique"),
            models.UniqueConstraint(fields=["dataset", "sha256"], name="version_content_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    def get_absolute_url(self) -> str:
        return reverse(
            "datasets:version", args=[self.dataset.project_id, self.dataset_id, self.number]
        )

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]

    @property
    def usable_for_training(self) -> bool:
        return self.approval in (Approval.APPROVED, Approval.NOT_REQUIRED)
