"""The supervisor of `make run`: restart policy (pure) and its loop over real child processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from apps.core.supervisor import (
    CRASH_LOOP_EXITS,
    MAX_BACKOFF,
    Child,
    CrashLoop,
    Supervisor,
    describe_exit,
    is_quick_crash,
    read_status,
    restart_delay,
)


def test_the_restart_delay_doubles_with_each_quick_crash_up_to_a_ceiling():
    delays = [restart_delay(n) for n in range(8)]
    assert delays[0] == 0.5 and delays[1] == 1.0 and delays[2] == 2.0
    assert delays == sorted(delays)
    assert delays[-1] == MAX_BACKOFF


def test_an_outside_kill_is_never_a_crash_of_the_childs_own_making():
    assert not is_quick_crash(-signal.SIGKILL, uptime=0.1)
    assert not is_quick_crash(-signal.SIGTERM, uptime=0.1)
    assert is_quick_crash(1, uptime=0.1)
    assert is_quick_crash(-signal.SIGSEGV, uptime=2)
    assert not is_quick_crash(1, uptime=3600)  # it ran for an hour: a crash, not a loop


def test_exits_are_described_in_words():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _supervisor(tmp_path, clock=time.monotonic, exits=None):
    said: list[str] = []
    sup = Supervisor(
        log_dir=tmp_path / "logs",
        status_path=tmp_path / "supervisor.json",
        cwd=tmp_path,
        say=said.append,
        on_exit=(lambda child, pid: exits.append((child.name, pid))) if exits is not None else None,
        clock=clock,
    )
    return sup, said


def _wait_exit(child: Child) -> None:
    child.proc.wait(timeout=30)


def test_a_killed_child_is_restarted_and_the_others_keep_running(tmp_path):
    exits: list = []
    sup, said = _supervisor(tmp_path, exits=exits)
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    a = sup.add(Child(name="a", cmd=sleeper, env=dict(os.environ)))
    b = sup.add(Child(name="b", cmd=sleeper, env=dict(os.environ)))
    try:
        first_pid = a.pid
        os.kill(first_pid, signal.SIGKILL)
        _wait_exit(a)
        sup.poll()
        assert a.state == "restarting" and a.last_exit["what"] == "killed by SIGKILL"
        assert exits == [("a", first_pid)]  # its jobs can be given back at once
        deadline = time.monotonic() + 10
        while a.state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
            sup.poll()
        assert a.state == "running" and a.pid != first_pid and a.restarts == 1
        assert b.proc.poll() is None and b.restarts == 0
        status = json.loads((tmp_path / "supervisor.json").read_text())
        assert status["children"]["a"]["restarts"] == 1
        assert status["children"]["a"]["last_exit"]["code"] == -signal.SIGKILL
        assert read_status(tmp_path / "supervisor.json")["children"]["b"]["state"] == "running"
        assert any("restarting" in line for line in said)
    finally:
        sup.stop(["a", "b"], timeout=10, interrupted=lambda: False)
    assert a.proc.poll() is not None and b.proc.poll() is not None
    assert a.state == b.state == "stopped"


def test_a_child_that_keeps_crashing_at_start_is_given_up(tmp_path):
    clock = FakeClock()
    sup, said = _supervisor(tmp_path, clock=clock)
    crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
    child = sup.add(Child(name="worker", cmd=crash, env=dict(os.environ)))
    for _ in range(CRASH_LOOP_EXITS):
        _wait_exit(child)
        sup.poll()  # notices the exit
        if child.state == "gave-up":
            break
        clock.now = child.restart_at
        sup.poll()  # starts it again
    assert child.state == "gave-up"
    assert child.quick_crashes == CRASH_LOOP_EXITS
    assert "giving up" in said[-1]
    # Not essential: the platform goes on without it, and it is not started again.
    clock.now += 3600
    sup.poll()
    assert child.state == "gave-up"


def test_an_essential_child_in_a_crash_loop_stops_the_platform(tmp_path):
    clock = FakeClock()
    sup, _ = _supervisor(tmp_path, clock=clock)
    crash = [sys.executable, "-c", "import sys; sys.exit(1)"]
    child = sup.add(Child(name="web", cmd=crash, env=dict(os.environ), essential=True))
    with pytest.raises(CrashLoop, match="web crashed 5 times"):
        for _ in range(CRASH_LOOP_EXITS):
            _wait_exit(child)
            sup.poll()
            clock.now = child.restart_at or clock.now
            sup.poll()


def test_a_status_whose_supervisor_is_gone_is_not_reported(tmp_path):
    path = tmp_path / "supervisor.json"
    path.write_text(json.dumps({"supervisor_pid": 2**22 + 12345, "children": {}}))
    assert read_status(path) is None
    assert read_status(tmp_path / "missing.json") is None
