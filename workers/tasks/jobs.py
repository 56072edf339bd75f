import os

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down


@worker_ready.connect
def _freeze_startup_objects(**kwargs) -> None:
    """Django, Celery and the task modules are loaded: keep them out of the cycle collector's
    full collections (webapp/startup.py)."""
    from webapp.startup import freeze_startup_objects

    freeze_startup_objects()


@worker_shutting_down.connect
def _stop_interruptible_jobs(**kwargs) -> None:
    """A warm shutdown (SIGTERM, Ctrl-C) asks resumable jobs to stop at a checkpoint, so the
    worker exits within seconds and the job resumes on the next worker without waiting for its
    lease. Celery waits for the running tasks, which then re-queue their jobs."""
    from workers.tasks.runtime import request_shutdown

    request_shutdown()


@worker_shutdown.connect
def _finish_handed_off_jobs(**kwargs) -> None:
    """After the last task returned: write the results of the jobs handed to the finisher thread.
    Whatever is not written in time stays running and re-runs when its lease ends."""
    from workers.tasks.runtime import FINISHER, log

    if not FINISHER.drain(timeout=120):
        log.warning("shutdown: some finished jobs' results were not written; they will re-run")


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

    delivery = self.request.delivery_info or {}
    return execute_job(
        int(job_id),
        worker_id=f"{self.request.hostname}:{os.getpid()}",
        # Eager runs (apply(), tests) finish inline; a worker hands the writes off.
        handoff=not self.request.is_eager,
        queue=delivery.get("routing_key") or None,
    )
