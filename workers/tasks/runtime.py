"""Run one job: claim, heartbeat, call the kind's runner with a Reporter, record the outcome.

Kinds with a ``batch_key`` (image generation) may take compatible queued jobs along: the worker
claims them too and runs them all through the kind's ``batch_runner`` in shared pipeline calls;
each job still has its own reporter, heartbeat, lease, outcome and events.
"""

from __future__ import annotations

import functools
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
    def start(cls, job: Job, on_last_step: Callable[[], None] | None = None) -> _Running:
        kind = registry.find(job.kind)
        reporter = JobReporter(
            job_id=job.pk,
            attempt=job.attempt,
            shutdown=SHUTDOWN if kind is not None and kind.interruptible else None,
            on_last_step=on_last_step,
        )
        heartbeat = Heartbeat(reporter=reporter)
        heartbeat.start()
        reporter.start_writer()
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
            author_id=job.created_by_id,
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
        # The heartbeat is told to stop first but waited for after the last events are written:
        # a streamed text's last words reach the client without waiting on its thread.
        self.heartbeat.halt()
        self.reporter.close()
        self.heartbeat.stop()
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

# Jobs one Celery message runs through the Lookahead before its task returns to the broker (the
# message stays unacknowledged meanwhile: acks_late).
LOOKAHEAD_MAX_JOBS = 16
# Jobs this process claimed ahead whose own message has not come back to it yet: job id ->
# when. That message then does nothing without asking the database (~1 ms instead of a claim
# that fails and a look at the owner's line). Entries of messages another worker took are
# dropped after STALE_AFTER seconds.
_CLAIMED_AHEAD: dict[int, float] = {}
_CLAIMED_AHEAD_LOCK = threading.Lock()
STALE_AFTER = 600.0


class Lookahead:
    """Claims a gpu worker's next job while the current one finishes, so that the next one starts
    as soon as the current one hands its writes off: no broker round trip (ack, next message)
    and no claim between two images.

    A ``lookahead`` kind's last step arms it (an image job has its decode and hand-off left,
    tens of ms). On its own thread it claims the queued job whose message went out first on the
    current job's queue, by job_claim's fast path: a job whose owner moved anything, or one
    without a free slot in its project, is left to its message as ever. The Celery task that
    ran the current job runs the claimed one next (execute_job); the job's own message, when it
    comes, finds it taken and does nothing. Jobs are claimed in the order the broker would have
    delivered them, and only at a last step, so a job waits at most that decode for this worker
    while another might have started it. A warm shutdown, or an error, queues a job claimed but
    not started again; a killed worker's claimed job re-runs when its lease runs out, as any
    running job's does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._request: tuple[str, str] | None = None
        self._claimed: Job | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self, *, queue: str, worker_id: str) -> None:
        """Claim the next job of `queue` for this worker, on the lookahead thread."""
        if SHUTDOWN.is_set():
            return
        with self._lock:
            if not self._idle.is_set() or self._claimed is not None:
                return  # one job ahead at most
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="lookahead", daemon=True)
                self._pid = os.getpid()
                self._thread.start()
            self._idle.clear()
            self._request = (queue, worker_id)
        self._wake.set()

    def take(self, timeout: float | None = 120.0) -> Job | None:
        """The job claimed for this worker (None if none), once a claim under way is over."""
        if not self._idle.wait(timeout):
            log.warning("the lookahead's claim is still under way; not waiting for it")
        with self._lock:
            job, self._claimed = self._claimed, None
        return job

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                request, self._request = self._request, None
            try:
                job = _claim_next(*request) if request is not None else None
                if job is not None:
                    with self._lock:
                        self._claimed = job
            except Exception:  # noqa: BLE001 - the job's own message claims it instead
                log.warning("claiming the next job ahead failed", exc_info=True)
                close_old_connections()
            finally:
                self._idle.set()


@timed("tasks.lookahead")
def _claim_next(queue: str, worker_id: str) -> Job | None:
    """Claim the job whose message went out first on `queue`, leaving that message unused."""
    if SHUTDOWN.is_set():
        return None
    found = _FIRST_SENT.execute(queue=queue)
    if not found:
        return None
    job_id = found[0][0]
    job = services.job_claim(
        job_id=job_id,
        worker_id=worker_id,
        device=worker_device(queue),
        unless_reordered=True,
        message=False,
    )
    if job is not None:
        now = time.monotonic()
        with _CLAIMED_AHEAD_LOCK:
            for stale in [k for k, t in _CLAIMED_AHEAD.items() if now - t > STALE_AFTER]:
                del _CLAIMED_AHEAD[stale]
            _CLAIMED_AHEAD[job.pk] = now
    return job


# The queued job of a queue whose message went out first (the broker's queues are FIFO).
_FIRST_SENT = Prepared(
    lambda key, *, queue: (
        Job.objects.filter(state=JobState.QUEUED, queue=queue, dispatched_at__isnull=False)
        .order_by("dispatched_at", "pk")
        .values_list("pk")[:1]
    ),
    queue="text",
)


LOOKAHEAD = Lookahead()


def _release(job: Job, worker_id: str) -> None:
    """Queue again a job the Lookahead claimed that this worker will not start."""
    with _CLAIMED_AHEAD_LOCK:
        _CLAIMED_AHEAD.pop(job.pk, None)
    try:
        services.job_requeue_for_shutdown(
            job_id=job.pk, attempt=job.attempt, worker_id=worker_id, started=False
        )
    except Exception:  # noqa: BLE001 - its lease runs out and it re-runs, as a lost job's does
        log.exception("could not queue job %s again, claimed ahead", job.pk)


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
    if handoff:
        with _CLAIMED_AHEAD_LOCK:
            ahead = _CLAIMED_AHEAD.pop(job_id, None)
        if ahead is not None:
            return "not-claimed"  # its job ran on this worker's lookahead
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
    if not handoff:
        return _run_claimed(job, worker_id=worker_id, handoff=False, ahead=False)
    try:
        outcome = _run_claimed(job, worker_id=worker_id, handoff=True, ahead=True)
        for left in range(LOOKAHEAD_MAX_JOBS - 1, -1, -1):
            following = LOOKAHEAD.take()
            if following is None:
                break
            CLAIMS.tick()  # the finisher's rows need not wait for a claim: this one is done
            if SHUTDOWN.is_set():
                _release(following, worker_id)
                break
            _run_claimed(following, worker_id=worker_id, handoff=True, ahead=left > 0)
    finally:
        # An error above must not leave a job claimed and not run.
        following = LOOKAHEAD.take(timeout=None if SHUTDOWN.is_set() else 0)
        if following is not None:
            _release(following, worker_id)
    return outcome


def _run_claimed(job: Job, *, worker_id: str, handoff: bool, ahead: bool) -> str:
    """Run a job this worker claimed and record its outcome (or hand its writes off). ``ahead``:
    a lookahead kind arms the Lookahead at its last step."""
    found = registry.find(job.kind)
    arm = None
    if ahead and found is not None and found.lookahead:
        arm = functools.partial(LOOKAHEAD.arm, queue=job.queue, worker_id=worker_id)
    running = _Running.start(job, on_last_step=arm)
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
