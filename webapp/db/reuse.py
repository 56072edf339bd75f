"""Connections kept for the next request: what CONN_MAX_AGE cannot do under ASGI.

Under ASGI, Django's connections belong to a request's context, not to a thread, so every
request opens a new database connection and CONN_MAX_AGE keeps nothing (Django's docs: disable
persistent connections under ASGI). Opening one costs ~0.8-1.5 ms on SQLite (the file, the WAL
index, Django's SQL functions and PRAGMAs) and ~4 ms on PostgreSQL (a server process starts),
on every page, API call and websocket check (bench/api.py's "request sent -> job row").

So a connection that a request (or a Celery task, or anything else) closes cleanly goes back to
a small per-process list of idle connections instead, and the next connection opened in that
process takes one from it. Kept only when nothing is pending on it: outside any atomic block,
no transaction open on the raw connection, no database error seen on it, not older than
MAX_AGE_SECONDS. On PostgreSQL a connection taken from the list answers a `SELECT 1` first
(a restarted server leaves dead sockets behind; they are dropped, not handed to a request).
An in-memory SQLite database is never shared this way. A forked child never takes its
parent's connections (the list is per process id).

This is an idle cache, not a pool: it never makes anyone wait and never limits how many
connections exist; it only saves the connect of the next request. Settings keep CONN_MAX_AGE at 0,
so Django closes (here: gives back) each connection when its request or task ends.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

MAX_IDLE = 8  # per process and database
MAX_AGE_SECONDS = 300.0

_lock = threading.Lock()
_idle: dict[tuple, list[tuple[Any, float, Any]]] = {}


def _key(wrapper) -> tuple:
    s = wrapper.settings_dict
    return (
        os.getpid(),
        wrapper.vendor,
        str(s.get("NAME")),
        str(s.get("HOST")),
        str(s.get("PORT")),
        str(s.get("USER")),
    )


def idle_count(wrapper) -> int:
    """How many idle connections this process keeps for `wrapper`'s database (tests)."""
    with _lock:
        return len(_idle.get(_key(wrapper), ()))


def drop_idle() -> None:
    """Close every idle connection of this process (before a test database is destroyed)."""
    with _lock:
        lists = list(_idle.values())
        _idle.clear()
    for entries in lists:
        for raw, _, _ in entries:
            _close_quietly(raw)


class ReuseConnections:
    """Mixin for a Django DatabaseWrapper (before the backend's own class in the bases)."""

    _opened_at: float = 0.0
    _identity: Any = None

    # ---- what each backend says about its raw connection
    def _raw_idle(self, raw: Any) -> bool:
        raise NotImplementedError

    def _raw_alive(self, raw: Any) -> bool:
        return True

    def _database_identity(self) -> Any:
        """What says the database is still the one a kept connection opened (SQLite: the
        file's device and inode, so a file replaced by a restore is opened anew)."""
        return None

    def _shareable(self) -> bool:
        return True

    # ---- Django's hooks
    def get_new_connection(self, conn_params):
        if self._shareable():
            now = time.monotonic()
            identity = self._database_identity()
            while True:
                with _lock:
                    entries = _idle.get(_key(self))
                    entry = entries.pop() if entries else None
                if entry is None:
                    break
                raw, opened_at, opened_identity = entry
                if (
                    now - opened_at < MAX_AGE_SECONDS
                    and opened_identity == identity
                    and self._raw_alive(raw)
                ):
                    self._opened_at, self._identity = opened_at, opened_identity
                    return raw
                _close_quietly(raw)
        raw = super().get_new_connection(conn_params)  # type: ignore[misc]
        self._opened_at = time.monotonic()
        self._identity = self._database_identity()
        return raw

    def _close(self):
        raw = self.connection  # type: ignore[attr-defined]
        if raw is not None and self._keepable(raw):
            with _lock:
                entries = _idle.setdefault(_key(self), [])
                if len(entries) < MAX_IDLE:
                    entries.append((raw, self._opened_at, self._identity))
                    return None
        return super()._close()  # type: ignore[misc]

    def _keepable(self, raw: Any) -> bool:
        return (
            self._shareable()
            and not self.in_atomic_block  # type: ignore[attr-defined]
            and not self.needs_rollback  # type: ignore[attr-defined]
            and not self.errors_occurred  # type: ignore[attr-defined]
            and self.get_autocommit()  # type: ignore[attr-defined]
            and time.monotonic() - self._opened_at < MAX_AGE_SECONDS
            and self._raw_idle(raw)
        )


def _close_quietly(raw: Any) -> None:
    try:
        raw.close()
    except Exception:  # noqa: BLE001, S110 - a dead connection: nothing to do
        pass
