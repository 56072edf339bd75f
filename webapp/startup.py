"""What a long-lived process does once it has started: keep its startup objects away from the
cyclic garbage collector."""

from __future__ import annotations

import gc


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
