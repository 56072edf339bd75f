import os

from celery import shared_task
from celery.signals import worker_shutting_down


@worker_shutting_down.connect
def _stop_interruptible_jobs(**kwargs) -> None:
    """A warm shutdown (SIGTERM, Ctrl-C) asks resumable jobs to stop at a checkpoint, so the
    worker exits within seconds and the job resumes on the next worker without waiting for its
    lease. Celery waits for the running tasks, which then re-queue their jobs."""
    from workers.tasks.runtime import request_shutdown

    request_shutdown()


@shared_task(
    name="atelier.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_job(self, job_id: int) -> str:
    # Imported here: Celery's Django fix-up sets Django up before the first task runs.
    from workers.tasks.runtime import execute_job

    return execute_job(int(job_id), worker_id=f"{self.request.hostname}:{os.getpid()}")
