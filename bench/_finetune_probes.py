"""Bench-only timing probes (and what-ifs) for bench/finetune.py: where does a fine-tune's time go?

Imported in every platform process through ATELIER_JOB_KIND_MODULES=bench._finetune_probes (it
registers no job kind). When ATELIER_BENCH_FT_PROBE_DIR is set it subscribes to the product's
timing points (workers/common/timing.py) and appends one JSON line per timed call, with
wall-clock stamps (time.time()), to one file per process. Nothing here imports torch or
transformers: the Trainer.train probe is installed the first time the model loader returns
(transformers is then imported anyway).

What is still rebound, on purpose: transformers' own `Trainer.train` (third-party code, not the
product's; the probe adds a step-timing callback and an optional cProfile around it, which a
subscriber cannot do), and the background-flush what-if (a proposed change to JobReporter, tried
from the outside before it is made). Cost: microseconds per call.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time

from bench._common import call_arg, probe_subscriber

_dir = ""  # set by install(), from ATELIER_BENCH_FT_PROBE_DIR
_lock = threading.Lock()
_file = None


def record(kind: str, **fields) -> None:
    global _file
    line = json.dumps({"k": kind, "pid": os.getpid(), **fields}, default=str) + "\n"
    with _lock:
        if _file is None:
            _file = open(os.path.join(_dir, f"{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
        _file.write(line)


def read_all(probe_dir: str) -> list[dict]:
    out = []
    if not os.path.isdir(probe_dir):
        return out
    for name in sorted(os.listdir(probe_dir)):
        if name.endswith(".jsonl"):
            with open(os.path.join(probe_dir, name)) as f:
                out.extend(json.loads(line) for line in f if line.endswith("\n"))
    return out


def _step_timer():
    """A TrainerCallback keeping the wall time between consecutive optimizer steps' ends."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.last: float | None = None
            self.ms: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if self.last is not None:
                self.ms.append(round((now - self.last) * 1000, 3))
            self.last = now

    return StepTimes()


def wrap_trainer_train(record_fn=record) -> None:
    """Time Trainer.train: wall, the calling thread's CPU, the whole process's CPU, and each
    optimizer step (a callback added last; an on_log of step k counts in step k+1)."""
    from transformers import Trainer

    if getattr(Trainer.train, "__ft_probe__", False):
        return
    inner = Trainer.train

    @functools.wraps(inner)
    def train(self, *args, **kwargs):
        timer = _step_timer()
        self.add_callback(timer)
        profile_dir = os.environ.get("ATELIER_BENCH_FT_CPROFILE", "")
        profiler = None
        if profile_dir:  # --profile-train: cProfile the training thread (slows it: diagnosis only)
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0, c0, p0 = time.time(), time.thread_time(), time.process_time()
        try:
            return inner(self, *args, **kwargs)
        finally:
            t1, c1, p1 = time.time(), time.thread_time(), time.process_time()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(
                    os.path.join(profile_dir, f"train-{os.getpid()}-{int(t0)}.pstats")
                )
            self.remove_callback(timer)
            record_fn(
                "trainer.train",
                t0=t0,
                t1=t1,
                cpu=c1 - c0,
                process_cpu=p1 - p0,
                thread=threading.get_ident(),
                steps=self.state.global_step,
                step_ms=timer.ms,
            )

    train.__ft_probe__ = True
    Trainer.train = train


def _job(fields: dict) -> dict:
    return {"job": call_arg(fields, 0, "job_id")}


def _encoded(fields: dict) -> dict:
    return {"n": len(fields["result"].examples)}


