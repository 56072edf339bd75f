"""Bench-only timing probes: where does the time of a dispatch or an event go?

Installed by bench.jobkinds in every platform process (web, worker, the bench itself) when
ATELIER_BENCH_PROBE_DIR is set. They wrap product functions from the outside (the product code is
untouched) and append one JSON line per call, with wall-clock (time.time()) stamps, to a file per
process. Cost: a few microseconds per call.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time

_probe_dir = ""  # set by install(), from ATELIER_BENCH_PROBE_DIR
_lock = threading.Lock()
_file = None


def record(kind: str, **fields) -> None:
    global _file
    line = json.dumps({"k": kind, "pid": os.getpid(), **fields}) + "\n"
    with _lock:
        if _file is None:
            _file = open(os.path.join(_probe_dir, f"{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
        _file.write(line)


def read_all(probe_dir: str) -> list[dict]:
    out = []
    for name in sorted(os.listdir(probe_dir)):
        if name.endswith(".jsonl"):
            with open(os.path.join(probe_dir, name)) as f:
                for line in f:
                    if line.endswith("\n"):
                        out.append(json.loads(line))
    return out


def _timed(kind: str, fn, describe):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.time()
        try:
            result = fn(*args, **kwargs)
        finally:
            t1 = time.time()
        record(kind, t0=t0, t1=t1, **describe(args, kwargs, result))
        return result

    wrapper.__bench_probe__ = True
    return wrapper


def install() -> None:
    global _probe_dir
    _probe_dir = os.environ.get("ATELIER_BENCH_PROBE_DIR", "")
    if not _probe_dir:
        return
    from apps.jobs import events, services

    if getattr(services.job_claim, "__bench_probe__", False):
        return  # already installed in this process

    # --- dispatch path (bench process) and claim (worker)
    services.dispatch_waiting = _timed(
        "dispatch",
        services.dispatch_waiting,
        lambda a, k, r: {"project": k.get("project_id"), "sent": r},
    )
    services._send = _timed(
        "send", services._send, lambda a, k, r: {"job": a[0] if a else k.get("job_id")}
    )
    services.job_claim = _timed(
        "claim", services.job_claim, lambda a, k, r: {"job": k.get("job_id"), "ok": r is not None}
    )
    services.job_append_events = _timed(
        "append",
        services.job_append_events,
        lambda a, k, r: {"job": k.get("job_id"), "n": len(k.get("events") or [])},
    )

    from webapp.celery import app

    send_task = app.send_task

    def probed_send_task(name, args=None, *rest, **kwargs):
        t0 = time.time()
        try:
            return send_task(name, args, *rest, **kwargs)
        finally:
            record("publish", t0=t0, t1=time.time(), task=name, job=(args or [None])[0])

    app.send_task = probed_send_task

    # --- doorbell: time each group_send, and stamp job messages so the consumer can time transit
    orig_send = events.ring

    def probed_send(group: str, message: dict) -> None:
        t0 = time.time()
        if message.get("type") == "job.events":
            message["bench_t_send"] = t0  # consumers ignore unknown keys
        try:
            orig_send(group, message)
        finally:
            record("group_send", t0=t0, t1=time.time(), group=group)

    events.ring = probed_send

    # --- worker: when the task body starts
    from workers.tasks import runtime

    orig_execute = runtime.execute_job

    def probed_execute(job_id, *, worker_id):
        t0 = time.time()
        record("task_start", t=t0, job=int(job_id))
        try:
            return orig_execute(job_id, worker_id=worker_id)
        finally:
            record("task_end", t0=t0, t1=time.time(), job=int(job_id))

    runtime.execute_job = probed_execute

    # --- web: when each consumer gets the doorbell, and how long it takes to forward it
    from apps.jobs.consumers import JobConsumer

    orig_job_events = JobConsumer.job_events

    async def probed_job_events(self, message):
        t0 = time.time()
        await orig_job_events(self, message)
        emits = [
            e["data"]["values"]["t_emit"]
            for e in message.get("events", [])
            if e.get("kind") == "metrics" and "t_emit" in e.get("data", {}).get("values", {})
        ]
        record("consumer", t0=t0, t1=time.time(), t_send=message.get("bench_t_send"), emits=emits)

    JobConsumer.job_events = probed_job_events


def install_web_profiler() -> None:
    """With ATELIER_BENCH_CPROFILE=<path>, the uvicorn process profiles its main thread (the event
    loop) between SIGUSR1 (start) and SIGUSR2 (stop and write pstats to <path>)."""
    import signal
    import sys

    path = os.environ.get("ATELIER_BENCH_CPROFILE", "")
    if (
        not path
        or "uvicorn" not in sys.argv[0]
        or threading.current_thread() is not threading.main_thread()
    ):
        return
    import cProfile

    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

    def stop(*_):
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR2, stop)


def install_whatifs() -> None:
    """ATELIER_BENCH_WHATIF=a,b: try a product change from the outside, to measure it before
    proposing it. Bench-only; never used by `make bench` unless asked for (--what-if)."""
    wanted = {w.strip() for w in os.environ.get("ATELIER_BENCH_WHATIF", "").split(",") if w.strip()}
    if "pubsub-layer" in wanted:
        # channels_redis' RedisPubSubChannelLayer: group_send is one PUBLISH, and each web process
        # gets a doorbell once and hands it to its consumers' queues (no per-process receive lock
        # dance). At-most-once: fine here, the consumer fills gaps from the database.
        from django.conf import settings

        settings.CHANNEL_LAYERS["default"]["BACKEND"] = (
            "channels_redis.pubsub.RedisPubSubChannelLayer"
        )
    if "consumer-no-db-hop" in wanted:
        # channels' dispatch() hops to the one thread-sensitive executor thread
        # (aclose_old_connections) before *every* handler, for every consumer: 100 serialized
        # thread hops per doorbell. JobConsumer.job_events needs no DB unless it fills a gap, and
        # that goes through database_sync_to_async, which closes old connections itself.
        from channels.consumer import get_handler_name

        from apps.jobs.consumers import JobConsumer

        orig_dispatch = JobConsumer.dispatch

        async def dispatch(self, message):
            if message.get("type") == "job.events":
                return await getattr(self, get_handler_name(message))(message)
            return await orig_dispatch(self, message)

        JobConsumer.dispatch = dispatch
    if "doorbell-loop" in wanted:
        # async_to_sync(group_send) from a sync thread builds an event loop and a Redis
        # connection per call; one long-lived loop thread reuses its connection.
        import asyncio

        from channels.layers import get_channel_layer

        from apps.jobs import events

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="bench-doorbell-loop", daemon=True).start()

        def send(group: str, message: dict) -> None:
            layer = get_channel_layer()
            if layer is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(
                    timeout=5
                )
            except Exception:
                events.log.warning("could not notify %s", group, exc_info=True)

        events.ring = send
