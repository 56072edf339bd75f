"""Run one job: claim, heartbeat, call the kind's runner with a Reporter, record the outcome.

Kinds with a ``batch_key`` (image generation) may take compatible queued jobs along: the worker
claims them too and runs them all through the kind's ``batch_runner`` in shared pipeline calls;
each job still has its own reporter, heartbeat, lease, outcome and events.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Queue

from django.conf import settings
from django.db import close_old_connections, transaction

from apps.jobs import registry, services
from apps.jobs.models import EventKind, Job
from apps.jobs.prepared import Prepared
from apps.jobs.registry import JobContext
from apps.jobs.states import JobState
from workers.common.timing import timed
from workers.ml.checkpoints import CheckpointStore
from workers.ml.reporting import JobCancelled, JobFailed
from workers.tasks.reporter import Heartbeat, JobReporter

log = logging.getLogger(__name__)

# Set when this worker process begins a warm shutdown (SIGTERM, Ctrl-C): interruptible jobs stop
# at their next step with a checkpoint and are re-queued; the others run to their end.
SHUTDOWN = threading.Event()
REQUEUED = "requeued"
HANDED_OFF = "handed-off"


_devices: dict[str, str] = {}


def worker_device(queue: str) -> str:
    """The device this worker runs `queue` jobs on, for usage accounting ("cpu", "cuda:0 NVIDIA
    H100 80GB HBM3"). Only the gpu queue looks for CUDA (and imports torch to do so)."""
    if queue != "gpu":
        return "cpu"
    if "gpu" not in _devices:
        try:
            import torch

            if torch.cuda.is_available():
                index = torch.cuda.current_device()
                _devices["gpu"] = f"cuda:{index} {torch.cuda.get_device_name(index)}"
            else:
                _devices["gpu"] = "cpu"
        except Exception:  # noqa: BLE001 - accounting must never stop a job
            _devices["gpu"] = "cpu"
    return _devices["gpu"]


def request_shutdown() -> None:
    """Ask every interruptible job running in this process to stop at its next step."""
    if not SHUTDOWN.is_set():
        log.warning("warm shutdown: interruptible jobs stop at their next checkpoint")
    SHUTDOWN.set()


@dataclass
class _Running:
    """A claimed job on this worker: its reporter and lease heartbeat, until it is finished."""

    job: Job
    reporter: JobReporter
    heartbeat: Heartbeat
    ctx: JobContext | None = None
    done: bool = False
    usage_share: float = 1.0  # 1/N for each of N jobs run in one batch
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, job: Job) -> _Running:
        kind = registry.find(job.kind)
        reporter = JobReporter(
            job_id=job.pk,
            attempt=job.attempt,
            shutdown=SHUTDOWN if kind is not None and kind.interruptible else None,
        )
        heartbeat = Heartbeat(reporter=reporter)
        heartbeat.start()
        return cls(job=job, reporter=reporter, heartbeat=heartbeat)

    def context(self, kind: registry.JobKind, params=None) -> JobContext:
        job = self.job
        workdir = settings.JOBS_DIR / str(job.pk)
        workdir.mkdir(parents=True, exist_ok=True)
        self.ctx = JobContext(
            job_id=job.pk,
            project_id=job.project_id,
            attempt=job.attempt,
            params=params if params is not None else kind.params.model_validate(job.params),
            reporter=self.reporter,
            workdir=workdir,
            checkpoints=CheckpointStore(
                workdir / "checkpoints", before_complete=self.reporter.flush
            ),
        )
        if job.attempt > 1:
            self.reporter.log(f"attempt {job.attempt}: resuming", "warning")
        return self.ctx

    def finish(self, outcome: str, result: dict | None = None, error: str = "") -> str:
        """Stop the heartbeat, flush events and record the outcome (once)."""
        with self.lock:
            if self.done:
                return "finished"
            self.done = True
        self.heartbeat.stop()
        self.reporter.close()
        if self.reporter.lost.is_set():
            return "lost"
        if outcome == REQUEUED:
            services.job_requeue_for_shutdown(
                job_id=self.job.pk, attempt=self.job.attempt, worker_id=self.job.lease_owner
            )
            return REQUEUED
        recorded = services.job_finish(
            job_id=self.job.pk,
            attempt=self.job.attempt,
            target=outcome,
            result=result,
            error=error,
            usage_share=self.usage_share,
        )
        return str(outcome) if recorded else "lost"

    def quiesce(self) -> None:
        """Stop this job's other threads (lease heartbeat, events writer), so that its final
        writes can share one transaction without waiting on their database connections."""
        self.heartbeat.stop()
        self.reporter.close()


