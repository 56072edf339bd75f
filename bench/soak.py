"""Soak: the supervised platform (`make run`) under random kill -9s, with a mix of jobs.

    .venv/bin/python bench/soak.py [--minutes 3] [--jobs 100] [--seed 1] [--keep]

Starts `manage.py runplatform` in a temp dir (own SQLite database unless DATABASE_URL is set, its
own embedded Redis as a supervised child), submits `--jobs` jobs over the first half of the run
(resumable step jobs on the cpu and gpu queues that record every step they execute, and GPU
diagnostics), and every 4-10 s kills one of worker-gpu, worker-cpu, scheduler or Redis with
SIGKILL. Then it waits for every job to end and checks, from the database and the step records:

- lost: jobs that failed or were cancelled (nothing here fails on its own);
- stuck: jobs not finished when the drain deadline passed;
- duplicated: a step executed twice by one attempt, or an older attempt executing after a newer
  one started (two workers on one job);
- events missing: a job whose events are not numbered 1..last_seq without gaps, that has no final
  state event, or whose metric series lacks a step (or has a wrong value) of the steps it ran;
- recovery: seconds from each kill until the killed process is serving again (its supervisor
  restarted it and a worker printed "ready.", the scheduler wrote its heartbeat, Redis answers).
  Jobs of a killed worker are re-queued by the supervisor at once, so no lease has to expire.

Not part of `make test` (minutes of wall time). The last line is the RESULT line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from bench._common import bench_policy, pct, say, stop_everything  # noqa: E402
from tests.harness import free_port, redis_answers  # noqa: E402

TARGETS = ("worker-gpu", "worker-cpu", "scheduler", "redis")
GOAL_RECOVERY_P99 = 10.0
TERMINAL = ("succeeded", "failed", "cancelled")


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-soak-"))
        self.var = self.tmp / "var"
        self.records = self.tmp / "records"
        self.platform: subprocess.Popen | None = None
        self.kills: list[dict] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        redis_port = free_port()
        self.port = free_port()
        db_url = os.environ.get("DATABASE_URL") or f"sqlite:///{(self.tmp / 'soak.sqlite3')}"
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": db_url,
            # Not answering yet: runplatform starts its embedded Redis there, as a child.
            "REDIS_URL": self.redis_url,
            "ATELIER_EMBEDDED_REDIS_PORT": str(redis_port),
            "ATELIER_VAR_DIR": str(self.var),
            "ATELIER_MEDIA_ROOT": str(self.tmp / "media"),
            "ATELIER_JOBS_DIR": str(self.tmp / "jobs"),
            "ATELIER_JOB_KIND_MODULES": "tests.jobkinds",
            "ATELIER_CHANNEL_PREFIX": f"atelier-soak-{uuid.uuid4().hex[:6]}",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update({k: v for k, v in self.env.items() if k != "REDIS_URL"})
        os.environ["REDIS_URL"] = self.redis_url
        self.records.mkdir(parents=True)
        say(f"temp dir {self.tmp}; starting runplatform on port {self.port}")
        self.out = open(self.tmp / "runplatform.log", "ab")  # noqa: SIM115 - lives for the run
        self.platform = subprocess.Popen(
            [sys.executable, "manage.py", "runplatform", "--no-demo", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while not self.health():
            if time.monotonic() > deadline or self.platform.poll() is not None:
                raise RuntimeError("runplatform did not start:\n" + self.tail())
            time.sleep(0.5)

        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from apps.projects.models import Membership, Project

        tag = uuid.uuid4().hex[:6]
        self.user = get_user_model().objects.create_user(username=f"soak-{tag}", password=None)
        # The soak kills workers on purpose: a job hit twice is not a job that kills workers.
        bench_policy(max_worker_losses=1_000)
        self.project = Project.objects.create(name=f"Soak {tag}", max_concurrent_jobs=4)
        Membership.objects.create(project=self.project, user=self.user, role="admin")

    def tail(self) -> str:
        return (self.tmp / "runplatform.log").read_text(errors="replace")[-3000:]

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                body = json.loads(r.read())
                return body if "processes" in body else None
        except Exception:
            return None

    def children(self) -> dict:
        try:
            return json.loads((self.var / "supervisor.json").read_text())["children"]
        except (OSError, ValueError, KeyError):
            return {}

    # ------------------------------------------------------------------ jobs
    def plan(self) -> list[dict]:
        jobs = []
        for i in range(self.args.jobs):
            roll = self.rng.random()
            if roll < 0.2:
                jobs.append(
                    {
                        "kind": "diagnostics",
                        "params": {"steps": 8, "matrix_size": 64, "step_seconds": 0.05},
                    }
                )
                continue
            steps = self.rng.randint(10, 40)
            jobs.append(
                {
                    "kind": "test.steps" if roll < 0.6 else "test.gpu_steps",
                    "params": {
                        "steps": steps,
                        "step_seconds": round(self.rng.uniform(0.03, 0.15), 3),
                        "checkpoint_every": 5,
                        "record_file": str(self.records / f"job-{i}.txt"),
                    },
                }
            )
        return jobs

    def submit(self, spec: dict):
        from apps.jobs import services

        return services.job_create(
            project=self.project, kind=spec["kind"], params=spec["params"], created_by=self.user
        )

    # ------------------------------------------------------------------ kills
    def ready_marks(self, target: str) -> int:
        path = self.var / "logs" / f"{target}.log"
        try:
            return path.read_text(errors="replace").count(" ready.")
        except OSError:
            return 0

    def kill_one(self) -> None:
        target = self.rng.choice(TARGETS)
        child = self.children().get(target)
        if not child or child.get("state") != "running" or not child.get("pid"):
            return
        readies = self.ready_marks(target)
        heartbeat = self.var / "scheduler.heartbeat"
        killed_at = time.monotonic()
        wall = time.time()
        try:
            os.killpg(child["pid"], signal.SIGKILL)
        except ProcessLookupError:
            return
        recovered = None
        deadline = killed_at + 120
        while time.monotonic() < deadline:
            now_child = self.children().get(target, {})
            back = now_child.get("state") == "running" and now_child.get("pid") != child["pid"]
            if back:
                if target.startswith("worker"):
                    back = self.ready_marks(target) > readies
                elif target == "scheduler":
                    back = heartbeat.exists() and heartbeat.stat().st_mtime > wall
                else:
                    back = redis_answers(self.redis_url)
            if back:
                recovered = time.monotonic() - killed_at
                break
            time.sleep(0.05)
        self.kills.append({"target": target, "recovery": recovered})
        say(
            f"killed {target} (pid {child['pid']}): "
            + (f"serving again after {recovered:.1f}s" if recovered else "NOT RECOVERED")
        )

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        plan = self.plan()
        duration = self.args.minutes * 60
        start = time.monotonic()
        submit_every = (duration / 2) / max(len(plan), 1)
        next_kill = start + self.rng.uniform(4, 10)
        jobs = []
        say(f"{len(plan)} jobs over {duration / 2:.0f}s, random kills for {duration:.0f}s")
        while time.monotonic() - start < duration:
            now = time.monotonic()
            while plan and len(jobs) * submit_every <= now - start:
                jobs.append((self.submit(plan.pop(0)), None))
            if now >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + self.rng.uniform(4, 10)
            time.sleep(0.05)
        for spec in plan:  # a short run: whatever was not submitted yet goes now
            jobs.append((self.submit(spec), None))
        say("kills stopped; waiting for every job to end")
        return self.drain([j for j, _ in jobs])

    def drain(self, jobs) -> dict:
        from apps.jobs.models import Job

        ids = [j.pk for j in jobs]
        deadline = time.monotonic() + self.args.drain
        while time.monotonic() < deadline:
            left = Job.objects.filter(pk__in=ids).exclude(state__in=TERMINAL).count()
            if not left:
                break
            time.sleep(1)
        return self.check(ids)

    def check(self, ids: list[int]) -> dict:
        from apps.jobs.models import Job, JobEvent
        from apps.jobs.selectors import job_metric_series

        lost = stuck = duplicated = missing = 0
        attempts = []
        for job in Job.objects.filter(pk__in=ids):
            attempts.append(job.attempt)
            if job.state not in TERMINAL:
                stuck += 1
                say(f"stuck: job {job.pk} {job.kind} is {job.state}")
                continue
            if job.state != "succeeded":
                lost += 1
                say(f"lost: job {job.pk} {job.kind} ended {job.state}: {job.error[:200]}")
            seqs = list(
                JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True)
            )
            final = JobEvent.objects.filter(job=job, kind="state").order_by("-seq").first()
            bad = seqs != list(range(1, job.last_seq + 1))
            bad |= final is None or final.data.get("state") != job.state
            record = job.params.get("record_file")
            if record:
                runs = [
                    tuple(map(int, line.split()))
                    for line in Path(record).read_text().splitlines()
                    if line.strip()
                ]
                newest = 0
                seen = set()
                for attempt, step in runs:
                    if (attempt, step) in seen or attempt < newest:
                        duplicated += 1
                        say(f"duplicated: job {job.pk} attempt {attempt} step {step}")
                        break
                    seen.add((attempt, step))
                    newest = max(newest, attempt)
                series = job_metric_series(job=job).get("value", [])
                expected = list(range(1, job.params["steps"] + 1))
                if job.state == "succeeded":
                    bad |= [s for s, _ in series] != expected
                    bad |= any(v != float(s) for s, v in series)
            if bad:
                missing += 1
                say(f"events missing: job {job.pk} ({len(seqs)} of {job.last_seq})")
        recoveries = [k["recovery"] for k in self.kills if k["recovery"] is not None]
        return {
            "jobs": len(ids),
            "lost": lost,
            "stuck": stuck,
            "duplicated": duplicated,
            "missing": missing,
            "resumed": sum(1 for a in attempts if a > 1),
            "kills": len(self.kills),
            "not_recovered": sum(1 for k in self.kills if k["recovery"] is None),
            "recovery": recoveries,
            "by_target": {
                t: [k["recovery"] for k in self.kills if k["target"] == t] for t in TARGETS
            },
        }

    def stop(self) -> None:
        if self.platform is not None and self.platform.poll() is None:
            self.platform.send_signal(signal.SIGTERM)
            try:
                self.platform.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.platform.pid, signal.SIGKILL)
        stop_everything(children=[], procs=None, redis_proc=None, tmp=self.tmp, keep=self.args.keep)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain", type=float, default=600, help="seconds to wait for jobs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        soak.setup()
        r = soak.run()
    finally:
        soak.stop()
    rec = r["recovery"]
    print(f"jobs {r['jobs']}, resumed after a kill {r['resumed']}, kills {r['kills']}")
    for target, values in r["by_target"].items():
        ok = [v for v in values if v is not None]
        print(
            f"  {target:<11} kills {len(values):>3}  recovery p50 {pct(ok, 50):5.1f}s  "
            f"max {max(ok) if ok else float('nan'):5.1f}s"
        )
    p99 = pct(rec, 99) if rec else float("nan")
    met = (
        r["lost"] == r["stuck"] == r["duplicated"] == r["missing"] == r["not_recovered"] == 0
        and p99 <= GOAL_RECOVERY_P99
    )
    print(
        f"RESULT soak {args.minutes:g} min, {r['jobs']} jobs, {r['kills']} kills: lost "
        f"{r['lost']} stuck {r['stuck']} duplicated {r['duplicated']} events-missing "
        f"{r['missing']} (goal 0 0 0 0); recovery p99 {p99:.1f}s (goal <= "
        f"{GOAL_RECOVERY_P99:.0f}s), not recovered {r['not_recovered']}"
        + ("" if met else "  GOAL MISSED")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
