"""Helper threads kept between jobs, each with its own database connection.

Every job has an events writer and a lease heartbeat beside it (workers/tasks/reporter.py). A
new thread per job also meant a new database connection per job (Django's connections are per
thread): a connect, its session setup and, on PostgreSQL, a server process forked for it, on
the path of the job's first event. Here a thread that finishes its task waits for the next one
(up to ``idle_seconds``) and keeps its connection, so back-to-back jobs reuse both.

A task is a plain callable; ``run`` returns an Event set when the task has returned. A task that
raised, or left a transaction or a broken connection behind, ends its thread (its connection is
closed): the next task gets a fresh thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from django.db import connection

log = logging.getLogger(__name__)

IDLE_NAME = "helper-idle"


_Task = tuple[Callable[[], None], str, threading.Event]


class _Helper(threading.Thread):
    def __init__(self, cache: ThreadCache, first: _Task) -> None:
        super().__init__(name=IDLE_NAME, daemon=True)
        self.cache = cache
        self.inbox: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self.inbox.put(first)  # in its inbox before it starts: it never waits for its first task

    def run(self) -> None:
        try:
            while True:
                try:
                    item = self.inbox.get(timeout=self.cache.idle_seconds())
                except queue.Empty:
                    if self.cache.retire(self):
                        return
                    continue  # taken for a task just now: it is on its way into the inbox
                if item is None:  # close_idle()
                    return
                task, name, done = item
                self.name = name
                clean = False
                try:
                    task()
                    clean = not (connection.in_atomic_block or connection.errors_occurred)
                except Exception:  # noqa: BLE001 - a task's own loop logs what it can handle
                    log.exception("helper task %s failed", name)
                finally:
                    if not clean:  # this thread ends: its connection goes with it
                        connection.close()
                    self.name = IDLE_NAME
                    done.set()
                if not clean or not self.cache.park(self):
                    return
        finally:
            connection.close()


class ThreadCache:
    """Threads that run one task at a time and wait for the next instead of ending."""

    def __init__(self, idle_seconds: Callable[[], float] = lambda: 60.0) -> None:
        self.idle_seconds = idle_seconds
        self._idle: list[_Helper] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def run(self, task: Callable[[], None], name: str) -> threading.Event:
        """Run `task` on an idle helper thread (a new one when none waits)."""
        done = threading.Event()
        with self._lock:
            if self._pid != os.getpid():  # a forked child: its parent's threads are not here
                self._idle, self._pid = [], os.getpid()
            helper = self._idle.pop() if self._idle else None
        if helper is None:
            _Helper(self, (task, name, done)).start()
        else:
            helper.inbox.put((task, name, done))
        return done

    def park(self, helper: _Helper) -> bool:
        """Keep `helper` for the next task; False when helpers are not kept (it ends)."""
        if self.idle_seconds() <= 0:
            return False
        with self._lock:
            if self._pid != os.getpid():
                return False
            self._idle.append(helper)
        return True

    def retire(self, helper: _Helper) -> bool:
        """May `helper`, idle past its time, end? Not when run() took it for a task meanwhile."""
        with self._lock:
            if helper in self._idle:
                self._idle.remove(helper)
                return True
            return False

    def close_idle(self, timeout: float = 10.0) -> None:
        """End the idle helpers now, closing their connections (a test database's teardown)."""
        with self._lock:
            helpers, self._idle = self._idle, []
        for helper in helpers:
            helper.inbox.put(None)
        for helper in helpers:
            helper.join(timeout)

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)