def _log_crash(running: _Running, error: str, trace: str) -> None:
    """The short error as the job's log line; the traceback (server paths, code) only in the
    event's data, which apps.jobs.selectors.event_for_viewer strips for all but project admins
    and platform staff.

    The worker's own log has the traceback from log.exception. The event is written directly,
    after the reporter's buffer, because the Reporter's log() carries a message only.
    """
    log.error("job %s: %s", running.job.pk, error)
    try:
        running.reporter.flush()  # what the runner reported comes first
        written = services.job_append_events(
            job_id=running.job.pk,
            events=[
                (
                    EventKind.LOG,
                    {"message": error[:4000], "level": "error", "traceback": trace[:20000]},
                )
            ],
            attempt=running.job.attempt,
        )
    except Exception:  # noqa: BLE001 - the database is away: the buffered line is retried
        running.reporter.log(error, "error")
        return
    if written is None:
        running.reporter.lost.set()  # fenced out: another attempt owns the job


def _outcome(running: _Running, value) -> tuple[str, dict | None, str]:
    """The final state, result and error of a job from what its runner returned or raised."""
    stopped_for_shutdown = (
        running.reporter.shutting_down() and not running.reporter.cancel_requested.is_set()
    )
    if isinstance(value, JobCancelled):
        if stopped_for_shutdown:
            return REQUEUED, None, ""
        return JobState.CANCELLED, None, ""
    if isinstance(value, JobFailed):
        running.reporter.log(str(value), "error")
        return JobState.FAILED, None, str(value)
    if isinstance(value, registry.UnknownKind):
        error = f"This worker does not know job kind {running.job.kind!r}"
        running.reporter.log(error, "error")
        return JobState.FAILED, None, error
    if isinstance(value, BaseException):
        error = f"{type(value).__name__}: {value}"
        trace = "".join(traceback.format_exception(value, limit=8))
        _log_crash(running, error, trace)
        return JobState.FAILED, None, error
    if running.reporter.cancel_requested.is_set():
        return JobState.CANCELLED, value or {}, ""
    return JobState.SUCCEEDED, value or {}, ""


@timed("tasks.complete")
def complete_deferred(
    running: _Running, deferred: registry.Deferred, before_rows: Callable[[], None] | None = None
) -> str:
    """A job's last writes: its files, then its rows and outcome in one transaction (see
    registry.Deferred).

    The job's heartbeat and events writer stop first (their connections would wait on this
    transaction's locks). When the outcome cannot be recorded (another attempt owns the job)
    the rows are rolled back: that attempt writes its own."""
    running.quiesce()
    try:
        prepared = deferred.prepare() if deferred.prepare is not None else None
        if before_rows is not None:
            before_rows()
        with transaction.atomic():
            value = deferred.record(prepared)
            outcome = running.finish(*_outcome(running, value))
            if outcome == "lost":
                transaction.set_rollback(True)
        return outcome
    except Exception as exc:  # noqa: BLE001 - recorded as the job's outcome
        if not isinstance(exc, JobCancelled | JobFailed):
            log.exception("job %s crashed while writing its results", running.job.pk)
        if running.done:  # the outcome's own write failed: the lease runs out, the job re-runs
            return "lost"
        return running.finish(*_outcome(running, exc))


