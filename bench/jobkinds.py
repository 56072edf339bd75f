"""Bench-only job kinds, registered through ATELIER_JOB_KIND_MODULES=bench.jobkinds by
bench/dispatch.py, so users never see them.

- bench.noop: returns at once (measures submit -> running).
- bench.emit: optionally waits for a Redis key (set once every websocket client is connected), then
  reports `points` metric points `interval` seconds apart, each carrying its emit time as the float
  metric `t_emit` (measures event -> browser).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from apps.jobs.registry import JobContext, JobKind, register
from bench import probes
from workers.ml.reporting import JobCancelled, JobFailed


class NoopParams(BaseModel):
    model_config = {"extra": "forbid"}


def run_noop(ctx: JobContext) -> dict:
    return {}


class EmitParams(BaseModel):
    model_config = {"extra": "forbid"}

    points: int = Field(100, ge=1, le=100000)
    interval: float = Field(0.3, ge=0, le=60)
    start_key: str = Field("", description="Redis key to wait for before emitting")
    start_timeout: float = Field(60, ge=0, le=600)


def _wait_for_key(key: str, timeout: float) -> None:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + timeout
    while not client.exists(key):
        if time.monotonic() > deadline:
            raise JobFailed(f"start signal {key!r} never came")
        time.sleep(0.01)


def run_emit(ctx: JobContext) -> dict:
    p = ctx.params
    rep = ctx.reporter
    if p.start_key:
        _wait_for_key(p.start_key, p.start_timeout)
    # A point reported sooner than EVENT_MIN_INTERVAL after the last flush waits in the
    # Reporter's buffer; count those (reads the JobReporter's private clock, bench only).
    buffered = 0
    step_ms = []
    for i in range(1, p.points + 1):
        if rep.should_stop():
            raise JobCancelled()
        last = getattr(rep, "_last_flush", None)
        if last is not None and i < p.points and rep.clock() - last < rep.min_interval:
            buffered += 1
        t_emit = time.time()
        rep.step(i, p.points, {"t_emit": t_emit})
        step_ms.append(round((time.time() - t_emit) * 1000, 3))
        if i < p.points:
            time.sleep(p.interval)  # after the flush, so every point is >= interval after the last
    return {"points": p.points, "buffered": buffered, "step_ms": step_ms}


register(
    JobKind(
        name="bench.noop",
        label="Bench no-op",
        queue="cpu",
        params=NoopParams,
        runner=run_noop,
        description="Bench-only: returns at once.",
        launchable=False,
    )
)
register(
    JobKind(
        name="bench.emit",
        label="Bench emit",
        queue="cpu",
        params=EmitParams,
        runner=run_emit,
        description="Bench-only: emits timestamped metric points.",
        launchable=False,
    )
)

probes.install_whatifs()  # first, so the probes wrap what the what-ifs installed
probes.install()
probes.install_web_profiler()
