"""Budgets and quotas, checked before a job row is created (refusals name the limit and the usage).

Called by `apps.jobs.services.job_create` (caps, budgets, monthly GPU hours) and by project
creation and settings (who may create projects, the concurrency ceiling).
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext

from apps.quotas.models import PlatformPolicy, ProjectCreation, ProjectQuota


class QuotaExceeded(Exception):
    """A submit refused by a cap, a budget or a quota; the message says which and the usage."""

    def __init__(self, message: str, field: str = "__all__", retry_after: int | None = None):
        super().__init__(message)
        self.field = field
        # Seconds after which the same submit may pass (a cap frees up as jobs end, a monthly
        # quota at the month's turn); None for a budget, which no wait changes. The API answers
        # 429 with Retry-After when set, 400 otherwise.
        self.retry_after = retry_after


ACTIVE_CAP_RETRY_AFTER = 30


_cache: dict[str, tuple[float, PlatformPolicy]] = {}
CACHE_SECONDS = 5.0  # how long a process may use a policy row it read (dispatch reads it often)


def policy() -> PlatformPolicy:
    """The platform's policy; other processes see an admin's change within CACHE_SECONDS."""
    now = time.monotonic()
    hit = _cache.get("policy")
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    current = PlatformPolicy.current()
    _cache["policy"] = (now, current)
    return current


def forget_policy(**kwargs) -> None:
    """Drop this process's cached policy (connected to the policy's post_save)."""
    _cache.clear()


# --------------------------------------------------------------------------- projects


def check_may_create_project(user) -> None:
    rule = policy().who_may_create_projects
    if rule == ProjectCreation.STAFF and not (user.is_staff or user.is_superuser):
        raise PermissionDenied(gettext("Only platform staff may create projects on this platform"))


def check_project_concurrency(value: int | None) -> None:
    """A project admin may lower the project's concurrency below the ceiling, not raise it."""
    ceiling = policy().project_concurrency_ceiling
    if value is not None and value > ceiling:
        raise ValidationError(
            {"max_concurrent_jobs": f"At most {ceiling} (the platform's ceiling); asked {value}"}
        )


def concurrency_ceiling() -> int:
    return policy().project_concurrency_ceiling


# --------------------------------------------------------------------------- jobs


def _seconds_to_next_month() -> int:
    start = month_start()
    following = (start + timedelta(days=32)).replace(day=1)
    return max(1, int((following - timezone.now()).total_seconds()))


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def gpu_seconds_this_month(project_id: int) -> float:
    from apps.jobs.models import Job

    total = Job.objects.filter(
        project_id=project_id, queue="gpu", created_at__gte=month_start()
    ).aggregate(s=Sum("worker_seconds"))["s"]
    return float(total or 0.0)


def monthly_gpu_hours(project) -> float | None:
    quota = ProjectQuota.objects.filter(project=project).values_list("monthly_gpu_hours", flat=True)
    own = quota.first()
    return own if own is not None else policy().default_monthly_gpu_hours


def check_job_submit(*, project, user, kind, params, active=None) -> None:
    """Caps on queued + running jobs, the kind's compute budget and the monthly GPU quota.

    `active`: the queued + running counts as the caller already has them (job_create counts
    them in one query with its run slots): `.mine` (the user's, every project) and
    `.in_project`; counted here when not given."""
    from apps.jobs.models import Job
    from apps.jobs.states import ACTIVE, JobState

    rules = policy()
    states = [JobState.QUEUED, *ACTIVE]
    if user is not None and getattr(user, "pk", None) is not None:
        mine = (
            active.mine
            if active is not None
            else Job.objects.filter(created_by=user, state__in=states).count()
        )
        if mine >= rules.user_active_jobs:
            raise QuotaExceeded(
                f"You have {mine} jobs queued or running (limit {rules.user_active_jobs} per "
                "user): wait for some to finish or cancel some",
                retry_after=ACTIVE_CAP_RETRY_AFTER,
            )
    theirs = (
        active.in_project
        if active is not None
        else Job.objects.filter(project=project, state__in=states).count()
    )
    if theirs >= rules.project_active_jobs:
        raise QuotaExceeded(
            f"This project has {theirs} jobs queued or running (limit "
            f"{rules.project_active_jobs} per project): wait for some to finish",
            retry_after=ACTIVE_CAP_RETRY_AFTER,
        )
    if kind.budget is not None:
        for field, message in kind.budget(project, params, rules).items():
            raise QuotaExceeded(message, field=field)
    if kind.queue == "gpu":
        hours = monthly_gpu_hours(project)
        if hours is not None:
            used = gpu_seconds_this_month(project.pk) / 3600
            if used >= hours:
                raise QuotaExceeded(
                    f"This project used {used:.2f} of its {hours:g} GPU hours this month: "
                    "ask a platform admin to raise the quota, or wait for next month",
                    retry_after=_seconds_to_next_month(),
                )


# --------------------------------------------------------------------------- budgets


def image_budget(*, width, height, steps, images, hires_scale=None, hires_steps=0, rules):
    """Errors of an image request against the budget: final side, pixel-steps of all images."""
    scale = hires_scale or 1.0
    side = int(math.ceil(max(width, height) * scale))
    if side > rules.image_max_side:
        return {
            "hires_scale" if hires_scale else "width": (
                f"The final image would be {side} px on its longest side (limit "
                f"{rules.image_max_side} px)"
            )
        }
    work = images * (width * height * steps)
    if hires_scale:
        work += images * int(width * scale) * int(height * scale) * hires_steps
    if work > rules.image_max_pixel_steps:
        return {
            "batch_count": (
                f"This asks for {work:,} pixel-steps ({images} images of {width}x{height}"
                f"{f' upscaled x{scale:g}' if hires_scale else ''} at {steps} steps); the limit "
                f"per job is {rules.image_max_pixel_steps:,}: fewer images, steps or pixels"
            )
        }
    return {}
