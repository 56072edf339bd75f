"""The doorbell: after events are committed to the database, tell websocket consumers.

Group names are built here, on the server, from ids (never from client strings). The database
stays the source of truth: a lost doorbell only delays a client, whose consumer fetches any gap.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import reverse

from workers.common.timing import enabled as timing_enabled
from workers.common.timing import timed

log = logging.getLogger(__name__)

PROJECT_PROGRESS_INTERVAL = 1.0  # seconds between dashboard progress pushes for one job

_last_project_push: dict[int, float] = {}
_lock = threading.Lock()


def socket_url(name: str, **kwargs: int) -> str:
    """The path of a websocket route (apps/jobs/routing.py) by its name, as reverse() does for pages:
    ``socket_url("job_socket", job_id=5)`` is ``/ws/jobs/5/``."""
    return reverse(name, urlconf="apps.jobs.routing", kwargs=kwargs)


def job_group(job_id: int) -> str:
    return f"job.{int(job_id)}"


def project_group(project_id: int) -> str:
    return f"project.{int(project_id)}"


def job_snapshot(job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "kind_label": job.kind_label,
        "state": job.state,
        "state_label": job.get_state_display(),
        "progress": round(job.progress, 4),
        "attempt": job.attempt,
        "url": job.get_absolute_url(),
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "created_by": job.created_by.username if job.created_by_id and job.created_by else "",
    }


SEND_TIMEOUT = 5.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def _doorbell_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, in its own thread, for doorbells sent from sync code.

    async_to_sync from a thread without a loop makes a new loop per call, and channels_redis a
    new connection per loop: ~3 ms of CPU a doorbell, on the worker's event-writer thread beside a
    training or denoising loop. A persistent loop keeps one connection pool: ~0.3 ms.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="doorbells", daemon=True).start()
            _loop_pid = os.getpid()
        return _loop


class _Sender:
    """Doorbells from sync code, sent in order by one task on the doorbell loop.

    The caller (a claim, an events flush, a job's last transaction) only enqueues: it does not
    wait for Redis. One task sends them one after the other, so a group gets its doorbells in
    the order they were rung. A doorbell still queued when the process dies is lost like any
    other: sockets ask the database within WS_RESYNC_SECONDS.
    """

    def __init__(self) -> None:
        self.loop = _doorbell_loop()
        self.pending = 0
        self._lock = threading.Lock()
        self._queue: asyncio.Queue = asyncio.Queue()
        asyncio.run_coroutine_threadsafe(self._run(), self.loop)

    def put(self, layer, group: str, message: dict) -> None:
        with self._lock:
            self.pending += 1
        self.loop.call_soon_threadsafe(self._queue.put_nowait, (layer, group, message))

    async def _run(self) -> None:
        while True:
            layer, group, message = await self._queue.get()
            try:
                await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT)
            except Exception:  # a broken doorbell must never undo a committed write
                log.warning("could not notify %s", group, exc_info=True)
            finally:
                with self._lock:
                    self.pending -= 1

    def drain(self, timeout: float) -> bool:
        """Wait until every doorbell rung so far has been sent (or given up)."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


_sender: _Sender | None = None
_sender_pid: int | None = None


_sender_lock = threading.Lock()


def _doorbells() -> _Sender:
    global _sender, _sender_pid
    with _sender_lock:
        if _sender is None or _sender_pid != os.getpid() or _sender.loop.is_closed():
            _sender, _sender_pid = _Sender(), os.getpid()
        return _sender


def drain_doorbells(timeout: float = 2.0) -> bool:
    """Send what is queued before a short-lived process exits (commands, tests)."""
    return _sender is None or _sender_pid != os.getpid() or _sender.drain(timeout)


atexit.register(drain_doorbells)


@timed("jobs.ring")
def ring(group: str, message: dict) -> None:
    """Send `message` to a channel-layer group from sync or async code; never raises. From sync
    code it returns at once (the doorbell loop sends it, in order)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # plain sync code (workers, sync views): the doorbell loop
            _doorbells().put(layer, group, message)
        else:  # pragma: no cover - sync code called from inside a loop: asgiref's own path
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # a broken doorbell must never undo a committed write
        log.warning("could not notify %s", group, exc_info=True)


@timed("jobs.ring_job")
def ring_job(job_id: int, messages: list[dict]) -> None:
    message = {"type": "job.events", "events": messages}
    if timing_enabled():
        # Only while a timing subscriber listens (benches): the send time, so a subscriber in
        # the web process can time the doorbell's transit. Consumers ignore unknown keys.
        message["sent_at"] = time.time()
    ring(job_group(job_id), message)


@timed("jobs.ring_project")
def ring_project(job_id: int, *, state_changed: bool, load) -> None:
    """Push a job's snapshot to its project's dashboards (progress at most once a second).

    `load()` reads the job row; it is called only when a push is due, so the throttled progress
    flushes of a running job cost no query.
    """
    now = time.monotonic()
    with _lock:
        last = _last_project_push.get(job_id, 0.0)
        if not state_changed and now - last < PROJECT_PROGRESS_INTERVAL:
            return
        _last_project_push[job_id] = now
    job = load()
    if job.is_terminal:
        with _lock:
            _last_project_push.pop(job_id, None)
    ring(project_group(job.project_id), {"type": "job.changed", "job": job_snapshot(job)})
