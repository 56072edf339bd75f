"""What the end-to-end benchmarks share: logging, small statistics, process CPU, and stopping
their processes and removing their temp dir."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path


def ms(seconds: float) -> float:
    return seconds * 1000.0


def ts(value) -> float:
    """A datetime as Unix seconds; NaN for a stamp the platform did not leave."""
    return value.timestamp() if value is not None else math.nan


def run_bench(name: str, bench, body) -> int:
    """Run `body()` (it returns the report text) with SIGTERM/SIGINT turned into a clean stop,
    always clean up `bench`, and print the report or one `RESULT <name> FAILED (...)` line.
    Returns the exit status."""
    import traceback

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    error, text = None, ""
    try:
        text = body()
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        print(bench.log_tails(), file=sys.stderr)
    finally:
        say("cleaning up")
        bench.cleanup()
    if error:
        print(f"RESULT {name} FAILED ({error.splitlines()[0][:200]})")
        return 130 if error == "interrupted" else 1
    print(text, flush=True)
    return 0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0.0 where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def stop_everything(*, children, procs, redis_proc, tmp: Path, keep: bool) -> None:
    """Kill child subprocesses, the platform processes and the embedded Redis; remove ``tmp``
    unless ``keep``. Safe to call twice, and after a failed start."""
    for proc in children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    if procs is not None:
        try:
            procs.stop_all()
        except Exception:
            for proc in procs.procs.values():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    if redis_proc is not None:
        redis_proc.kill()
        redis_proc.wait(timeout=10)
    try:
        from django.db import connections

        connections.close_all()
    except Exception:
        pass
    if keep:
        say(f"kept {tmp}")
        return
    for _ in range(3):
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            break
        time.sleep(0.5)
    else:
        say(f"could not remove {tmp}")


def bench_policy(**overrides) -> None:
    """Lift the platform's per-user and per-project caps and the concurrency ceiling for a
    benchmark that submits hundreds of jobs as one user (apps/quotas; after django.setup())."""
    from apps.quotas.models import PlatformPolicy
    from apps.quotas.services import forget_policy

    values = {
        "project_concurrency_ceiling": 100_000,
        "user_active_jobs": 1_000_000,
        "project_active_jobs": 1_000_000,
        **overrides,
    }
    PlatformPolicy.objects.update_or_create(pk=1, defaults=values)
    forget_policy()


# ---------------------------------------------------------------------------- timing probes


def call_arg(fields: dict, index: int, name: str):
    """An argument of a call timed by a `@timed` decorator (workers/common/timing.py), by keyword
    or by position."""
    kwargs = fields.get("kwargs") or {}
    if name in kwargs:
        return kwargs[name]
    args = fields.get("args") or ()
    return args[index] if len(args) > index else None


def probe_subscriber(probes: dict, record, *, cpu: bool = False):
    """A workers.common.timing subscriber that turns the product's timing points into probe
    records: `probes` maps a timing point's name to (probe kind, describe(fields) -> dict or
    None); each successful timed call becomes `record(kind, t0=, t1=, [cpu=, thread=,] **extra)`.
    Calls that raised are not recorded."""

    def on_timed(name: str, t0: float, t1: float, fields: dict) -> None:
        probe = probes.get(name)
        if probe is None or fields.get("raised"):
            return
        kind, describe = probe
        extra = describe(fields) if describe is not None else {}
        if cpu:
            extra = {"cpu": fields.get("cpu"), "thread": fields.get("thread"), **extra}
        record(kind, t0=t0, t1=t1, **extra)

    return on_timed


class JsonlProbes:
    """Probe records of one process, one JSON line each, in `<$env>/<pid>.jsonl` (a bench's child
    or a worker that loads the bench's probes); the file is opened on the first record."""

    def __init__(self, env: str):
        self.env = env
        self._lock = threading.Lock()
        self._file = None

    def record(self, kind: str, **fields) -> None:
        line = json.dumps({"k": kind, "pid": os.getpid(), **fields}, default=str) + "\n"
        with self._lock:
            if self._file is None:
                path = os.path.join(os.environ[self.env], f"{os.getpid()}.jsonl")
                self._file = open(path, "a", buffering=1)  # noqa: SIM115
            self._file.write(line)


def read_probes(probe_dir: str | os.PathLike) -> list[dict]:
    """Every record the processes wrote into `probe_dir` (JsonlProbes)."""
    out: list[dict] = []
    folder = Path(probe_dir)
    if folder.is_dir():
        for f in sorted(folder.glob("*.jsonl")):
            out.extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
    return out


ROOT = Path(__file__).resolve().parent.parent


def isolated_environment(tmp: Path, *, redis_url: str, channel_prefix: str) -> dict[str, str]:
    """The settings of a bench run of its own: a SQLite database, Redis, var/ folders and
    channel prefix under `tmp`, offline model hubs, the repository on PYTHONPATH."""
    return {
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "DATABASE_URL": f"sqlite:///{(tmp / 'bench.sqlite3').resolve()}",
        "REDIS_URL": redis_url,
        "ATELIER_VAR_DIR": str(tmp / "var"),
        "ATELIER_MEDIA_ROOT": str(tmp / "media"),
        "ATELIER_JOBS_DIR": str(tmp / "jobs"),
        "ATELIER_MODELS_DIR": str(tmp / "var" / "models"),
        "ATELIER_CHANNEL_PREFIX": channel_prefix,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def probed_worker_env(env: dict[str, str], *, probe_env: str, probe_dir: Path, module: str):
    """The worker's environment: one torch thread, the bench's timing probes loaded through
    ATELIER_JOB_KIND_MODULES."""
    return {
        **env,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "ATELIER_JOB_KIND_MODULES": module,
        probe_env: str(probe_dir),
    }


def without_probes(env: dict[str, str], probe_env: str) -> dict[str, str]:
    """`env` less the probes: for the bench's plain subprocesses (no Django there)."""
    return {k: v for k, v in env.items() if k not in (probe_env, "ATELIER_JOB_KIND_MODULES")}