class _ClaimClock:
    """Counts this process's claim attempts, so the finisher can let the next job's claim go
    first: on SQLite a write transaction locks the whole database, and a claim waiting on the
    finisher's lock sleeps in SQLite's busy handler (1, 2, 5, 10 ms ...) on the critical path."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def tick(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_past(self, count: int, timeout: float) -> None:
        """Return once a claim attempt after `count` is over, or after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self.count > count, timeout=timeout)


CLAIMS = _ClaimClock()
# How long a handed-off job's rows wait for the worker's next claim (the next message usually
# arrives within a few ms); without a next job, its outcome is recorded this much later.
NEXT_CLAIM_WAIT = 0.025


class Finisher:
    """One thread per worker process that completes handed-off jobs in order (their PNGs,
    hashes, files, rows and outcomes), so the worker claims and starts the next job meanwhile.

    At most ``depth`` jobs wait: a runner handing off more blocks until one is done, so a fast
    GPU never piles up images in memory. A warm shutdown waits for the queue (``drain``); a
    killed worker leaves its waiting jobs running until their leases run out, then they re-run.
    """

    def __init__(self, depth: int = 1):
        self._queue: Queue = Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, jobs: list[tuple[_Running, registry.Deferred]]) -> None:
        """Hand off one job, or a batch's jobs together (one place in the queue)."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="finisher", daemon=True)
                self._pid = os.getpid()
                self._thread.start()
        self._queue.put((CLAIMS.count, jobs))

    def _loop(self) -> None:
        while True:
            claims_before, jobs = self._queue.get()
            try:
                for running, deferred in jobs:
                    try:
                        complete_deferred(
                            running,
                            deferred,
                            before_rows=lambda c=claims_before: CLAIMS.wait_past(
                                c, 0 if SHUTDOWN.is_set() else NEXT_CLAIM_WAIT
                            ),
                        )
                    except Exception:  # noqa: BLE001 - the next job must still be finished
                        log.exception("finishing job %s failed", running.job.pk)
                        close_old_connections()
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait until every handed-off job is finished; False if some still wait at the end."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


FINISHER = Finisher(depth=2)


# Is another job of this kind queued? (Prepared: every image job asks, and usually none is.)
_OTHER_QUEUED = Prepared(
    lambda key, *, kind, lead_id: (
        Job.objects.filter(kind=kind, state=JobState.QUEUED)
        .exclude(pk=lead_id)
        .values_list("pk")[:1]
    ),
    kind="text",
    lead_id="int",
)


@timed("tasks.claim_partners")
def _claim_partners(lead: Job, kind: registry.JobKind, key, worker_id: str) -> list[_Running]:
    """Claim queued jobs of the same kind whose batch key equals the lead's.

    Not only dispatched ones: jobs created together are dispatched one by one after their
    commit, and the lead's message can arrive before the others are marked. job_claim keeps
    each project's concurrency limit (a job waiting for a slot is not taken); a partner's own
    message, when it comes, finds the job taken and is dropped.
    """
    limit = int(settings.ATELIER.get("BATCH_MAX_JOBS", 1)) - 1
    if limit <= 0 or not _OTHER_QUEUED.execute(kind=lead.kind, lead_id=lead.pk):
        return []  # nothing else of its kind waits: the common case, one prepared statement
    candidates = (
        Job.objects.filter(kind=lead.kind, state=JobState.QUEUED)
        .exclude(pk=lead.pk)
        .order_by("created_at", "pk")
        .only("pk", "params")[: limit * 4]
    )
    partners: list[_Running] = []
    for candidate in candidates:
        try:
            params = kind.params.model_validate(candidate.params)
            if kind.batch_key(params) != key:
                continue
        except Exception:  # noqa: BLE001 - its own run reports bad params
            continue
        claimed = services.job_claim(
            job_id=candidate.pk, worker_id=worker_id, device=worker_device(candidate.queue)
        )
        if claimed is None:
            continue
        partners.append(_Running.start(claimed))
        if len(partners) >= limit:
            break
    return partners


def _run_batch(kind: registry.JobKind, members: list[_Running], handoff: bool) -> None:
    contexts: list[JobContext] = []
    runnable: list[_Running] = []
    for running in members:
        try:
            ctx = running.context(kind)
        except Exception as exc:  # noqa: BLE001 - this member fails alone
            running.finish(*_outcome(running, exc))
            continue

        def finish_early(running: _Running = running) -> None:
            running.finish(JobState.CANCELLED)

        ctx.finish_early = finish_early
        contexts.append(ctx)
        runnable.append(running)
    for running in runnable:
        running.usage_share = 1.0 / len(runnable)
    ids = ", ".join(str(r.job.pk) for r in runnable)
    for running in runnable:
        running.reporter.log(f"running in one batch with jobs {ids}")
    try:
        values = list(kind.batch_runner(contexts))
        if len(values) != len(runnable):
            raise RuntimeError(f"batch runner returned {len(values)} results for {len(runnable)}")
    except Exception as exc:  # noqa: BLE001 - every member gets the error
        if not isinstance(exc, JobCancelled | JobFailed):
            log.exception("batch of jobs %s crashed", ids)
        values = [exc] * len(runnable)
    handed: list[tuple[_Running, registry.Deferred]] = []
    for running, value in zip(runnable, values, strict=True):
        if handoff and isinstance(value, registry.Deferred) and not running.done:
            handed.append((running, value))
        else:
            _settle(running, value, handoff=False)
    if handed:
        FINISHER.submit(handed)


def _settle(running: _Running, value, handoff: bool) -> str:
    """Record what a runner returned: at once, or its deferred writes first (inline, or handed to
    the finisher thread)."""
    if running.done:
        return "finished"
    if isinstance(value, registry.Deferred):
        if handoff:
            FINISHER.submit([(running, value)])
            return HANDED_OFF
        return complete_deferred(running, value)
    return running.finish(*_outcome(running, value))


@timed("tasks.execute_job")
def execute_job(
    job_id: int, *, worker_id: str, handoff: bool = False, queue: str | None = None
) -> str:
    """Returns what happened: not-claimed, succeeded, failed, cancelled or lost (of the job this
    message claimed: its own, or the one its owner moved ahead of it, see
    services.job_claim_turn), or handed-off: ``handoff`` (the Celery task) lets a runner's
    deferred writes finish on the finisher thread while this worker takes its next job.
    ``queue``: the job's queue, when the caller knows it (only the gpu queue looks for a CUDA
    device to record; a job claimed in its place is on the same queue)."""
    if queue is None:  # the Celery task passes the queue its message came from
        queue = Job.objects.filter(pk=job_id).values_list("queue", flat=True).first() or ""
    try:
        job = services.job_claim_turn(
            job_id=job_id, worker_id=worker_id, device=worker_device(queue)
        )
    finally:
        CLAIMS.tick()
    if job is None:
        return "not-claimed"
    running = _Running.start(job)
    try:
        kind = registry.get(job.kind)
        params = kind.params.model_validate(job.params)
        if kind.batch_key is not None and kind.batch_runner is not None:
            key = kind.batch_key(params)
            partners = _claim_partners(job, kind, key, worker_id) if key is not None else []
            if partners:
                _run_batch(kind, [running, *partners], handoff)
                return (
                    Job.objects.filter(pk=job.pk).values_list("state", flat=True).first() or "lost"
                )
        ctx = running.context(kind, params)
        value = kind.runner(ctx)
    except Exception as exc:  # noqa: BLE001 - recorded as the job's outcome
        if not isinstance(exc, JobCancelled | JobFailed | registry.UnknownKind):
            log.exception("job %s crashed", job.pk)
        value = exc
    return _settle(running, value, handoff)
