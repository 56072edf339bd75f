"""The platform side of the Reporter seam: events into the database, throttled."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from apps.jobs import services
from apps.jobs.models import EventKind, Job
from apps.jobs.states import JobState
from workers.common.timing import timed
from workers.tasks.threads import ThreadCache

log = logging.getLogger(__name__)
PREVIEW_SIZE = 160
# The writers and heartbeats of this process's jobs: threads kept between jobs with their
# database connections (0 idle seconds, as in tests: a thread per job).
HELPERS = ThreadCache(lambda: float(settings.ATELIER.get("HELPER_IDLE_SECONDS", 60.0)))
FLUSH_RETRIES = 6  # ~12 s of back-off before a flush gives up (a database restart)


class JobReporter:
    """Implements workers.ml.reporting.Reporter for one attempt of one job.

    Progress is written at most every EVENT_MIN_INTERVAL seconds; every metrics point is kept
    (buffered, then written in one transaction). Writes are fenced by the attempt number: once
    the job is no longer ours, nothing more is written and should_stop() turns true.
    """

    def __init__(
        self,
        *,
        job_id: int,
        attempt: int,
        min_interval: float | None = None,
        clock=time.monotonic,
        shutdown: threading.Event | None = None,
        on_last_step: Callable[[], None] | None = None,
    ):
        self.job_id = job_id
        # Called once, when the job reports its last step (the runtime's Lookahead: what is left
        # of the job is short, so the worker may claim its next one meanwhile).
        self.on_last_step = on_last_step
        self.attempt = attempt
        # Set by the worker's warm shutdown for interruptible kinds: stop at the next step.
        self.shutdown = shutdown
        self.min_interval = (
            settings.ATELIER["EVENT_MIN_INTERVAL"] if min_interval is None else min_interval
        )
        self.clock = clock
        self._buffer: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        # As if just written: the first lines and progress wait min_interval like the rest (a
        # short job's first write then rides with its last step's, not beside its setup);
        # the first streamed text and the last step go out at once all the same.
        self._last_flush = clock()
        self._progress: tuple[int, int] | None = None
        self._flushed_progress: tuple[int, int] | None = None
        self._started = clock()
        self._first_fraction: float | None = None
        self._eta: float | None = None
        self.cancel_requested = threading.Event()
        self.lost = threading.Event()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._writer: threading.Event | None = None  # set when the writer's loop has returned
        # Streams (text() indexes) that have sent text: the first words of each are written at
        # once, and from then on the writer also wakes on its own (see _write_loop).
        self._streams: set[int] = set()

    # ---- Reporter protocol
    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        total = max(int(total), 1)
        step = max(0, min(int(step), total))
        with self._lock:
            self._progress = (step, total)
            fraction = step / total
            now = self.clock()
            if self._first_fraction is None:
                # A resumed attempt starts part-way: measure speed from where it started.
                self._first_fraction, self._started = fraction, now
            done = fraction - self._first_fraction
            self._eta = (now - self._started) * (1 - fraction) / done if done > 0 else None
            if metrics:
                values = {k: float(v) for k, v in metrics.items()}
                self._buffer.append(
                    (EventKind.METRICS, {"step": step, "total": total, "values": values})
                )
        if step >= total:
            # The last step's progress goes out at once, but on the writer thread: a write here
            # would sit on the critical path between a pipeline call and the next job.
            self.start_writer()
            self._wake.set()
            last, self.on_last_step = self.on_last_step, None
            if last is not None:
                last()
        else:
            self._maybe_flush()

    def log(self, message: str, level: str = "info") -> None:
        log.log(
            logging.WARNING
            if level == "warning"
            else logging.ERROR
            if level == "error"
            else logging.INFO,
            "job %s: %s",
            self.job_id,
            message,
        )
        with self._lock:
            self._buffer.append((EventKind.LOG, {"message": str(message)[:4000], "level": level}))
        self._maybe_flush()

    @timed("reporter.preview")
    def preview(self, image) -> None:
        """A small preview, inlined in the event as a data URL: media is never served directly
        (every file goes through a permission-checked view), and previews are a few KB."""
        import base64
        import io

        small = image.copy()
        small.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
        buffer = io.BytesIO()
        small.save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        with self._lock:
            self._buffer.append(
                (EventKind.PREVIEW, {"url": url, "width": image.width, "height": image.height})
            )
        self._maybe_flush()

    def artifact(self, path: str, name: str | None = None) -> None:
        p = Path(path)
        size = p.stat().st_size if p.is_file() else None
        with self._lock:
            self._buffer.append(
                (EventKind.ARTIFACT, {"name": name or p.name, "url": None, "size": size})
            )
        self._maybe_flush(force=True)

    def text(self, delta: str, index: int = 0) -> None:
        """Streamed generated text (playground). The first text of each stream is written at
        once (it is what the user waits for); the rest is buffered, one event per stream per
        flush, and written at most min_interval after it came, even if nothing follows it."""
        if not delta:
            return
        with self._lock:
            first = index not in self._streams
            if first:
                self._streams.add(index)
            last = self._buffer[-1] if self._buffer else None
            if last is not None and last[0] == EventKind.TEXT and last[1]["index"] == index:
                last[1]["delta"] += delta
            else:
                self._buffer.append((EventKind.TEXT, {"index": index, "delta": delta}))
        if first:
            # On the writer thread, never inline: the generating loop only appends.
            self.start_writer()
            self._wake.set()
        else:
            self._maybe_flush()

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.lost.is_set() or self.shutting_down()

    def shutting_down(self) -> bool:
        return self.shutdown is not None and self.shutdown.is_set()

    # ---- plumbing
    def _maybe_flush(self, force: bool = False) -> None:
        if force:
            self.flush()
        elif self.clock() - self._last_flush >= self.min_interval:
            # Periodic writes happen on a writer thread: the training loop only appends to the
            # buffer (bench/finetune.py measured 3-7 % of loop time spent in inline flushes).
            self.start_writer()
            self._wake.set()

    def start_writer(self) -> None:
        """Start the writer thread, if it is not running yet. The runtime starts it as a job
        starts, so its database connection is open before the job's first streamed text."""
        if self._writer is None:
            self._writer = HELPERS.run(self._write_loop, f"events-job-{self.job_id}")

    def _tick(self) -> float | None:
        """How long the writer may sleep: while text streams, until buffered text is due (a
        token that comes just after a flush must not wait for the next token, or for the end
        of the job); otherwise until woken."""
        if not self._streams or self.min_interval <= 0:
            return None
        due = self._last_flush + self.min_interval - self.clock()
        return min(max(due, 0.005), self.min_interval)

    def _write_loop(self) -> None:
        """The writer, on a helper thread (its connection kept for the next job's writer)."""
        try:
            connection.ensure_connection()
        except Exception:  # noqa: BLE001 - the first write connects (and retries) anyway
            log.warning("job %s: the events writer could not connect yet", self.job_id)
        while True:
            if self._wake.wait(self._tick()):
                self._wake.clear()
            elif not self._text_due():
                continue  # a wake set meanwhile stays set: the next wait returns at once
            if self._closing.is_set():
                return
            try:
                self._flush_once()
            except Exception:
                log.warning(
                    "writing events of job %s failed; will retry", self.job_id, exc_info=True
                )
                connection.close()  # the next try connects anew

    def _text_due(self) -> bool:
        with self._lock:
            waiting = any(kind == EventKind.TEXT for kind, _ in self._buffer)
        return waiting and self.clock() - self._last_flush >= self.min_interval

    def close(self) -> None:
        """Stop the writer thread and write what is left (the runtime calls this at the end).

        What is left is written at once, not after the writer has woken and returned: a flush
        holds the write lock, so a writer caught mid-write finishes first and one that wakes
        later finds nothing left."""
        self._closing.set()
        self._wake.set()
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.wait(timeout=30)

    def flush(self, retries: int = FLUSH_RETRIES) -> None:
        """Write every buffered event now; retried over a few seconds, then raised.

        Checkpoints call this before they are marked complete (nothing up to their step may be
        lost), and the runtime at the end of a job.
        """
        with timed("reporter.flush", n=len(self._buffer)):
            for attempt in range(retries + 1):
                try:
                    self._flush_once()
                    return
                except Exception:
                    if attempt == retries:
                        raise
                    log.warning(
                        "writing events of job %s failed; retrying", self.job_id, exc_info=True
                    )
                    close_old_connections()
                    time.sleep(min(0.2 * 2**attempt, 5.0))

    def _flush_once(self) -> None:
        # One writer at a time: the buffer swap and the write happen under the same lock, so
        # events reach the database in the order they were reported.
        with self._write_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.lost.is_set():
            return
        with self._lock:
            events, self._buffer = self._buffer, []
            taken = list(events)
            progress, eta = self._progress, self._eta
            flushed_before = self._flushed_progress
            self._last_flush = self.clock()
            new_progress = progress is not None and progress != self._flushed_progress
            if new_progress:
                step, total = progress
                events.append(
                    (
                        EventKind.PROGRESS,
                        {
                            "step": step,
                            "total": total,
                            "fraction": round(step / total, 6),
                            "eta_seconds": round(eta, 1) if eta is not None else None,
                        },
                    )
                )
                self._flushed_progress = progress
        if not events:
            return
        try:
            written = services.job_append_events(
                job_id=self.job_id,
                events=events,
                attempt=self.attempt,
                progress=(progress[0] / progress[1]) if new_progress else None,
                eta_seconds=eta,
            )
        except BaseException:
            # Nothing was committed: put the events back in front, in order, for the next try.
            with self._lock:
                self._buffer = taken + self._buffer
                self._flushed_progress = flushed_before
            raise
        if written is None:
            self.lost.set()


