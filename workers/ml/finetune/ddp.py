"""Data-parallel LoRA training: N processes on one machine, one per GPU (nccl) or CPU (gloo).

    worker thread (run_distributed)        launcher: python -m workers.ml.finetune.ddp launch
      writes ddp/spec.json + rows            dies with the worker (PR_SET_PDEATHSIG) and runs
      tails ddp/progress.jsonl -> Reporter   torchrun's agent in-process, which starts N ranks:
      touches ddp/STOP when asked to stop    python -m workers.ml.finetune.ddp rank SPEC
      reads ddp/result.json                  (train.train_process; rank 0 writes the events
                                             and the result; all ranks agree on STOP each step)

A subprocess (not fork, not torch.multiprocessing) because the caller is a thread of a long-lived
worker that already ran torch: forking it is unsafe, and a fresh interpreter per rank is what
torchrun expects. `--standalone` picks a free rendezvous port, so jobs side by side do not clash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.ml.finetune.files import write_json
from workers.ml.finetune.train import train_process
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["JsonlReporter", "run_distributed"]

MODULE = "workers.ml.finetune.ddp"  # run with python -m, in the launcher and in every rank

WORK_DIR = "ddp"
SPEC_NAME = "spec.json"
PROGRESS_NAME = "progress.jsonl"
STOP_NAME = "STOP"
RESULT_NAME = "result.json"
ERROR_NAME = "error.json"
LOG_NAME = "launcher.log"
POLL_SECONDS = 0.2


class JsonlReporter:
    """A Reporter that appends each call as one JSON line (rank 0 of a DDP run)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the rank

    def _write(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._file.flush()

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        self._write({"type": "step", "step": step, "total": total, "metrics": metrics})

    def log(self, message: str, level: str = "info") -> None:
        self._write({"type": "log", "message": message, "level": level})

    def preview(self, image: Any) -> None:
        pass

    def artifact(self, path: str, name: str | None = None) -> None:
        self._write({"type": "artifact", "path": path, "name": name})

    def should_stop(self) -> bool:
        return False

    def flush(self) -> None:
        # The parent forwards these lines to the job's reporter as it reads them; what the rank
        # can promise before a checkpoint is complete is that the lines are on disk.
        os.fsync(self._file.fileno())


class _Tail:
    """Reads the complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def events(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def _forward(event: Mapping[str, Any], reporter: Reporter) -> None:
    kind = event.get("type")
    if kind == "step":
        reporter.step(int(event["step"]), int(event["total"]), event.get("metrics"))
    elif kind == "log":
        reporter.log(str(event["message"]), str(event.get("level", "info")))
    elif kind == "artifact":
        reporter.artifact(str(event["path"]), event.get("name"))


def _project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _child_env(num_procs: int, device_kind: str) -> dict[str, str]:
    env = dict(os.environ)
    root = str(_project_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if device_kind == "cpu" or "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_procs))
    return env


def run_distributed(
    spec: dict[str, Any],
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    num_procs: int,
    reporter: Reporter,
) -> dict[str, Any]:
    """Run `train_process` in `num_procs` ranks; forward rank 0's events; return its outcome."""
    work = Path(spec["output_dir"]) / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    for name in (PROGRESS_NAME, STOP_NAME, RESULT_NAME, ERROR_NAME):
        (work / name).unlink(missing_ok=True)
    for name, rows in (("train.jsonl", train_rows), ("eval.jsonl", eval_rows)):
        with open(work / name, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    spec_path = work / SPEC_NAME
    write_json(spec_path, {**spec, "work_dir": str(work), "parent_pid": os.getpid()})
    cmd = [
        sys.executable,
        "-m",
        MODULE,
        "launch",
        str(spec_path),
        str(num_procs),
    ]
    env = _child_env(num_procs, spec["device_kind"])
    with open(work / LOG_NAME, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(_project_root())
        )
    tail = _Tail(work / PROGRESS_NAME)
    stop_file = work / STOP_NAME
    try:
        while True:
            rc = proc.poll()
            for event in tail.events():
                _forward(event, reporter)
            if rc is not None:
                break
            if not stop_file.exists() and reporter.should_stop():
                stop_file.touch()
            time.sleep(POLL_SECONDS)
    finally:
        if proc.poll() is None:  # this thread is failing: do not leave the ranks training on
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for event in tail.events():
        _forward(event, reporter)
    if (work / ERROR_NAME).is_file():
        raise JobFailed(json.loads((work / ERROR_NAME).read_text(encoding="utf-8"))["message"])
    if rc != 0 or not (work / RESULT_NAME).is_file():
        text = (work / LOG_NAME).read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"distributed training failed (exit code {rc}):\n{text[-3000:]}")
    return json.loads((work / RESULT_NAME).read_text(encoding="utf-8"))


def die_with_parent(expected_parent: int | None = None) -> None:
    """Linux: get SIGKILL when the parent dies, so kill -9 of a worker ends its training too."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)  # the parent died before prctl took effect


def _read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _launch(spec_path: str, num_procs: int) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    die_with_parent(spec["parent_pid"])
    from torch.distributed.run import main as torchrun

    torchrun(
        [
            "--standalone",
            f"--nproc-per-node={num_procs}",
            "--max-restarts=0",
            "-m",
            MODULE,
            "rank",
            spec_path,
        ]
    )
    return 0


def _rank(spec_path: str) -> int:
    agent = os.getppid()
    die_with_parent(agent)
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    work = Path(spec["work_dir"])
    rank = int(os.environ.get("RANK", "0"))
    reporter: Any = JsonlReporter(work / PROGRESS_NAME) if rank == 0 else NullReporter()
    stop_file = work / STOP_NAME
    spec["train_rows"] = _read_rows(work / "train.jsonl")
    spec["eval_rows"] = _read_rows(work / "eval.jsonl")
    try:
        outcome = train_process(spec, reporter, stop_file.exists)
    except JobFailed as exc:
        if rank == 0:
            write_json(work / ERROR_NAME, {"message": str(exc)})
        return 3
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        write_json(work / RESULT_NAME, outcome)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "launch":
        return _launch(argv[1], int(argv[2]))
    if len(argv) == 2 and argv[0] == "rank":
        return _rank(argv[1])
    print(f"usage: python -m {MODULE} (launch SPEC N | rank SPEC)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
