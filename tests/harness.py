"""Real processes for integration tests and benchmarks: Redis, Celery workers, uvicorn, scheduler.

Spawning, the command lines and the port/Redis probes are the product's (apps/core/processes.py,
shared with `manage.py runplatform`); this keeps the tests' handle on them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from apps.core import processes
from apps.core.processes import ROOT, free_port, start_embedded_redis

__all__ = [
    "ROOT",
    "Processes",
    "database_url_for",
    "free_port",
    "redis_answers",
    "start_embedded_redis",
]


def redis_answers(url: str) -> bool:
    return processes.redis_answers(url, timeout=0.5)


def database_url_for(settings_dict: dict) -> str:
    """A DATABASE_URL for another process to reach the same (test) database."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class Processes:
    """Start and stop platform processes against a given database and Redis."""

    def __init__(self, *, env: dict[str, str], log_dir: Path):
        # One torch thread per process: on a 2-core machine running the test process, a worker and a
        # web server, torch's thread pools fight for the cores and a tiny step takes 100x longer.
        self.env = {"OMP_NUM_THREADS": "1", **os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        """Start `cmd` as the process `name` (log in `<log_dir>/<name>.log`)."""
        proc = processes.spawn(name, cmd, env=self.env, log_dir=self.log_dir)
        self.procs[name] = proc
        return proc

    def worker(
        self,
        name: str = "worker",
        queues: str = "gpu,cpu,chain",
        concurrency: int = 1,
        wait: bool = True,
    ) -> subprocess.Popen:
        proc = self.spawn(
            name,
            processes.celery_worker_cmd(
                queues,
                node=f"{name}-{os.getpid()}@%h",
                concurrency=concurrency,
                heartbeat=False,
            ),
        )
        if wait:
            self.wait_log(name, "ready.", timeout=60)
        return proc

    def web(self, port: int | None = None) -> str:
        port = port or free_port()
        self.spawn("web", processes.uvicorn_cmd("127.0.0.1", port))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return base
            except Exception:
                time.sleep(0.1)
            if self.procs["web"].poll() is not None:
                break
        raise RuntimeError("web did not start:\n" + self.log("web"))

    def scheduler(self, interval: float = 0.5) -> subprocess.Popen:
        return self.spawn("scheduler", processes.scheduler_cmd(interval))

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log(name):
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not print {needle!r}:\n{self.log(name)[-3000:]}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in list(self.procs.values()):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
