"""The platform's spending rules, set by platform admins (Django admin): one row."""

from __future__ import annotations

from django.db import models


class ProjectCreation(models.TextChoices):
    EVERYONE = "everyone", "Every signed-in user"
    STAFF = "staff", "Platform staff only"


class PlatformPolicy(models.Model):
    """Limits that bound what each team may spend. Defaults fit one 24 GiB GPU."""

    who_may_create_projects = models.CharField(
        max_length=16, choices=ProjectCreation.choices, default=ProjectCreation.EVERYONE
    )
    project_concurrency_ceiling = models.PositiveIntegerField(
        default=4,
        help_text="Most jobs one project may run at once; project admins may set less, not more.",
    )
    user_active_jobs = models.PositiveIntegerField(
        default=20, help_text="Most jobs one user may have queued or running, in all projects."
    )
    project_active_jobs = models.PositiveIntegerField(
        default=50, help_text="Most jobs one project may have queued or running."
    )
    image_max_side = models.PositiveIntegerField(
        default=2048, help_text="Largest final image side in pixels (after hi-res fix)."
    )
    image_max_pixel_steps = models.BigIntegerField(
        default=8 * 1024 * 1024 * 50,
        help_text="Most pixels x denoising steps x images one image job may ask for "
        "(default: 8 images of 1024x1024 at 50 steps).",
    )
    finetune_max_step_tokens = models.BigIntegerField(
        default=50_000 * 2048,
        help_text="Most optimizer steps x sequence length one fine-tune may ask for "
        "(default: 50,000 steps at 2,048 tokens).",
    )
    diagnostics_max_matrix = models.PositiveIntegerField(
        default=4096, help_text="Largest matrix side of a diagnostics job."
    )
    default_monthly_gpu_hours = models.FloatField(
        null=True,
        blank=True,
        help_text="GPU hours each project may use per calendar month (UTC) unless its own quota "
        "says otherwise; empty: unlimited.",
    )
    max_worker_losses = models.PositiveIntegerField(
        default=2,
        help_text="A job whose running killed this many workers (out of memory, a crash) fails "
        "instead of being retried.",
    )

    class Meta:
        verbose_name = "platform policy"
        verbose_name_plural = "platform policy"

    def __str__(self) -> str:
        return "Platform policy"

    @classmethod
    def current(cls) -> PlatformPolicy:
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy


class ProjectQuota(models.Model):
    """A project's own monthly GPU-hour quota (overrides the platform default)."""

    project = models.OneToOneField(
        "projects.Project", on_delete=models.CASCADE, related_name="quota"
    )
    monthly_gpu_hours = models.FloatField(
        null=True, blank=True, help_text="Empty: the platform default."
    )

    def __str__(self) -> str:
        return f"Quota of {self.project}"
