"""Supervise the platform's processes as compose's restart policy does in production.

`make run` (`manage.py runplatform`) starts each process as a child and hands it to a
`Supervisor`: a child that dies is started again after a back-off, the others keep running, and a
child that keeps crashing right after it starts is given up (the platform stops if it cannot do
without it). The supervisor's view of its children is written to `var/supervisor.json` for the
health page. Restart policy decisions are pure functions, tested alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from apps.core.processes import spawn

# A child that exits on its own (not killed by a signal from outside) within this many seconds of
# starting counts as a quick crash; this many quick crashes in a row is a crash loop.
MIN_UPTIME = 10.0
CRASH_LOOP_EXITS = 5
MAX_BACKOFF = 30.0
# Exits caused by someone else's signal (an operator's kill, the OOM killer) are not crashes of
# the child's own making: they are restarted without counting towards a crash loop.
EXTERNAL_SIGNALS = frozenset({-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP})


def restart_delay(quick_crashes: int) -> float:
    """Seconds to wait before starting a child again: 0.5 s, then doubling per quick crash."""
    if quick_crashes <= 0:
        return 0.5
    return min(0.5 * 2**quick_crashes, MAX_BACKOFF)


def is_quick_crash(returncode: int, uptime: float) -> bool:
    """A crash of the child's own making soon after it started (not an outside kill)."""
    return returncode not in EXTERNAL_SIGNALS and uptime < MIN_UPTIME


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class CrashLoop(Exception):
    """An essential child keeps crashing right after it starts."""


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    essential: bool = False  # the platform stops when it gives up on this one
    stop_timeout: float = 20.0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_crashes: int = 0
    state: str = "new"  # running | restarting | gave-up | stopped
    restart_at: float | None = None
    last_exit: dict | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """Start, watch, restart and stop a set of child processes."""

    def __init__(
        self,
        *,
        log_dir: Path,
        status_path: Path,
        cwd: Path,
        say: Callable[[str], None] = print,
        on_exit: Callable[[Child, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.status_path = Path(status_path)
        self.cwd = cwd
        self.say = say
        self.on_exit = on_exit
        self.clock = clock
        self.children: dict[str, Child] = {}

    # ------------------------------------------------------------------ starting
    def add(self, child: Child) -> Child:
        self.children[child.name] = child
        self._start(child)
        return child

    def _start(self, child: Child) -> None:
        # Each child in its own session: a terminal's Ctrl-C reaches only the supervisor, which
        # decides the order of the stop.
        child.proc = spawn(child.name, child.cmd, env=child.env, log_dir=self.log_dir, cwd=self.cwd)
        child.started_at = self.clock()
        child.state = "running"
        child.restart_at = None
        self.write_status()

    # ------------------------------------------------------------------ watching
    def poll(self) -> None:
        """One round: notice exits, schedule and perform restarts. Raises CrashLoop when an
        essential child is given up."""
        now = self.clock()
        for child in self.children.values():
            if child.state == "running" and child.proc is not None:
                code = child.proc.poll()
                if code is not None:
                    self._exited(child, code, now)
            if child.state == "restarting" and child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self.say(f"{child.name}: starting again (restart #{child.restarts})")
                    self._start(child)

    def _exited(self, child: Child, code: int, now: float) -> None:
        uptime = now - child.started_at
        quick = is_quick_crash(code, uptime)
        child.quick_crashes = child.quick_crashes + 1 if quick else 0
        child.last_exit = {
            "code": code,
            "what": describe_exit(code),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "uptime_seconds": round(uptime, 1),
        }
        child.history = [*child.history[-19:], child.last_exit]
        if self.on_exit is not None:
            try:
                self.on_exit(child, child.proc.pid)
            except Exception as exc:  # noqa: BLE001 - a failed clean-up must not stop supervision
                self.say(f"{child.name}: clean-up after its exit failed: {exc}")
        if child.quick_crashes >= CRASH_LOOP_EXITS:
            child.state = "gave-up"
            self.write_status()
            message = (
                f"{child.name} crashed {child.quick_crashes} times in a row within "
                f"{MIN_UPTIME:.0f} s of starting ({child.last_exit['what']}); giving up on it: "
                f"see {self.log_dir / (child.name + '.log')}"
            )
            self.say(message)
            if child.essential:
                raise CrashLoop(message)
            return
        delay = restart_delay(child.quick_crashes)
        child.state = "restarting"
        child.restart_at = now + delay
        self.say(
            f"{child.name} (pid {child.proc.pid}) {child.last_exit['what']} after "
            f"{uptime:.1f} s; restarting in {delay:.1f} s"
        )
        self.write_status()

    # ------------------------------------------------------------------ stopping
    def signal(self, names: list[str], sig: int) -> None:
        for name in names:
            child = self.children.get(name)
            if child is not None and child.proc is not None and child.proc.poll() is None:
                try:
                    os.killpg(child.proc.pid, sig)
                except ProcessLookupError:
                    pass

    def wait(self, names: list[str], timeout: float, interrupted: Callable[[], bool]) -> list[str]:
        """Wait for the named children to exit; returns those still alive at the deadline (or
        when `interrupted()` turns true)."""
        deadline = self.clock() + timeout
        while True:
            alive = [
                n
                for n in names
                if n in self.children
                and self.children[n].proc is not None
                and self.children[n].proc.poll() is None
            ]
            if not alive or self.clock() >= deadline or interrupted():
                return alive
            time.sleep(0.1)

    def stop(self, names: list[str], timeout: float, interrupted: Callable[[], bool]) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL what is left."""
        for name in names:
            if name in self.children:
                self.children[name].state = "stopped"
        self.signal(names, signal.SIGTERM)
        alive = self.wait(names, timeout, interrupted)
        if alive:
            self.say(f"{', '.join(alive)} did not stop in time; killing")
            self.signal(alive, signal.SIGKILL)
            self.wait(alive, 10, lambda: False)
        self.write_status()

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        return {
            "supervisor_pid": os.getpid(),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "children": {
                c.name: {
                    "state": c.state,
                    "pid": c.pid,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                }
                for c in self.children.values()
            },
        }

    def write_status(self) -> None:
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=1), encoding="utf-8")
        os.replace(tmp, self.status_path)


def read_status(path: Path) -> dict | None:
    """The status a live supervisor wrote, or None (none written, or its supervisor is gone)."""
    try:
        status = json.loads(Path(path).read_text(encoding="utf-8"))
        os.kill(int(status["supervisor_pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status
