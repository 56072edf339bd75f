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
import random
import threading

from bench._common import call_arg, probe_subscriber

_probe_dir = ""  # set by install(), from ATELIER_BENCH_PROBE_DIR
_lock = threading.Lock()
_file = None
_pending: list[str] = []
FLUSH_EVERY = 0.1  # seconds; bench/dispatch.py waits longer than this before reading


def record(kind: str, **fields) -> None:
    """Queue one probe line; a thread writes them out every FLUSH_EVERY. (A write per record cost
    the web process a syscall per socket per doorbell: at 1,000 sockets, a quarter of its CPU.)"""
    line = json.dumps({"k": kind, "pid": os.getpid(), **fields}) + "\n"
    with _lock:
        if _file is None:
            _open()
        _pending.append(line)


def _open() -> None:
    global _file
    _file = open(os.path.join(_probe_dir, f"{os.getpid()}.jsonl"), "a")  # noqa: SIM115
    threading.Thread(target=_flusher, name="bench-probes", daemon=True).start()
    import atexit

    atexit.register(flush)


def flush() -> None:
    with _lock:
        lines = _pending[:]
        _pending.clear()
        if lines and _file is not None:
            _file.write("".join(lines))
            _file.flush()


def _flusher() -> None:
    import time

    while True:
        time.sleep(FLUSH_EVERY)
        flush()


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
}
# web: each consumer's doorbell handler, for one socket in CONSUMER_SAMPLE (_on_consumer): a
# record per socket per doorbell would cost the web process more than the fan-out it measures.
CONSUMER_SAMPLE = 10
_sampled: dict[int, bool] = {}  # socket (consumer id) -> recorded or not, drawn once


def _on_consumer(name: str, t0: float, t1: float, fields: dict) -> None:
    if name != "jobs.consumer.job_events" or fields.get("raised"):
        return
    key = id(call_arg(fields, 0, "self"))
    if key not in _sampled:
        _sampled[key] = random.random() < 1 / CONSUMER_SAMPLE
    if not _sampled[key]:
        return
    record("consumer", t0=t0, t1=t1, **_consumer_fields(fields))


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
    timing.subscribe(_on_consumer)


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
    if "sqlite-no-autocheckpoint" in wanted:
        # SQLite copies the WAL back into the database (a checkpoint, with fsyncs) inside the
        # COMMIT that crosses 1,000 WAL pages, in whichever process commits: 1 commit in ~100
        # then takes milliseconds. Off in every process (a bench is short; the product would
        # checkpoint from the scheduler instead).
        from django.db.backends.signals import connection_created

        def no_autocheckpoint(sender, connection, **kwargs):
            if connection.vendor == "sqlite":
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA wal_autocheckpoint=0")

        connection_created.connect(no_autocheckpoint, weak=False)
    if "web-gc-freeze" in wanted:
        import sys

        if "uvicorn" in sys.argv[0]:
            # Is the fan-out's tail the collector walking 1,000 sockets' long-lived objects (a
            # full collection)? Move whatever exists into the permanent generation every 2 s.
            import gc
            import time

            def freeze() -> None:
                while True:
                    time.sleep(2)
                    gc.freeze()

            threading.Thread(target=freeze, name="bench-gc-freeze", daemon=True).start()
    if "web-gc-log" in wanted:
        import sys

        if "uvicorn" in sys.argv[0]:
            # Not a change: a line per full collection of the web process on its stderr (the
            # run's logs/, with --keep): how long, how many objects it walked, what it freed.
            import gc
            import time

            started: list[float] = []

            def log_full_collections(phase: str, info: dict) -> None:
                if info["generation"] != 2:
                    return
                if phase == "start":
                    started[:] = [time.perf_counter()]
                    return
                print(
                    f"web full collection: {1000 * (time.perf_counter() - started[0]):.1f} ms, "
                    f"{len(gc.get_objects())} objects tracked, {gc.get_freeze_count()} frozen, "
                    f"{info['collected']} collected, at {time.time():.3f}",
                    file=sys.stderr,
                    flush=True,
                )

            gc.callbacks.append(log_full_collections)
    if "no-doorbells" in wanted:
        # What the doorbells cost the processes that ring them (browsers get nothing live).
        from apps.jobs import events

        events.ring = lambda group, message: None
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
