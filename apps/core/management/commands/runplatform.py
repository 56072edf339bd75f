"""`make run`: start every process of the platform as children of one command, and keep them up.

Order: Redis (embedded unless REDIS_URL answers) → migrate → demo data → web, workers, scheduler.
The children are supervised (apps/core/supervisor.py): one that dies is restarted with back-off
while the others keep running, and a dead worker's jobs are re-queued at once instead of waiting
for their leases. Ctrl-C (or SIGTERM) is a warm shutdown: workers ask resumable jobs (fine-tunes)
to stop at their next step with a checkpoint and re-queue them, other jobs finish, then the rest
stops; Redis last, so workers can finish their writes. A second Ctrl-C stops everything at once.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from apps.core.processes import (
    MANAGE,
    anvil_binary,
    anvil_cmd,
    celery_worker_cmd,
    port_free,
    redis_answers,
    redis_server_cmd,
    scheduler_cmd,
    uvicorn_cmd,
)
from apps.core.supervisor import Child, CrashLoop, Supervisor
from webapp.keyfiles import read_or_create_key
from workers.chain.keys import SIGNER_ONLY_VARIABLES

EMBEDDED_REDIS_PORT = int(os.environ.get("ATELIER_EMBEDDED_REDIS_PORT", "6390"))
# Seconds a warm shutdown waits for running jobs to reach a checkpoint (or finish).
STOP_GRACE = float(os.environ.get("ATELIER_STOP_GRACE", "60"))
# Celery node name prefix of each worker child; a job's lease owner is "<node>:<pid>".
WORKERS = {"worker-gpu": ("gpu", "gpu"), "worker-cpu": ("cpu", "cpu"), "signer": ("chain", "chain")}
# Keys generated once in var/ (mode 0600) unless the environment brings its own; the children
# read them through NAME_FILE (webapp/settings.py's env()).
KEY_FILES = {"DJANGO_SECRET_KEY": "secret-key", "ATELIER_PSEUDONYM_KEY": "pseudonym-key"}
# The local chain node `make run` starts when CHAIN_RPC_URL is not set (anvil, state in var/chain).
ANVIL_PORT = int(os.environ.get("ATELIER_ANVIL_PORT", "8545"))
# A block every 2 s, as a real chain keeps making them: confirmations accrue with nothing sent.
ANVIL_BLOCK_SECONDS = int(os.environ.get("ATELIER_ANVIL_BLOCK_SECONDS", "2"))


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Command(BaseCommand):
    help = "Run the whole platform (web, workers, scheduler, embedded Redis) in the foreground."
    # The first child (migrate) runs the system checks with the keys this command hands it; here,
    # before they exist, the development key would fail them.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("ATELIER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ATELIER_PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Do not create demo data")

    def handle(self, *args, host, port, no_demo, **options):
        self.stopping = False
        self.force = False
        self.hostname = socket.gethostname()
        var = Path(settings.VAR_DIR)
        (var / "logs").mkdir(parents=True, exist_ok=True)
        env = os.environ.copy()
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        self._keys(env, var, host)
        # The chain key is the signer's alone: kept apart from what the other children get.
        chain_keys = {k: env.pop(k) for k in SIGNER_ONLY_VARIABLES if k in env}
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.supervisor = Supervisor(
            log_dir=var / "logs",
            status_path=var / "supervisor.json",
            cwd=Path(settings.BASE_DIR),
            say=self._say,
            on_exit=self._child_exited,
        )
        try:
            env["REDIS_URL"] = self._redis(env, var)
            self._use_redis(env["REDIS_URL"])
            self._run_once([sys.executable, MANAGE, "migrate", "--noinput"], env)
            if not no_demo:
                self._run_once([sys.executable, MANAGE, "seed_demo"], env)
            chain_keys = self._chain(env, var, chain_keys)
            if not port_free(port):
                raise CommandError(
                    f"Port {port} on {host} is taken: stop the other server or set ATELIER_PORT"
                )
            self._release_dead_workers()
            self._add("web", uvicorn_cmd(host, port, ws_ping_interval=20), env, essential=True)
            # threads pools: no fork after torch (STACK-NOTES), and a busy worker still answers pings.
            concurrency = {"worker-gpu": 1, "worker-cpu": 2, "signer": 1}
            for name, (node, queue) in WORKERS.items():
                self._add(
                    name,
                    celery_worker_cmd(
                        queue, node=f"{node}@{self.hostname}", concurrency=concurrency[name]
                    ),
                    {**env, **chain_keys} if name == "signer" else env,
                    stop_timeout=STOP_GRACE,
                )
            self._add("scheduler", scheduler_cmd(), env)
            self._wait_http(host, port)
            self.stdout.write(self.style.SUCCESS(f"\nAtelier is running at http://{host}:{port}/"))
            self.stdout.write(
                f"Logs: {var / 'logs'}/<process>.log   Health: http://{host}:{port}/healthz   "
                "Stop: Ctrl-C\n"
            )
            self._watch()
        except CrashLoop as exc:
            raise CommandError(str(exc)) from None
        finally:
            self._stop_all()

    # ------------------------------------------------------------------ keys
    def _keys(self, env: dict, var: Path, host: str) -> None:
        """The same SECRET_KEY and pseudonym key on every start: sessions and pseudonyms survive
        restarts, and the public development key is never what `make run` serves with."""
        for name, filename in KEY_FILES.items():
            if not env.get(name) and not env.get(f"{name}_FILE"):
                read_or_create_key(var / filename)
                env[f"{name}_FILE"] = str(var / filename)
        key_file = env.get("DJANGO_SECRET_KEY_FILE")
        secret = Path(key_file).read_text().strip() if key_file else env.get("DJANGO_SECRET_KEY")
        if secret == settings.DEV_SECRET_KEY and not is_loopback(host):
            raise CommandError(
                f"Refusing to serve on {host} with the public development SECRET_KEY: unset "
                "DJANGO_SECRET_KEY (make run then keeps its own in var/secret-key) or set a secret one"
            )

    # ------------------------------------------------------------------ processes
    def _on_signal(self, signum, frame):
        if self.stopping:
            # Only a second Ctrl-C forces: a SIGTERM may arrive twice (a service manager and a
            # wrapper like `timeout` both forwarding it) and must still stop warmly.
            if signum == signal.SIGINT and not self.force:
                self.stdout.write("\nStopping now (jobs resume from their last checkpoint)…")
                self.force = True
            return
        self.stdout.write("\nStopping…")
        self.stopping = True

    def _say(self, message: str) -> None:
        self.stdout.write(f"[supervisor] {message}")
        self.stdout.flush()

    def _add(self, name, cmd, env, essential=False, stop_timeout=20.0) -> None:
        self.supervisor.add(
            Child(name=name, cmd=cmd, env=env, essential=essential, stop_timeout=stop_timeout)
        )

    def _lease_owner(self, name: str, pid: int) -> str | None:
        if name not in WORKERS:
            return None
        return f"{WORKERS[name][0]}@{self.hostname}:{pid}"

    def _child_exited(self, child: Child, pid: int) -> None:
        """A worker died: give its jobs back now (it cannot renew their leases any more)."""
        owner = self._lease_owner(child.name, pid)
        if owner is None:
            return
        from apps.jobs.services import job_release_orphans

        close_old_connections()
        released = job_release_orphans(lease_owner=owner)
        if released:
            self._say(f"{child.name}: re-queued {released} job(s) it was running")

    def _release_dead_workers(self) -> None:
        """Jobs still held by workers of an earlier `make run` on this host whose processes are
        gone (a power cut, kill -9 of the whole platform) resume now, not after their leases."""
        from apps.jobs.models import Job
        from apps.jobs.services import job_release_orphans
        from apps.jobs.states import ACTIVE

        nodes = "|".join(re.escape(node) for node, _ in WORKERS.values())
        pattern = re.compile(rf"^(?:{nodes})@{re.escape(self.hostname)}:(\d+)$")
        owners = (
            Job.objects.filter(state__in=ACTIVE).values_list("lease_owner", flat=True).distinct()
        )
        released = 0
        for owner in list(owners):
            match = pattern.match(owner or "")
            if match and not pid_alive(int(match.group(1))):
                released += job_release_orphans(lease_owner=owner)
        if released:
            self._say(f"re-queued {released} job(s) left running by a previous start")
        close_old_connections()

    def _redis(self, env: dict, var: Path) -> str:
        url = env.get("REDIS_URL", "")
        if url and redis_answers(url):
            self.stdout.write(
                f"Using Redis at {urlparse(url).hostname}:{urlparse(url).port or 6379}"
            )
            return url
        if url:
            self.stdout.write(
                self.style.WARNING("REDIS_URL does not answer; starting an embedded Redis instead")
            )
        port = EMBEDDED_REDIS_PORT
        embedded = f"redis://127.0.0.1:{port}/0"
        if not port_free(port):
            if redis_answers(embedded):
                self.stdout.write(f"Reusing the Redis already on port {port}")
                return embedded
            raise CommandError(f"Port {port} is taken: set ATELIER_EMBEDDED_REDIS_PORT")
        data = var / "redis"
        data.mkdir(parents=True, exist_ok=True)
        # AOF + noeviction: queued job pointers survive a restart and are never evicted.
        self._add("redis", redis_server_cmd(port, data, durable=True), env, essential=True)
        for _ in range(100):
            if redis_answers(embedded, timeout=0.2):
                self.stdout.write(f"Embedded Redis on 127.0.0.1:{port} (data in {data})")
                return embedded
            time.sleep(0.1)
        raise CommandError("The embedded Redis did not start; see var/logs/redis.log")

    def _chain(self, env: dict, var: Path, keys: dict) -> dict:
        """The chain: CHAIN_RPC_URL when set (any Ethereum node), else a local anvil whose state
        lives in var/chain (kept across restarts and crashes). `chain_dev_setup` then makes and
        funds a development signer key (var/chain/signer.key, 0600) unless one is configured, and
        deploys the registry once. Returns the key variables for the signer's environment."""
        if not env.get("CHAIN_RPC_URL"):
            binary = anvil_binary()
            if not binary.exists():
                self.stdout.write(
                    self.style.WARNING(
                        "No anvil (npm ci --prefix contracts): running without a chain; "
                        "approved outputs wait for provenance until CHAIN_RPC_URL is set"
                    )
                )
                return keys
            chain_dir = var / "chain"
            chain_dir.mkdir(parents=True, exist_ok=True)
            env["CHAIN_RPC_URL"] = f"http://127.0.0.1:{ANVIL_PORT}"
            env.setdefault("CHAIN_ID", "31337")
            if port_free(ANVIL_PORT):
                cmd = anvil_cmd(
                    port=ANVIL_PORT,
                    state_path=chain_dir / "anvil-state.json",
                    chain_id=int(env["CHAIN_ID"]),
                    block_time=ANVIL_BLOCK_SECONDS,
                )
                self._add("chain", cmd, env, essential=True)
            self._wait_chain(env["CHAIN_RPC_URL"])
            self.stdout.write(f"Chain: anvil on 127.0.0.1:{ANVIL_PORT} (state in {chain_dir})")
        self._run_once([sys.executable, MANAGE, "chain_dev_setup"], {**env, **keys})
        if not keys:
            keys = {"CHAIN_PRIVATE_KEY_FILE": str(var / "chain" / "signer.key")}
        return keys

    def _wait_chain(self, url: str) -> None:
        from workers.chain.node import wait_until_answers

        try:
            wait_until_answers(url, timeout=30)
        except Exception as exc:
            raise CommandError(f"The chain node did not answer at {url}: {exc}") from None

    def _use_redis(self, url: str) -> None:
        """This process re-queues a dead worker's jobs, which sends their messages and rings
        doorbells: point its own broker and channel layer at the Redis its children use."""
        from webapp.celery import app

        settings.REDIS_URL = url
        settings.CELERY_BROKER_URL = url
        app.conf.broker_url = url
        for host in settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]:
            host["address"] = url

    def _run_once(self, cmd: list[str], env: dict) -> None:
        result = subprocess.run(cmd, env=env)
        if result.returncode != 0:
            raise CommandError(f"{' '.join(cmd[1:3])} failed with exit code {result.returncode}")

    def _wait_http(self, host: str, port: int) -> None:
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stopping:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.2)
            self.supervisor.poll()
        if not self.stopping:
            raise CommandError("The web server did not answer within 60 s; see var/logs/web.log")

    def _watch(self) -> None:
        while not self.stopping:
            self.supervisor.poll()
            time.sleep(0.2)

    def _stop_all(self) -> None:
        self.stopping = True
        sup = getattr(self, "supervisor", None)
        if sup is None or not sup.children:
            return
        front = [n for n in sup.children if n not in ("redis", "chain")]
        workers = [n for n in front if n in WORKERS]
        if workers and not self.force:
            self.stdout.write(
                f"Waiting up to {STOP_GRACE:.0f} s for running jobs: fine-tunes stop at their "
                "next step with a checkpoint and resume on the next start (Ctrl-C again to stop "
                "now)"
            )
        # Workers, web and scheduler together (a warm shutdown for the workers), Redis last.
        sup.stop(front, timeout=STOP_GRACE, interrupted=lambda: self.force)
        # The chain node and Redis last: the signer and workers finish their writes first.
        for last in ("chain", "redis"):
            if last in sup.children:
                sup.stop([last], timeout=10, interrupted=lambda: False)
        self.stdout.write("All processes stopped.")
