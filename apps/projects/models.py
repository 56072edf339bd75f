from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    ADMIN = "admin", _("Admin")
    MEMBER = "member", _("Member")
    REVIEWER = "reviewer", _("Reviewer")
    VIEWER = "viewer", _("Viewer")


class Project(models.Model):
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # None: the platform default (ATELIER_PROJECT_MAX_CONCURRENT_JOBS).
    max_concurrent_jobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Jobs of this project that may run at once; more wait queued.",
    )
    require_dataset_approval = models.BooleanField(
        default=True,
        help_text="A reviewer or admin must approve a dataset version before any fine-tune uses it.",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("projects:dashboard", args=[self.pk])

    @property
    def concurrency_limit(self) -> int:
        """The project's own limit (or the default), never above the platform's ceiling."""
        from apps.quotas.services import concurrency_ceiling

        own = self.max_concurrent_jobs or settings.ATELIER["PROJECT_MAX_CONCURRENT_JOBS"]
        return min(own, concurrency_ceiling())


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"
