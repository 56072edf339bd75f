"""Rows for tests, made through the same services users go through (validated, audited)."""

from __future__ import annotations

from apps.jobs.models import Job
from apps.jobs.services import job_create

FAST_STEPS = {"steps": 3, "step_seconds": 0}


def make_job(project, user, kind: str = "test.steps", **params) -> Job:
    """A job of `kind` (default: the test-only step counter, fast) created by `user`."""
    if kind in ("test.steps", "test.gpu_steps"):
        params = {**FAST_STEPS, **params}
    return job_create(project=project, kind=kind, params=params, created_by=user)