class Heartbeat:
    """Renews the lease and watches for cancel while the job runs in the main thread."""

    def __init__(self, *, reporter: JobReporter, poll: float = 0.5):
        self.reporter = reporter
        self.poll = poll
        self.renew_every = settings.ATELIER["HEARTBEAT_SECONDS"]
        self._halt = threading.Event()
        self._done: threading.Event | None = None

    def start(self) -> None:
        """Run on a helper thread (workers/tasks/threads.py) until stop()."""
        self._done = HELPERS.run(self.run, f"heartbeat-job-{self.reporter.job_id}")

    def run(self) -> None:
        last_renew = time.monotonic()
        while not self._halt.wait(self.poll):
            try:
                if time.monotonic() - last_renew >= self.renew_every:
                    state = services.job_heartbeat(
                        job_id=self.reporter.job_id, attempt=self.reporter.attempt
                    )
                    last_renew = time.monotonic()
                else:
                    state = (
                        Job.objects.filter(pk=self.reporter.job_id, attempt=self.reporter.attempt)
                        .values_list("state", flat=True)
                        .first()
                    )
            except Exception:
                log.warning(
                    "heartbeat for job %s failed; retrying", self.reporter.job_id, exc_info=True
                )
                connection.close()  # the next poll connects anew
                continue
            if state is None or state not in (JobState.RUNNING, JobState.CANCELLING):
                self.reporter.lost.set()
                log.warning(
                    "job %s attempt %s lost its lease",
                    self.reporter.job_id,
                    self.reporter.attempt,
                )
                return
            if state == JobState.CANCELLING:
                self.reporter.cancel_requested.set()

    def halt(self) -> None:
        """Ask the heartbeat to stop (stop() also waits for it)."""
        self._halt.set()

    def stop(self) -> None:
        self._halt.set()
        if self._done is not None:
            self._done.wait(timeout=10)
