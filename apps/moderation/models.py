"""Rule sets (versioned, per project) and the flags they raise on outputs and dataset versions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class RuleSetVersion(models.Model):
    """One immutable version of a project's moderation rules. Editing the rules writes the next
    version; flags record the version that raised them, so a decision can be read against the
    rules as they were."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="ruleset_versions"
    )
    number = models.PositiveIntegerField()
    # [{"id", "kind", "pattern", "category", "severity", "case_sensitive", "note"}, ...]
    rules = models.JSONField(default=list)
    comment = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="ruleset_version_unique")
        ]

    def __str__(self) -> str:
        return f"rules v{self.number} of project {self.project_id}"


class Door(models.TextChoices):
    OUTPUT = "output", _("Generated output")
    UPLOAD = "upload", _("Gallery upload")
    CLASSIFIER = "classifier", _("Classifier")
    IMPORT = "import", _("Dataset import")


class Flag(models.Model):
    """What a check found on one output or dataset version: the rules' version, the categories,
    the severity and the matched spans per field ({"field", "rule_id", "category", "severity",
    "start", "end", "text"})."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    output = models.ForeignKey(
        "outputs.Output", null=True, blank=True, on_delete=models.CASCADE, related_name="flags"
    )
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="flags",
    )
    door = models.CharField(max_length=16, choices=Door.choices)
    ruleset_version = models.PositiveIntegerField(null=True, blank=True)
    severity = models.CharField(max_length=8)
    categories = models.JSONField(default=list)
    hits = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return f"flag {self.pk} ({', '.join(self.categories)})"
