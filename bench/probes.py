"""Bench-only timing probes: where does the time of a dispatch or an event go?

Installed by bench.jobkinds in every platform process (web, worker, the bench itself) when
ATELIER_BENCH_PROBE_DIR is set. They subscribe to the product's timing points
(workers/common/timing.py: nothing is rebound) and append one JSON line per timed call, with
wall-clock (time.time()) stamps, to a file per process. Cost: a few microseconds per call.

The what-ifs below (--what-if) are the exception: they try a product change before it is made,
so they replace product code on purpose.
"""

from __future__ import annotations

import json
import os
import threading

from bench._common import call_arg, probe_subscriber

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


def _consumer_fields(fields: dict) -> dict:
    message = call_arg(fields, 1, "message") or {}
    emits = [
        e["data"]["values"]["t_emit"]
        for e in message.get("events", [])
        if e.get("kind") == "metrics" and "t_emit" in e.get("data", {}).get("values", {})
    ]
    return {"t_send": message.get("sent_at"), "emits": emits}


def _on_execute_job(name: str, t0: float, t1: float, fields: dict) -> None:
    if name == "tasks.execute_job":
        job = int(call_arg(fields, 0, "job_id"))
        record("task_start", t=t0, job=job)  # written at the end; t is when the body started
        record("task_end", t0=t0, t1=t1, job=job)


# Timing point (workers/common/timing.py) -> (probe kind, its fields). The kinds are what
# bench/dispatch.py's breakdowns read.
PROBES = {
    # dispatch path (bench process) and claim (worker)
    "jobs.dispatch_waiting": (
        "dispatch",
        lambda f: {"project": f["kwargs"].get("project_id"), "sent": f["result"]},
    ),
    "jobs.send": ("send", lambda f: {"job": call_arg(f, 0, "job_id")}),
    "jobs.publish": ("publish", lambda f: {"task": RUN_TASK, "job": call_arg(f, 0, "job_id")}),
    "jobs.claim": (
        "claim",
        lambda f: {"job": f["kwargs"].get("job_id"), "ok": f["result"] is not None},
    ),
    "jobs.append_events": (
        "append",
        lambda f: {"job": f["kwargs"].get("job_id"), "n": len(f["kwargs"].get("events") or [])},
    ),
    # doorbells (job messages carry `sent_at` while timing is on: apps/jobs/events.ring_job)
    "jobs.ring": ("group_send", lambda f: {"group": call_arg(f, 0, "group")}),
    # web: each consumer's doorbell handler
    "jobs.consumer.job_events": ("consumer", _consumer_fields),
}
RUN_TASK = "atelier.run_job"  # apps.jobs.services.RUN_TASK, the one task jobs.publish sends


def install() -> None:
    global _probe_dir
    _probe_dir = os.environ.get("ATELIER_BENCH_PROBE_DIR", "")
    if not _probe_dir:
        return
    from workers.common import timing

    # subscribe() ignores a second subscription of the same callbacks (installed once per process)
    timing.subscribe(_on_timed)
    timing.subscribe(_on_execute_job)


_on_timed = probe_subscriber(PROBES, record)


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
        from workers.common.timing import timed

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

        events.ring = timed("jobs.ring")(send)  # still a timing point for the probes
