"""Named timing points for benchmarks and diagnosis: `timed(name)` around a piece of work.

The product marks the work worth timing (a dispatch, a claim, a flush, a model load, a pipeline
stage) with `timed("jobs.claim")`, as a context manager or a decorator. Nothing is measured until
someone calls `subscribe(callback)` in that process (the benches do, from a job-kind module);
then each timed call ends with `callback(name, t0, t1, fields)`, where t0/t1 are wall-clock
`time.time()` stamps (comparable across processes) and `fields` holds what the timing point
offers plus `cpu` (the calling thread's CPU seconds) and `thread` (its id). The decorator form
offers `args`, `kwargs` and `result` (None when the call raised); the context-manager form
offers the keyword arguments given to `timed(...)` and whatever the block adds with
`span.note(...)`. Both add `raised` (True when the call or block ended with an exception).

With no subscriber, a timed call costs one check of a module global (tens of nanoseconds; see
bench/dispatch.py's "timing hook" line). Subscribers run on the timed thread, so they must be
quick and must not raise (an exception in one is logged and swallowed). Pure: no Django.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Subscriber = Callable[[str, float, float, dict[str, Any]], None]

# A tuple replaced whole on (un)subscribe: readers never lock, and "nobody listens" is one
# truth test of a module global.
_subscribers: tuple[Subscriber, ...] = ()
_lock = threading.Lock()


def subscribe(callback: Subscriber) -> None:
    """Call `callback(name, t0, t1, fields)` after every timed call in this process."""
    global _subscribers
    with _lock:
        if callback not in _subscribers:
            _subscribers = (*_subscribers, callback)


def unsubscribe(callback: Subscriber) -> None:
    global _subscribers
    with _lock:
        _subscribers = tuple(s for s in _subscribers if s is not callback)


def enabled() -> bool:
    """True when someone listens: lets a timing point skip work done only for its subscribers."""
    return bool(_subscribers)


def _publish(name: str, t0: float, t1: float, fields: dict[str, Any]) -> None:
    for callback in _subscribers:
        try:
            callback(name, t0, t1, fields)
        except Exception:  # a broken probe must never break the work it times
            log.warning("timing subscriber failed on %s", name, exc_info=True)


class _Off:
    """What `with timed(...)` gives when nobody listens: does nothing."""

    enabled = False
    fields: dict[str, Any] = {}

    def note(self, **fields: Any) -> None:
        pass

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()


class _Span:
    enabled = True
    __slots__ = ("name", "fields", "t0", "c0")

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.name = name
        self.fields = fields

    def note(self, **fields: Any) -> None:
        """Add fields for the subscribers (counts, ids, outcomes known inside the block)."""
        self.fields.update(fields)

    def __enter__(self) -> _Span:
        self.t0 = time.time()
        self.c0 = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        t1 = time.time()
        self.fields["raised"] = exc[0] is not None
        self.fields["cpu"] = time.thread_time() - self.c0
        self.fields["thread"] = threading.get_ident()
        _publish(self.name, self.t0, t1, self.fields)


class timed:  # noqa: N801 - used like a function: `with timed("x"):` / `@timed("x")`
    """A timing point named `name`: `with timed(name, **fields) as span:` or `@timed(name)`."""

    __slots__ = ("name", "fields", "_span")

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        self.fields = fields
        self._span: _Span | _Off = _OFF

    def __enter__(self) -> _Span | _Off:
        # The context-manager form: a real span only when someone listens.
        if not _subscribers:
            self._span = _OFF
            return _OFF
        span = _Span(self.name, dict(self.fields))
        self._span = span
        return span.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._span.__exit__(*exc)

    def __call__(self, fn: Callable) -> Callable:
        name, static = self.name, self.fields
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                if not _subscribers:
                    return await fn(*args, **kwargs)
                t0, c0, result, raised = time.time(), time.thread_time(), None, True
                try:
                    result = await fn(*args, **kwargs)
                    raised = False
                    return result
                finally:
                    _finish(name, static, t0, c0, args, kwargs, result, raised)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _subscribers:
                return fn(*args, **kwargs)
            t0, c0, result, raised = time.time(), time.thread_time(), None, True
            try:
                result = fn(*args, **kwargs)
                raised = False
                return result
            finally:
                _finish(name, static, t0, c0, args, kwargs, result, raised)

        return wrapper


def _finish(name, static, t0, c0, args, kwargs, result, raised) -> None:
    t1 = time.time()
    fields = {
        **static,
        "args": args,
        "kwargs": kwargs,
        "result": result,
        "raised": raised,
        "cpu": time.thread_time() - c0,
        "thread": threading.get_ident(),
    }
    _publish(name, t0, t1, fields)