# Timing point (workers/common/timing.py) -> (probe kind, its fields): what bench/finetune.py's
# breakdown reads.
PROBES = {
    "jobs.append_events": ("append", lambda f: {"n": len(f["kwargs"].get("events", ()))}),
    "jobs.ring_job": ("ring_job", None),
    "jobs.ring_project": ("ring_project", None),
    "jobs.claim": ("claim", _job),
    "jobs.finish": ("finish", _job),
    "tasks.execute_job": ("execute_job", _job),
    "finetunes.run": ("run_finetune", None),
    "models.model_folder": ("model_folder", None),
    "finetunes.publish_adapter": ("publish_adapter", None),
    "finetune.train_lora": ("train_lora", None),
    # The first call imports torch (train_lora's first heavy step).
    "finetune.resolve_precision": ("resolve_precision", None),
    "finetune.train_process": ("train_process", None),
    "finetune.load_model": ("load_model", None),
    "finetune.encode_rows": ("encode_rows", _encoded),
    "finetune.eval": ("eval", lambda f: {"which": call_arg(f, 1, "suffix") or "?"}),
    "finetune.checkpoint_marker": ("checkpoint_marker", None),
    "finetune.model_card": ("model_card", None),
    "finetune.zip": ("zip", None),
    "finetune.write_json": ("write_json", None),
}

_on_timed = probe_subscriber(PROBES, record, cpu=True)


def _on_flush(name: str, t0: float, t1: float, fields: dict) -> None:
    # Recorded whether or not the flush raised (as the JobReporter retries it inline).
    if name == "reporter.flush":
        record("flush", t0=t0, t1=t1, cpu=fields["cpu"], n=fields["n"], thread=fields["thread"])


def _after_load_model(name: str, t0: float, t1: float, fields: dict) -> None:
    if name == "finetune.load_model" and not fields.get("raised"):
        wrap_trainer_train()  # transformers is imported by now


def install() -> None:
    global _dir
    _dir = os.environ.get("ATELIER_BENCH_FT_PROBE_DIR", "")
    if not _dir:
        return
    from workers.common import timing

    for callback in (_on_timed, _on_flush, _after_load_model):
        timing.subscribe(callback)  # a second subscription of the same callback is ignored


def install_background_flush() -> None:
    """WHAT-IF (bench only, ATELIER_BENCH_FT_WHATIF=background-flush): the JobReporter's periodic
    flushes run in a per-job writer thread instead of the training thread. step()/log() only
    append to the buffer and wake the writer; forced flushes (the last step, previews, artifacts)
    stay inline. A per-reporter lock keeps flushes whole and in order. The writer exits (closing
    its DB connection) after 2 s without work."""
    from django.db import connection

    from workers.tasks.reporter import JobReporter

    if getattr(JobReporter, "__ft_background__", False):
        return
    inner_maybe, inner_flush = JobReporter._maybe_flush, JobReporter.flush

    def flush(self):
        lock = self.__dict__.setdefault("_ft_flush_lock", threading.Lock())
        with lock:
            return inner_flush(self)

    def writer(self, wake: threading.Event) -> None:
        try:
            while wake.wait(timeout=2.0):
                wake.clear()
                try:
                    self.flush()
                except Exception:  # the inline final flush retries what is left
                    pass
        finally:
            with self._lock:
                if self.__dict__.get("_ft_writer") is threading.current_thread():
                    self.__dict__.pop("_ft_writer", None)
            connection.close()

    def _maybe_flush(self, force: bool = False) -> None:
        if force:
            return inner_maybe(self, force=True)
        if self.clock() - self._last_flush < self.min_interval:
            return
        with self._lock:
            self._last_flush = self.clock()  # claimed: the writer flushes now
            wake = self.__dict__.setdefault("_ft_wake", threading.Event())
            thread = self.__dict__.get("_ft_writer")
            if thread is None or not thread.is_alive():
                wake.clear()
                thread = threading.Thread(
                    target=writer, args=(self, wake), name="ft-bench-flush", daemon=True
                )
                self.__dict__["_ft_writer"] = thread
                thread.start()
        wake.set()

    JobReporter.flush = flush
    JobReporter._maybe_flush = _maybe_flush
    JobReporter.__ft_background__ = True


def install_whatifs() -> None:
    wanted = {w for w in os.environ.get("ATELIER_BENCH_FT_WHATIF", "").split(",") if w}
    if "background-flush" in wanted:
        install_background_flush()


install_whatifs()  # first, so the probes wrap what the what-ifs installed
install()
