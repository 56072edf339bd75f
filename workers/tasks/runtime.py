"""Run one job: claim, heartbeat, call the kind's runner with a Reporter, record the outcome."""

from __future__ import annotations

import logging
import traceback

from django.conf import settings

from apps.jobs import registry, services
from apps.jobs.registry import JobContext
from apps.jobs.states import JobState
from workers.ml.checkpoints import CheckpointStore
from workers.ml.reporting import JobCancelled, JobFailed
from workers.tasks.reporter import Heartbeat, JobReporter

log = logging.getLogger(__name__)


def execute_job(job_id: int, *, worker_id: str) -> str:
    """Returns what happened: not-claimed, succeeded, failed, cancelled or lost."""
    job = services.job_claim(job_id=job_id, worker_id=worker_id)
    if job is None:
        return "not-claimed"
    reporter = JobReporter(job_id=job.pk, attempt=job.attempt)
    heartbeat = Heartbeat(reporter=reporter)
    heartbeat.start()
    outcome, result, error = JobState.FAILED, None, ""
    try:
        kind = registry.get(job.kind)
        workdir = settings.JOBS_DIR / str(job.pk)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(
            job_id=job.pk,
            project_id=job.project_id,
            attempt=job.attempt,
            params=kind.params.model_validate(job.params),
            reporter=reporter,
            workdir=workdir,
            checkpoints=CheckpointStore(workdir / "checkpoints"),
        )
        if job.attempt > 1:
            reporter.log(f"attempt {job.attempt}: resuming", "warning")
        result = kind.runner(ctx) or {}
        outcome = JobState.CANCELLED if reporter.cancel_requested.is_set() else JobState.SUCCEEDED
    except JobCancelled:
        outcome = JobState.CANCELLED
    except JobFailed as exc:
        error = str(exc)
        reporter.log(error, "error")
    except registry.UnknownKind:
        error = f"This worker does not know job kind {job.kind!r}"
        reporter.log(error, "error")
    except Exception as exc:
        log.exception("job %s crashed", job.pk)
        error = f"{type(exc).__name__}: {exc}"
        reporter.log(f"{error}\n{traceback.format_exc(limit=8)}", "error")
    finally:
        heartbeat.stop()
    reporter.close()
    if reporter.lost.is_set():
        return "lost"
    services.job_finish(
        job_id=job.pk, attempt=job.attempt, target=outcome, result=result, error=error
    )
    return str(outcome)
