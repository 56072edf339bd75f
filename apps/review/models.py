"""Reviewers' decisions on flagged outputs (dataset versions keep theirs on the version)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Decision(models.TextChoices):
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class ReviewDecision(models.Model):
    """The one decision on a flagged output: made once, by someone other than its author."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    output = models.OneToOneField(
        "outputs.Output", on_delete=models.CASCADE, related_name="decision"
    )
    decision = models.CharField(max_length=16, choices=Decision.choices)
    reason = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The flags the reviewer decided on: their categories and the rule-set version.
    categories = models.JSONField(default=list, blank=True)
    ruleset_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} output {self.output_id}"
