"""What a long-lived process does once it has started: keep its startup objects away from the
cyclic garbage collector."""

from __future__ import annotations

import gc

# Allocations between two young collections of the web process (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def load_url_patterns() -> None:
    """Import the URLconf, every view module it names, and the reverse lookup tables now, as
    the process starts, rather than in its first request: Django loads them lazily, so the
    first request after every (re)start paid for ~190 imports, and the ~45,000 objects they
    made missed the freeze below and were walked by every full collection after it."""
    from django.urls import get_resolver  # noqa: PLC0415

    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018 - imports the URLconf and its views
    resolver.reverse_dict  # noqa: B018 - what reverse() would build on its first call


def freeze_startup_objects() -> None:
    """Collect once, then freeze what is alive (gc.freeze): modules, settings, URL patterns,
    API schemas, the Celery app. They live as long as the process, yet every full collection
    walked them all: ~135,000 objects in the web process, 80-125 ms per full collection, which
    ran a few times in 20 API requests and stalled each request it fell into (bench/api.py's
    p99 time to first token). Frozen objects are never collected by the cycle collector (they
    are all alive now, and reference counting still frees what stops being used), so a full
    collection then walks only what was made since. Called by the ASGI entry after the app is
    built and by a Celery worker when it is ready; not after a model load (a model evicted from
    the cache later must stay collectable)."""
    gc.collect()
    gc.freeze()


def tune_collector() -> None:
    """A web process serving many sockets: young collections every YOUNG_THRESHOLD allocations
    instead of 700. A doorbell's fan-out to 1,000 sockets allocates far more than 700 objects
    that live only until its sends are done (handles, frames, coroutine state); a young
    collection in the middle of it promoted them, and every promotion brought the next full
    collection nearer: 5-7 full collections of 60-215 ms each (the whole heap, ~170-330 objects
    per socket) in a bench/dispatch.py run at 1,000 clients, each a stall of every socket. With
    50,000: none after startup (2 runs of 2; `--what-if web-gc-log` shows them). Cyclic garbage is
    still collected, at most 50,000 allocations later."""
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
