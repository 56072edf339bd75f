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


def make_output(project, user, *, job=None, moderation: str = "clean", **fields):
    """An output made through output_create (its moderation hook runs), then put in
    `moderation` as a rule or a reviewer would have left it."""
    import hashlib

    from apps.outputs.models import Output
    from apps.outputs.services import output_create

    fields.setdefault("kind", "text")
    body = f"{fields.get('text', '')}|{fields.get('prompt', '')}|{Output.objects.count()}"
    fields.setdefault("sha256", hashlib.sha256(body.encode()).hexdigest())
    output = output_create(
        project_id=project.pk,
        created_by_id=user.pk if user is not None else None,
        job_id=job.pk if job is not None else None,
        **fields,
    )
    if output.moderation != moderation:
        Output.objects.filter(pk=output.pk).update(moderation=moderation)
        output.moderation = moderation
    return output


def job_succeed(job: Job, *, events=(), result: dict | None = None) -> Job:
    """Run a queued job to success by hand, through the engine's services as a worker would:
    claim it, append its events (fenced by the attempt), finish it with `result`."""
    from apps.jobs.services import job_append_events, job_claim, job_finish
    from apps.jobs.states import JobState

    claimed = job_claim(job_id=job.pk, worker_id="tests")
    assert claimed is not None, f"job {job.pk} could not be claimed"
    if events:
        job_append_events(job_id=job.pk, events=list(events), attempt=claimed.attempt)
    job_finish(job_id=job.pk, attempt=claimed.attempt, target=JobState.SUCCEEDED, result=result)
    job.refresh_from_db()
    return job
