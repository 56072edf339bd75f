"""Test-only job kind, registered through ATELIER_JOB_KIND_MODULES by the test harness.

It counts steps, sleeping between them, checkpoints every few steps and records each executed
step (with its attempt) in a file, so tests can prove what ran and what was resumed.
"""

import time

from pydantic import BaseModel, Field

from apps.jobs.registry import Deferred, JobContext, JobKind, register
from workers.ml.reporting import JobCancelled, JobFailed


class StepsParams(BaseModel):
    model_config = {"extra": "forbid"}

    steps: int = Field(10, ge=1, le=100000, title="Steps")
    step_seconds: float = Field(0.05, ge=0, le=10, title="Seconds per step")
    checkpoint_every: int = Field(5, ge=1, title="Checkpoint every")
    fail_at: int | None = Field(None, title="Fail at step")
    record_file: str = Field("", title="Record file")


def run(ctx: JobContext) -> dict:
    p = ctx.params
    start = 0
    saved = ctx.checkpoints.load_json_state()
    if saved is not None:
        start = saved[0]
        ctx.reporter.log(f"resuming from checkpoint at step {start}")
    for step in range(start + 1, p.steps + 1):
        if ctx.reporter.should_stop():
            raise JobCancelled()
        time.sleep(p.step_seconds)
        if p.fail_at == step:
            raise JobFailed(f"failed on purpose at step {step}")
        if p.record_file:
            with open(p.record_file, "a") as f:
                f.write(f"{ctx.attempt} {step}\n")
        ctx.reporter.step(step, p.steps, {"value": float(step)})
        if step % p.checkpoint_every == 0:
            ctx.checkpoints.save_json_state(step, {"step": step})
    return {"steps": p.steps, "resumed_from": start}


register(
    JobKind(
        name="test.steps",
        label="Test steps",
        queue="cpu",
        params=StepsParams,
        runner=run,
        description="Test-only: counts steps.",
        interruptible=True,
    )
)
register(
    JobKind(
        name="test.gpu_steps",
        label="Test GPU steps",
        queue="gpu",
        params=StepsParams,
        runner=run,
        description="Test-only: counts steps on the gpu queue.",
        interruptible=True,
    )
)


class DeferredParams(BaseModel):
    model_config = {"extra": "forbid"}

    text: str = Field("a result", title="Text")
    gate_file: str = Field("", title="Wait for this file before writing")
    record_file: str = Field("", title="Record file")
    fail_after_write: bool = Field(False, title="Fail after writing the output")
    lose_the_job: bool = Field(False, title="Another attempt takes the job while it writes")


def run_deferred(ctx: JobContext) -> Deferred:
    """'Generates' at once, then hands off its writes (as image jobs do): they wait for
    `gate_file` (so a test can kill the worker in between), then write one text Output."""
    p = ctx.params

    def record(line: str) -> None:
        if p.record_file:
            with open(p.record_file, "a") as f:
                f.write(f"{ctx.attempt} {line}\n")

    record("generated")

    def prepare() -> None:  # the files' part: no database
        from pathlib import Path

        while p.gate_file and not Path(p.gate_file).exists():
            time.sleep(0.05)
        record("writing")

    def complete(prepared) -> dict:
        import hashlib

        from apps.jobs.models import Job
        from apps.outputs.services import output_create

        author = Job.objects.values_list("created_by_id", flat=True).get(pk=ctx.job_id)
        output = output_create(
            project_id=ctx.project_id,
            job_id=ctx.job_id,
            kind="text",
            text=p.text,
            sha256=hashlib.sha256(p.text.encode()).hexdigest(),
            created_by_id=author,
        )
        if p.fail_after_write:
            raise JobFailed("failed on purpose after writing")
        if p.lose_the_job:  # as the reaper and another worker would have done meanwhile
            from django.db.models import F

            Job.objects.filter(pk=ctx.job_id).update(attempt=F("attempt") + 1)
        return {"output_id": output.pk}

    return Deferred(record=complete, prepare=prepare)


register(
    JobKind(
        name="test.deferred",
        label="Test deferred writes",
        queue="cpu",
        params=DeferredParams,
        runner=run_deferred,
        description="Test-only: hands its writes to the worker's finisher.",
    )
)


class AheadParams(DeferredParams):
    steps: int = Field(3, ge=1, le=100, title="Steps")
    # After its last step: wait (up to 10 s) until this job runs, claimed by the worker's
    # lookahead, then ask the worker to shut down (a test of the release of a job claimed ahead).
    shutdown_once_running: int | None = Field(None, title="Shut down once this job runs")
    # After its last step: wait (up to 60 s) for this file (a test kills the worker meanwhile).
    hold_file: str = Field("", title="Wait for this file after the last step")


def run_ahead(ctx: JobContext) -> Deferred:
    """Steps, then deferred writes, on the gpu queue, with the lookahead: as image jobs do."""
    p = ctx.params
    for step in range(1, p.steps + 1):
        ctx.reporter.step(step, p.steps)
    if p.shutdown_once_running:
        from apps.jobs.models import Job
        from workers.tasks.runtime import request_shutdown

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = Job.objects.values_list("state", flat=True).get(pk=p.shutdown_once_running)
            if state == "running":
                break
            time.sleep(0.01)
        request_shutdown()
    if p.hold_file:
        from pathlib import Path

        deadline = time.monotonic() + 60
        while not Path(p.hold_file).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return run_deferred(ctx)


register(
    JobKind(
        name="test.gpu_ahead",
        label="Test GPU steps with lookahead",
        queue="gpu",
        params=AheadParams,
        runner=run_ahead,
        description="Test-only: reports steps, then hands its writes off, on the gpu queue.",
        lookahead=True,
    )
)
