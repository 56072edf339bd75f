import os

from celery import shared_task


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
