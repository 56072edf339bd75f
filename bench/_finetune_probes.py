"""Bench-only timing probes (and what-ifs) for bench/finetune.py: where does a fine-tune's time go?

Imported in every platform process through ATELIER_JOB_KIND_MODULES=bench._finetune_probes (it
registers no job kind). When ATELIER_BENCH_FT_PROBE_DIR is set it wraps product functions from
the outside (the product code is untouched) and appends one JSON line per call, with wall-clock
stamps (time.time()), to one file per process. Nothing here imports torch or transformers: the
Trainer.train probe is installed the first time the model loader returns (transformers is then
imported anyway). Cost: microseconds per call.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time

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


def _timed(kind: str, fn, describe=None, after=None):
    if getattr(fn, "__ft_probe__", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.time()
        c0 = time.thread_time()
        try:
            result = fn(*args, **kwargs)
        finally:
            t1 = time.time()
            c1 = time.thread_time()
        extra = describe(args, kwargs, result) if describe else {}
        record(kind, t0=t0, t1=t1, cpu=c1 - c0, thread=threading.get_ident(), **extra)
        if after is not None:
            after()
        return result

    wrapper.__ft_probe__ = True
    return wrapper


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


def install() -> None:
    global _dir
    _dir = os.environ.get("ATELIER_BENCH_FT_PROBE_DIR", "")
    if not _dir:
        return
    from apps.finetunes import services as ft_services
    from apps.jobs import services as job_services
    from workers.ml import finetune
    from workers.ml.finetune import callbacks as ft_callbacks
    from workers.ml.finetune import run as ft_run
    from workers.ml.finetune import train as ft_train
    from workers.tasks import reporter as job_reporter
    from workers.tasks import runtime

    if getattr(ft_services.run_finetune, "__ft_probe__", False):
        return

    def job_of(a, k, r):
        return {"job": k.get("job_id", a[0] if a else None)}

    from apps.jobs import events as doorbell

    job_services.job_append_events = _timed(
        "append", job_services.job_append_events, lambda a, k, r: {"n": len(k.get("events", ()))}
    )
    doorbell.ring_job = _timed("ring_job", doorbell.ring_job)
    doorbell.ring_project = _timed("ring_project", doorbell.ring_project)
    job_services.job_claim = _timed("claim", job_services.job_claim, job_of)
    job_services.job_finish = _timed("finish", job_services.job_finish, job_of)
    runtime.execute_job = _timed("execute_job", runtime.execute_job, job_of)
    ft_services.run_finetune = _timed("run_finetune", ft_services.run_finetune)
    ft_services.model_folder = _timed("model_folder", ft_services.model_folder)
    ft_services.publish_adapter = _timed("publish_adapter", ft_services.publish_adapter)
    # Each function is wrapped where its caller looks it up (the package's modules import names).
    finetune.train_lora = _timed("train_lora", finetune.train_lora)
    # The first call imports torch (train_lora's first heavy step).
    ft_run.resolve_precision = _timed("resolve_precision", ft_run.resolve_precision)
    ft_run.train_process = _timed("train_process", ft_run.train_process)
    ft_train.load_base_model = _timed(
        "load_model", ft_train.load_base_model, after=wrap_trainer_train
    )
    ft_train.encode_rows = _timed(
        "encode_rows", ft_train.encode_rows, lambda a, k, r: {"n": len(r.examples)}
    )
    ft_train.eval_metrics = _timed(
        "eval", ft_train.eval_metrics, lambda a, k, r: {"which": a[1] if len(a) > 1 else "?"}
    )
    ft_callbacks.mark_complete = _timed("checkpoint_marker", ft_callbacks.mark_complete)
    ft_run.write_model_card = _timed("model_card", ft_run.write_model_card)
    ft_run.zip_folder = _timed("zip", ft_run.zip_folder)
    ft_run.write_json = _timed("write_json", ft_run.write_json)
    ft_train.write_json = _timed("write_json", ft_train.write_json)

    cls = job_reporter.JobReporter
    inner_flush = cls.flush

    @functools.wraps(inner_flush)
    def flush(self):
        n = len(self._buffer)
        t0, c0 = time.time(), time.thread_time()
        try:
            return inner_flush(self)
        finally:
            record(
                "flush",
                t0=t0,
                t1=time.time(),
                cpu=time.thread_time() - c0,
                n=n,
                thread=threading.get_ident(),
            )

    flush.__ft_probe__ = True
    cls.flush = flush


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
