"""Image generation benchmark: the platform's image.generate jobs against the team's bare script.

    .venv/bin/python bench/images.py [--images 6] [--rounds 2] [--size 512] [--batch-px 64]
                                     [--batch-rounds 2] [--steps 20] [--keep]

In an isolated temp dir (own SQLite database, own embedded Redis, own var/ folders) the same
pipeline and parameters run both ways. The model is the tiny random Stable Diffusion pipeline
built in code (workers.imaging.demo_model.build_tiny_pipeline, seed 0), built once during setup
(not timed) into the temp var/models/tiny-sd and registered through the built-in `tiny-sd`
BaseModel row (ensure_builtin_rows + model_folder); both sides load that folder. Every image:
--steps steps (20) of --sampler ("Euler a"), CFG 7, batch_size 1, negative prompt "blurry, low
quality", one of 8 fixed prompts with a fixed seed (1000 + i), square, at one of two sizes:

- --size (default 512 px, the image form's default and A1111's) for the warm ratio (bare vs
  platform, per image). A job has a fixed cost of about 40 ms that does not depend on the image
  (the claim's transaction, PNG + infotext, the Output row and its events, job_finish); the
  pipeline call itself runs at 0.98-1.00 of plain diffusers. So the ratio depends on how long an
  image takes: measured 0.93-0.94 at 256 px (~0.9 s images), 0.5-0.77 at 64 px (0.25 s). The
  tiny model at 512 px takes ~3.5 s an image on one CPU thread: about what a real SD 1.5 image at
  512 px takes on a GPU, where this fixed cost is about 1 %.
- --batch-px (default 64 px) for batching. On a one-thread CPU a 256 px tiny-model image is
  compute-bound: the UNet's arithmetic grows with the batch and little per-call overhead is
  left to share, so batching gains nothing there (measured 0.92x). At 64 px the cost that
  does not grow with the image (Python and operator dispatch per call and per step, the job's
  fixed cost) is a large part of an image, and batching amortises it (measured 1.8-2.8x). Small
  images are the real embedded workload: the product's built-in demo model works at 32 px. On
  GPUs, batching pays at all sizes (the device is under-used by one image).

(a) bare: bench/_images_child.py `bare` in a fresh Python subprocess: plain diffusers, as the
    team's script would do it (StableDiffusionPipeline.from_pretrained, the sampler's scheduler
    class from_config, pipe(prompt, ..., generator=torch.Generator().manual_seed(seed)),
    image.save(png)); nothing of the platform. It stamps library imports, the load, one warm-up
    image (excluded from the rate), then --images images timed one by one.
(b) platform: services.job_create of `image.generate` jobs -> a real Celery worker subprocess
    (tests/harness.py Processes; queues gpu,cpu, threads pool, concurrency 1, started and idle
    before the first submit, so its first job imports torch/diffusers and loads the pipeline,
    as the bare subprocess does) -> succeeded, PNG + thumbnail + gallery Output per image.
    - cold: the first job on the fresh worker, job_create called -> Job.finished_at; its result
      must say model_loaded True. Compared with a bare subprocess spawn -> first image saved.
    - warm: the following jobs, submitted one at a time (each after the previous finished),
      cycling through the 8 requests, --images per round. Per-image time = Job.started_at ->
      finished_at (the claim, the warm pipeline, generation, PNG/thumbnail/Output row, events,
      job_finish); submit -> finished is printed too. model_loaded must be False for every one,
      and neither its log events nor the worker log may show a load.

Runs alternate, bare first and last: bare, platform cold, then --rounds x (platform warm round,
bare); default 2 rounds: B Pc Pw B Pw B. Every run of a side is averaged, so drift in the shared
machine's load mostly cancels out. The bare subprocesses and the worker both run with
OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1 (one torch thread each), so they compete equally.

Warm ratio = bare seconds per image / platform warm seconds per image (goal >= 0.95).

Batching, at --batch-px: the same 8 compatible requests (same model, size, sampler, steps, CFG;
different prompts and seeds) on the same warm worker, after one untimed warm-up job at that size
(the first image of a new size on the worker; it must not load the model either). --batch-rounds
pairs (default 2) of a sequential round then a batched round (S B S B), so drift in the machine's
load falls on both sides alike:
- sequential round = the 8 jobs submitted one at a time, each after the previous finished. Its
  time = the sum of the 8 jobs' started_at -> finished_at: the worker's busy time only, leaving
  out the dispatch latency and the bench's polling between jobs (which favours the sequential
  side; a worker with ATELIER_BATCH_MAX_JOBS=1 given all 8 at once would also pay a dispatch and
  claim between jobs). The sum of submit -> finished is printed too.
- batched round = the 8 jobs created inside one transaction.atomic() block, so their Celery
  messages go out together after the commit; the worker claims the first and, with
  ATELIER_BATCH_MAX_JOBS (default 8), takes the other 7 along into one generate_batch call.
  Time = first job_create called -> last Job.finished_at. The results' `batched_with` say how
  many jobs ran together (one batch of 8 expected).
Speed-up = mean sequential time / mean batched time (goal >= 1.3x). For context the pure level is
printed too, at --batch-px: 8 x generate_images vs one generate_batch of the same 8 requests in a
plain subprocess (bench/_images_child.py `pure`, no Django/Celery; the platform's own
load_pipeline), alternated --batch-rounds times; the same subprocess times generate_images at
--size for the per-image split of the warm ratio.

Where the platform's time goes: timing probes in the worker (bench/_images_child.py, loaded
through ATELIER_JOB_KIND_MODULES; they wrap product functions from the outside) split each warm
job's started -> finished into claim, partner search, model cache lookup, build_request, the
pipeline call (generate_images), saving the PNG/thumbnail/Output, job_finish; they also count
load_pipeline calls (must be 1: the cold job). Cross-check on CPU time, less sensitive to the
shared machine's other load than wall time: bare process CPU per image vs the worker process's
CPU (all its threads, from /proc) over each warm round, per job.

Honesty checks, printed: the bare and platform images of the same prompt and seed have the same
pixels (or how far apart they are), at --size; batched jobs give the same pixels as the same
requests run alone in the sequential rounds (same size, --batch-px); the pure generate_batch
gives the same pixels as generate_images.

--keep keeps the temp dir (worker log, database, images). The last line printed is one RESULT
line with the headline figures beside their goals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is bench/: replace it by the repository root.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    bench_policy,
    cpu_seconds,
    isolated_environment,
    mean,
    pct,
    probed_worker_env,
    say,
    stop_everything,
    without_probes,
)
from bench._images_child import PROBE_ENV, read_probes  # noqa: E402
from tests.harness import Processes, start_embedded_redis  # noqa: E402

GOAL_RATIO = {64: 0.95, 256: 0.98, 512: 0.98}  # by size; other sizes: 0.98
GOAL_FIXED_MS = 15.0  # critical-path time per image outside the pipeline call
PARTNER_SEARCH_MARGIN = 0.02  # s after a stream job starts before the next is submitted
GOAL_SPEEDUP = 1.3
TERMINAL = ("succeeded", "failed", "cancelled")
CHILD = str(ROOT / "bench" / "_images_child.py")
BATCH = 8  # compatible requests in the batching comparison
NEGATIVE = "blurry, low quality"
PROMPTS = (
    "a watercolor painting of a red fox in the snow",
    "a lighthouse on a cliff at sunset, oil on canvas",
    "a bowl of ramen on a wooden table, studio photo",
    "an astronaut riding a horse on the moon",
    "a cozy library with tall shelves and warm light",
    "a koi pond in a japanese garden, ink drawing",
    "a steam locomotive crossing a stone bridge",
    "a city street in the rain at night, neon signs",
)
SEED0 = 1000
WARMUP = {"prompt": "a warm-up image of a teapot", "seed": 7}


def requests() -> list[dict]:
    return [{"prompt": p, "seed": SEED0 + i} for i, p in enumerate(PROMPTS)]


def pixel_sha(path: str | Path) -> str:
    from PIL import Image

    with Image.open(path) as img:
        return hashlib.sha256(img.convert("RGB").tobytes()).hexdigest()


def max_pixel_diff(a: str | Path, b: str | Path) -> int:
    import numpy as np
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:
        x = np.asarray(ia.convert("RGB"), dtype=np.int16)
        y = np.asarray(ib.convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return 255
    return int(np.abs(x - y).max())


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-imgbench-"))
        self.redis_proc: subprocess.Popen | None = None
        self.procs: Processes | None = None
        self.children: list[subprocess.Popen] = []
        self.facts: dict[str, str] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis_proc, redis_url = start_embedded_redis(self.tmp / "redis")
        env = self._environment(tag, redis_url)
        os.environ.update(env)  # before django.setup(): settings read the environment at import
        (self.tmp / "var" / "models").mkdir(parents=True)
        self.probe_dir = self.tmp / "probes"
        self.probe_dir.mkdir()
        proc_env = probed_worker_env(
            env, probe_env=PROBE_ENV, probe_dir=self.probe_dir, module="bench._images_child"
        )
        self.procs = Processes(env=proc_env, log_dir=self.tmp / "logs")  # over os.environ
        self.child_env = without_probes(self.procs.env, PROBE_ENV)
        self._migrate_and_build()
        self._create_rows(tag)
        say("starting the platform worker (queues gpu,cpu; threads pool, concurrency 1)")
        self.procs.worker(queues="gpu,cpu")

    def _environment(self, tag: str, redis_url: str) -> dict[str, str]:
        """The isolated run's settings: own database, Redis, var/ folders and channel prefix."""
        env = isolated_environment(
            self.tmp, redis_url=redis_url, channel_prefix=f"atelier-imgbench-{tag}"
        )
        if self.args.batch_max_jobs is not None:
            env["ATELIER_BATCH_MAX_JOBS"] = str(self.args.batch_max_jobs)
        return env

    def _migrate_and_build(self) -> None:
        """Migrate the fresh database and build the tiny SD pipeline, side by side (not timed)."""
        say("migrating the fresh database; building the tiny SD pipeline (setup, not timed)")
        t = time.monotonic()
        migrate = subprocess.Popen(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        self.children.append(migrate)
        self.model_dir_built = self.tmp / "var" / "models" / "tiny-sd"
        build = self._child(["build", str(self.model_dir_built)], self.child_env)
        if migrate.wait() != 0:
            raise RuntimeError("manage.py migrate failed")
        if build.wait() != 0:
            raise RuntimeError("building the tiny SD pipeline failed")
        self.facts["setup"] = f"{time.monotonic() - t:.1f}s"
        self.facts["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())

    def _create_rows(self, tag: str) -> None:
        """The bench's user, project and the built-in tiny-sd row on the folder built above."""
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from apps.models.models import BaseModel
        from apps.models.services import ensure_builtin_rows, model_folder
        from apps.projects.models import Membership, Project

        self.user = get_user_model().objects.create_user(username=f"imgbench-{tag}", password=None)
        bench_policy()
        self.project = Project.objects.create(name=f"Image bench {tag}", max_concurrent_jobs=16)
        Membership.objects.create(project=self.project, user=self.user, role="admin")
        ensure_builtin_rows()
        self.model = BaseModel.objects.get(reference="tiny-sd")
        # Registers the folder built above (it exists, so model_folder builds nothing).
        self.model_dir = str(model_folder(self.model))
        if Path(self.model_dir).resolve() != self.model_dir_built.resolve():
            raise RuntimeError(f"tiny-sd resolved to {self.model_dir}, not {self.model_dir_built}")
        self.batch_max_jobs = int(settings.ATELIER.get("BATCH_MAX_JOBS", 1))
        self.facts["BATCH_MAX_JOBS"] = str(self.batch_max_jobs)

    def _child(self, argv: list[str], env: dict) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, CHILD, *argv], cwd=ROOT, env=env, start_new_session=True
        )
        self.children.append(proc)
        return proc

    def spec(self, reqs: list[dict], size: int, **extra) -> dict:
        a = self.args
        return {
            "model_dir": self.model_dir,
            "sampler": a.sampler,
            "steps": a.steps,
            "cfg_scale": a.cfg,
            "size": size,
            "negative_prompt": NEGATIVE,
            "warmup": WARMUP,
            "requests": reqs,
            **extra,
        }

    def images_at(self, size: int) -> int:
        """Timed images per run at `size`: --images, more for small images (a 64 px image takes
        ~0.15 s here; 4x as many keep a run's length, and its noise, like the larger sizes')."""
        return self.args.images * max(1, 256 // size)

    def round_requests(self, n: int) -> list[dict]:
        base = requests()
        return [base[i % BATCH] for i in range(n)]

    # ------------------------------------------------------------------ (a) bare
    def bare(self, n: int, size: int) -> dict:
        count = self.images_at(size)
        say(f"bare run {n} at {size} px: plain diffusers in a fresh subprocess, {count} images")
        spec = self.tmp / f"bare-{size}-{n}.json"
        out = self.tmp / f"bare-{size}-{n}.out.json"
        spec.write_text(
            json.dumps(
                self.spec(
                    self.round_requests(count), size, out_dir=str(self.tmp / f"bare-{size}-{n}")
                )
            )
        )
        t_spawn = time.time()
        proc = self._child(["bare", str(spec), str(out)], self.child_env)
        rc = proc.wait(timeout=self.args.timeout)
        if rc != 0:
            raise RuntimeError(f"bare run {n} at {size} px exited {rc}")
        res = json.loads(out.read_text())
        res["size"] = size
        for image in res["images"]:
            image["size"] = size
        res["t_spawn"] = t_spawn
        res["cold"] = res["t_first_done"] - t_spawn  # spawn -> first image saved
        res["per_image"] = res["images_seconds"] / len(res["images"])
        return res

    # ------------------------------------------------------------------ (b) platform
    def params(self, req: dict, size: int) -> dict:
        a = self.args
        return {
            "model_id": self.model.pk,
            "prompt": req["prompt"],
            "negative_prompt": NEGATIVE,
            "sampler": a.sampler,
            "steps": a.steps,
            "cfg_scale": a.cfg,
            "seed": req["seed"],
            "width": size,
            "height": size,
            "batch_count": 1,
            "batch_size": 1,
        }

    def wait(self, job_ids: list[int]) -> None:
        from apps.jobs.models import Job

        deadline = time.monotonic() + self.args.timeout
        while True:
            states = dict(Job.objects.filter(pk__in=job_ids).values_list("pk", "state"))
            if all(states.get(j) in TERMINAL for j in job_ids):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs still running after {self.args.timeout}s: {states}")
            time.sleep(0.05)

    def collect(self, job_id: int, t_submit: float) -> dict:
        from django.conf import settings

        from apps.jobs.models import Job
        from apps.outputs.models import Output

        job = Job.objects.get(pk=job_id)
        if job.state != "succeeded":
            raise RuntimeError(f"job {job.pk} ended {job.state}: {job.error[:3000]}")
        logs = list(job.events.filter(kind="log").order_by("seq").values_list("data", flat=True))
        outputs = job.result.get("outputs", [])
        files = [
            str(Path(settings.MEDIA_ROOT) / f)
            for f in Output.objects.filter(pk__in=[o["id"] for o in outputs])
            .order_by("pk")
            .values_list("file_path", flat=True)
        ]
        return {
            "job": job.pk,
            "prompt": job.params["prompt"],
            "seed": job.params["seed"],
            "size": job.params["width"],
            "t_submit": t_submit,
            "created": job.created_at.timestamp(),
            "dispatched": job.dispatched_at.timestamp() if job.dispatched_at else math.nan,
            "started": job.started_at.timestamp(),
            "finished": job.finished_at.timestamp(),
            "run": job.finished_at.timestamp() - job.started_at.timestamp(),
            "e2e": job.finished_at.timestamp() - t_submit,
            "model_loaded": job.result.get("model_loaded"),
            "batched_with": job.result.get("batched_with"),
            "logs": [str(d.get("message", "")) for d in logs],
            "files": files,
            "pixels": [pixel_sha(f) for f in files],
        }

    def submit(self, req: dict, size: int) -> tuple[int, float]:
        from apps.jobs import services

        t_submit = time.time()
        job = services.job_create(
            project=self.project,
            kind="image.generate",
            params=self.params(req, size),
            created_by=self.user,
        )
        return job.pk, t_submit

    def one_at_a_time(self, reqs: list[dict], size: int) -> list[dict]:
        out = []
        for req in reqs:
            job_id, t_submit = self.submit(req, size)
            self.wait([job_id])
            out.append(self.collect(job_id, t_submit))
        return out

    def platform_cold(self, size: int) -> dict:
        say(
            f"platform cold: the first image.generate job on the fresh worker (it loads), {size} px"
        )
        return self.one_at_a_time(requests()[:1], size)[0]

    def wait_started(self, job_id: int) -> None:
        from apps.jobs.models import Job

        deadline = time.monotonic() + self.args.timeout
        while not Job.objects.filter(pk=job_id, started_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not start within {self.args.timeout}s")
            time.sleep(0.005)

    def platform_stream(self, n: int, size: int) -> dict:
        """A stream of single-image jobs: each submitted once the one before it has started (and
        its batch-partner search is over) and the one before that has finished, so the queue
        always holds the next job and never two (which would batch). The worker's lookahead
        claims (starts) a job during the last step of the one before it: "started" alone would
        let the next submit land while that job has not yet looked for batch partners. Per
        image = first started -> last finished / jobs."""
        count = self.images_at(size)
        say(f"platform stream {n} at {size} px: {count} single-image jobs, one after another")
        pid = self.procs.procs["worker"].pid
        c0 = cpu_seconds(pid)
        submitted = []
        for req in self.round_requests(count):
            if submitted:
                self.wait_started(submitted[-1][0])
                if len(submitted) > 1:
                    self.wait([submitted[-2][0]])
                time.sleep(PARTNER_SEARCH_MARGIN)
            submitted.append(self.submit(req, size))
        self.wait([j for j, _ in submitted])
        jobs = [self.collect(j, t) for j, t in submitted]
        span = max(j["finished"] for j in jobs) - min(j["started"] for j in jobs)
        return {
            "size": size,
            "jobs": jobs,
            "per_image": span / count,
            # The worker process's CPU (all its threads: job, finisher, heartbeat, events) per job.
            "cpu_per_image": (cpu_seconds(pid) - c0) / count,
        }

    def warmup_at(self, size: int) -> dict:
        say(f"warm-up job at {size} px (untimed: the first image of this size on the worker)")
        return self.one_at_a_time([WARMUP], size)[0]

    def batch_warmup(self) -> dict:
        px = self.args.batch_px
        say(f"warm-up job at {px} px (untimed: the first image of this size on the warm worker)")
        return self.one_at_a_time([WARMUP], px)[0]

    def platform_sequential(self, n: int) -> dict:
        px = self.args.batch_px
        say(f"sequential round {n}: {BATCH} jobs at {px} px, one at a time")
        jobs = self.one_at_a_time(requests(), px)
        return {
            "jobs": jobs,
            "busy": sum(j["run"] for j in jobs),  # the worker's started -> finished, summed
            "e2e": sum(j["e2e"] for j in jobs),  # submit -> finished, summed
            "elapsed": jobs[-1]["finished"] - jobs[0]["t_submit"],  # + the bench's polling
        }

    def platform_batched(self, n: int) -> dict:
        from django.db import transaction

        px = self.args.batch_px
        say(f"batched round {n}: {BATCH} jobs at {px} px created in one transaction")
        t0 = time.time()
        submitted = []
        with transaction.atomic():
            for req in requests():
                submitted.append(self.submit(req, px))
        t_commit = time.time()
        ids = [j for j, _ in submitted]
        self.wait(ids)
        jobs = [self.collect(j, t) for j, t in submitted]
        return {
            "jobs": jobs,
            "t0": t0,
            "t_commit": t_commit,
            "elapsed": max(j["finished"] for j in jobs) - t0,
            "busy": max(j["finished"] for j in jobs) - min(j["started"] for j in jobs),
        }

    # ------------------------------------------------------------------ pure (context)
    def pure(self) -> dict:
        a = self.args
        say(
            f"pure level: 8 x generate_images vs generate_batch at {a.batch_px} px, "
            f"{a.batch_rounds} rounds; in a plain subprocess"
        )
        spec = self.tmp / "pure.json"
        out = self.tmp / "pure.out.json"
        spec.write_text(json.dumps(self.spec(requests(), a.batch_px, reps=a.batch_rounds)))
        proc = self._child(["pure", str(spec), str(out)], self.child_env)
        rc = proc.wait(timeout=self.args.timeout)
        if rc != 0:
            raise RuntimeError(f"the pure run exited {rc}")
        return json.loads(out.read_text())

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        stop_everything(
            children=self.children,
            procs=self.procs,
            redis_proc=self.redis_proc,
            tmp=self.tmp,
            keep=self.args.keep,
        )

    def worker_log(self) -> str:
        return self.procs.log("worker") if self.procs is not None else ""

    def log_tails(self) -> str:
        out = []
        logs = self.tmp / "logs"
        if logs.exists():
            for f in sorted(logs.glob("*.log")):
                out.append(f"--- {f.name} (tail)\n" + f.read_text(errors="replace")[-4000:])
        return "\n".join(out)


# ---------------------------------------------------------------------------------- analysis

LOAD_WORDS = re.compile(r": loaded\b|\bpreparing\b", re.I)


def load_lines(logs: list[str]) -> list[str]:
    return [m for m in logs if LOAD_WORDS.search(m)]


def worker_load_jobs(text: str) -> list[int]:
    """Job ids whose worker-log lines say the model was loaded or prepared."""
    ids = []
    for m in re.finditer(r"job (\d+): ([^\n]*)", text):
        if LOAD_WORDS.search(m.group(2)):
            ids.append(int(m.group(1)))
    return ids


def goal_ratio(size: int) -> float:
    return GOAL_RATIO.get(size, 0.98)


def stream_probes(stream: dict, probes: list[dict]) -> dict[str, list[dict]]:
    """The worker's probes during one stream, by kind, in time order."""
    jobs = stream["jobs"]
    lo = min(j["started"] for j in jobs) - 0.05
    hi = max(j["finished"] for j in jobs) + 0.05
    found: dict[str, list[dict]] = {}
    for p in sorted(probes, key=lambda p: p["t0"]):
        if lo <= p["t0"] and p["t1"] <= hi:
            found.setdefault(p["k"], []).append(p)
    return found


def stream_split(stream: dict, probes: list[dict]) -> dict[str, float] | None:
    """Per image in a stream: the pipeline call, the critical path between pipeline calls and
    the finisher's off-path work (PNG, hash, files, rows, outcome), from the worker's probes;
    None when they are missing.

    A job the worker's Lookahead claimed during the previous job's last step (its job_claim
    ended before that job's pipeline call did) starts in the same Celery task: its gap is the
    hand-off plus its setup ("ahead"). A job claimed from its own message splits into hand-off,
    Celery ack and next message, claim and setup."""
    found = stream_probes(stream, probes)
    gens = found.get("generate_images", [])
    n = len(stream["jobs"])
    if len(gens) != n:
        return None
    gaps = [b["t0"] - a["t1"] for a, b in zip(gens, gens[1:], strict=False)]
    order = [j["job"] for j in sorted(stream["jobs"], key=lambda j: j["job"])]
    ids = set(order)
    claims = [p for p in found.get("job_claim", []) if p.get("job") in ids]
    runs = {
        p["job"]: p
        for p in found.get("execute_job", [])
        if p.get("job") in ids and p.get("value") != "not-claimed"
    }
    parts: dict[str, list[float]] = {
        "handoff": [],
        "message": [],
        "claim_in": [],
        "setup": [],
        "ahead_gap": [],
    }
    for k in range(n - 1):
        nxt = order[k + 1]
        claim = max(
            (c for c in claims if c["job"] == nxt and c["t1"] <= gens[k + 1]["t0"]),
            key=lambda c: c["t1"],
            default=None,
        )
        if claim is None:
            continue
        if claim["t1"] <= gens[k]["t1"]:  # claimed ahead, during job k's last step
            parts["ahead_gap"].append(gens[k + 1]["t0"] - gens[k]["t1"])
            continue
        prev, run = runs.get(order[k]), runs.get(nxt)
        if prev is None or run is None or prev["t1"] > run["t0"]:
            continue
        parts["handoff"].append(prev["t1"] - gens[k]["t1"])
        parts["message"].append(run["t0"] - prev["t1"])
        parts["claim_in"].append(claim["t1"] - run["t0"])
        parts["setup"].append(gens[k + 1]["t0"] - claim["t1"])
    completes = found.get("complete", [])
    return {
        "gen": mean([g["t1"] - g["t0"] for g in gens]),
        "gen_cpu": mean([g["cpu"] for g in gens]),
        "gap": mean(gaps) if gaps else math.nan,
        "gap_max": max(gaps) if gaps else math.nan,
        "claim": mean([c["t1"] - c["t0"] for c in claims]) if claims else math.nan,
        "claim_cpu": mean([c["cpu"] for c in claims]) if claims else math.nan,
        "complete": mean([c["t1"] - c["t0"] for c in completes]) if completes else math.nan,
        "complete_cpu": mean([c["cpu"] for c in completes]) if completes else math.nan,
        "write": mean([w["t1"] - w["t0"] for w in found.get("write_image", [])]),
        "ahead": len(parts["ahead_gap"]),
        "by_message": len(parts["setup"]),
        **{k: mean(v) if v else math.nan for k, v in parts.items()},
    }


def report(
    bench: Bench, args, sizes, colds, streams, bares, batch_warm, seqs, batches, pure, elapsed
) -> tuple[str, bool]:
    probes = read_probes(bench.probe_dir)
    cold = colds[0]
    out = _report_head(bench, args, sizes, streams, batches, pure, elapsed)
    figures = {}
    for size in sizes:
        lines, fig = _report_size(
            bench,
            args,
            size,
            bares[size],
            streams[size],
            probes,
            pure if size == args.batch_px else None,
        )
        out += lines
        figures[size] = fig
    out.append("")
    first = sizes[0]
    cold_bare = mean([b["cold"] for b in bares[first]])
    out.append(_report_cold(bares[first], cold, cold_bare))
    stream_jobs = [j for size in sizes for st in streams[size] for j in st["jobs"]]
    seq_jobs = [j for sq in seqs for j in sq["jobs"]]
    batch_jobs = [j for b in batches for j in b["jobs"]]
    later = stream_jobs + colds[1:] + [batch_warm] + seq_jobs + batch_jobs
    first_stream = streams[first][0]
    loads, loads_nothing = _report_loads(bench, cold, [first_stream], later, probes)
    out += loads
    batched_in_streams = [j["job"] for j in stream_jobs if j["batched_with"]]
    out.append(
        f"  stream jobs that ran in a batch (expected none: each stream job runs alone): "
        f"{batched_in_streams or 'none'}"
    )
    out.append("")
    all_bares = [b for size in sizes for b in bares[size]]
    pixels, same, differ, batch_same = _report_pixels(
        args, all_bares, cold, stream_jobs, seq_jobs, batch_jobs, pure
    )
    out += pixels
    out.append("")
    batching, speedup = _report_batching(bench, args, seqs, batches, batch_warm, pure)
    out += batching
    largest = max((len(j["batched_with"] or []) + 1 for j in batch_jobs), default=0)
    for n in bench.notes:
        out.append(f"NOTE: {n}")
    smallest = figures[min(sizes)]
    fixed_ms = smallest["fixed_ms"]
    ratios_met = all(figures[s]["ratio"] >= goal_ratio(s) for s in sizes)
    met_all = (
        ratios_met
        and fixed_ms <= GOAL_FIXED_MS
        and loads_nothing
        and speedup >= GOAL_SPEEDUP
        and not batched_in_streams
    )
    ratio_text = " ".join(
        f"{s}px={figures[s]['ratio']:.3f} (goal >= {goal_ratio(s)}, "
        f"{'met' if figures[s]['ratio'] >= goal_ratio(s) else 'MISSED'})"
        for s in sizes
    )
    out.append(
        f"RESULT images warm ratio {ratio_text} | fixed cost {fixed_ms:.1f} ms/image at "
        f"{min(sizes)}px (goal <= {GOAL_FIXED_MS:g} ms, "
        f"{'met' if fixed_ms <= GOAL_FIXED_MS else 'MISSED'}) | second job loads nothing: "
        f"{'yes' if loads_nothing else 'NO'} (goal yes) | batching {speedup:.1f}x at "
        f"{args.batch_px}px (goal >= {GOAL_SPEEDUP}x, "
        f"{'met' if speedup >= GOAL_SPEEDUP else 'MISSED'}; largest batch {largest} of {BATCH}) "
        "[s/img bare/platform: "
        + ", ".join(f"{s}px {figures[s]['bare_pi']:.3f}/{figures[s]['plat_pi']:.3f}" for s in sizes)
        + f"; CPU ratio {min(sizes)}px {smallest['cpu_ratio']:.2f}; cold {cold['e2e']:.1f}s vs "
        f"bare {cold_bare:.1f}s; same pixels {same}/{same + differ}, batched vs alone "
        f"{batch_same}/{len(batch_jobs)}]"
    )
    return "\n".join(out), met_all


def _report_head(bench: Bench, args, sizes, streams, batches, pure, elapsed) -> list[str]:
    """The run's facts and the request every image is made from."""
    order = []
    for size in sizes:
        order.append(
            f"[{size} px: bare, platform warm-up, "
            + ", ".join(["platform stream, bare"] * len(streams[size]))
            + "]"
        )
    out = [
        "Atelier image bench: "
        + ", ".join(
            f"{k}={v}"
            for k, v in {
                **bench.facts,
                "cpus": os.cpu_count(),
                "OMP_NUM_THREADS": "1 (bare subprocesses and worker)",
                "order": " ".join(order)
                + f", warm-up at {args.batch_px} px, "
                + ", ".join(["sequential, batched"] * len(batches))
                + (", pure" if pure else ""),
                "wall time": f"{elapsed:.0f}s",
            }.items()
        )
    ]
    out.append(
        f"  every image: tiny-sd (build_tiny_pipeline seed 0), square at {', '.join(map(str, sizes))} px "
        f"(warm ratio; {args.images} images per run, x{256 // min(sizes)} at {min(sizes)} px) and "
        f"{args.batch_px} px (batching), {args.steps} steps {args.sampler!r}, CFG {args.cfg:g}, "
        f"batch_size 1, negative {NEGATIVE!r}, {BATCH} prompts with seeds {SEED0}..{SEED0 + BATCH - 1}"
    )
    out.append(
        "  warm ratio = bare s/img (a loop of pipe() + image.save(png), after a warm-up) / "
        "platform s/img (a stream of single-image jobs, each submitted once the one before it "
        "started: first started -> last finished / jobs). Fixed cost = platform - bare s/img."
    )
    out.append("")
    return out


def _report_size(
    bench: Bench, args, size: int, bares: list[dict], streams: list[dict], probes, pure
) -> tuple[list[str], dict[str, float]]:
    """Bare vs the platform's stream at one size: the ratio, the fixed cost and where it goes."""
    out: list[str] = [f"At {size} px, warm:"]
    bare_pi = mean([b["per_image"] for b in bares])
    plat_pi = mean([st["per_image"] for st in streams])
    ratio = bare_pi / plat_pi
    for i, b in enumerate(bares, 1):
        sec = [x["seconds"] for x in b["images"]]
        out.append(
            f"  bare {i}:              {b['per_image']:.4f} s/img  (median {pct(sec, 50):.4f}, "
            f"max {max(sec):.4f}; {len(sec)} images; torch threads {b['torch_threads']}; "
            f"{b['versions']['torch']}, diffusers {b['versions']['diffusers']})"
        )
    for i, st in enumerate(streams, 1):
        jobs = st["jobs"]
        run = [j["run"] for j in jobs]
        out.append(
            f"  platform stream {i}:   {st['per_image']:.4f} s/img  ({len(jobs)} jobs "
            f"{jobs[0]['job']}..{jobs[-1]['job']}; started -> finished per job mean "
            f"{mean(run):.3f} s, which includes its hand-off and writes)"
        )
    fixed_ms = 1000 * (plat_pi - bare_pi)
    goal = goal_ratio(size)
    out.append(
        f"  ratio bare/platform = {bare_pi:.4f} / {plat_pi:.4f} = {ratio:.3f} (goal >= {goal}: "
        f"{'met' if ratio >= goal else 'MISSED'}); fixed cost {fixed_ms:+.1f} ms/image"
    )
    splits = [x for x in (stream_split(st, probes) for st in streams) if x]
    if splits:

        def avg(key: str) -> float:
            return mean([x[key] for x in splits])

        bare_cpu = mean([i["cpu"] for b in bares for i in b["images"]])
        out.append(
            f"  where a stream image's time goes (worker probes, mean of {len(splits)} streams): "
            f"pipeline call {avg('gen'):.4f} s (bare's whole image {bare_pi:.4f} s incl. its PNG "
            f"save; thread CPU {avg('gen_cpu'):.4f} vs bare {bare_cpu:.4f} s); critical path "
            f"between pipeline calls {1000 * avg('gap'):.1f} ms (max "
            f"{1000 * max(x['gap_max'] for x in splits):.1f}); "
            f"{sum(x['ahead'] for x in splits)} jobs claimed ahead by the worker's lookahead "
            f"(during the job before's last step): hand-off + setup {1000 * avg('ahead_gap'):.1f} "
            f"ms; {sum(x['by_message'] for x in splits)} from their own message: hand-off "
            f"{1000 * avg('handoff'):.1f} ms + Celery ack and next message "
            f"{1000 * avg('message'):.1f} ms + claim {1000 * avg('claim_in'):.1f} ms + job setup "
            f"{1000 * avg('setup'):.1f} ms; job_claim {1000 * avg('claim'):.1f} ms, CPU "
            f"{1000 * avg('claim_cpu'):.1f} ms; off the "
            f"critical path on the finisher thread: {1000 * avg('complete'):.1f} ms per job "
            f"(PNG + hash + files {1000 * avg('write'):.1f} ms, rows and outcome; CPU "
            f"{1000 * avg('complete_cpu'):.1f} ms)"
        )
    if pure:
        pure_pi = mean(pure["sequential_seconds"]) / pure["n"]
        out.append(
            f"  pure generate_images in a plain subprocess (no Django/Celery): {pure_pi:.4f} s/img"
        )
    bare_cpu_pi = mean([b["images_process_cpu"] / len(b["images"]) for b in bares])
    plat_cpu_pi = mean([st["cpu_per_image"] for st in streams])
    cpu_ratio = bare_cpu_pi / plat_cpu_pi if plat_cpu_pi > 0 else math.nan
    out.append(
        f"  cross-check on CPU time: process CPU per image, bare {bare_cpu_pi:.4f} s vs the "
        f"worker process {plat_cpu_pi:.4f} s (all its threads, finisher included): ratio "
        f"{cpu_ratio:.3f}"
    )
    bare_pis = [b["per_image"] for b in bares]
    spread = (max(bare_pis) - min(bare_pis)) / mean(bare_pis)
    if spread > 0.03:
        bench.notes.append(
            f"at {size} px the bare runs alone differ by {100 * spread:.0f}% in s/img (load "
            f"average {bench.facts.get('load', '?')}): read that size's ratio with that in mind"
        )
    return out, {
        "ratio": ratio,
        "bare_pi": bare_pi,
        "plat_pi": plat_pi,
        "cpu_ratio": cpu_ratio,
        "fixed_ms": fixed_ms,
    }


def _report_cold(bares, cold, cold_bare: float) -> str:
    """The cold job on the fresh worker against a bare spawn -> first image saved."""
    return (
        f"Cold: platform job 1 on the fresh worker, submit -> finished {cold['e2e']:.2f}s "
        f"(started -> finished {cold['run']:.2f}s; model_loaded={cold['model_loaded']}); "
        f"bare spawn -> first image saved "
        + " / ".join(f"{b['cold']:.2f}s" for b in bares)
        + f" (mean {cold_bare:.2f}s: imports "
        + " / ".join(f"{b['import_seconds']:.2f}" for b in bares)
        + ", load "
        + " / ".join(f"{b['load_seconds']:.2f}" for b in bares)
        + ", first image "
        + " / ".join(f"{b['first_image_seconds']:.2f}" for b in bares)
        + ")"
    )


def _report_loads(bench: Bench, cold, warms, later, probes) -> tuple[list[str], bool]:
    """The second job (and every later one) loads nothing: results, events, worker log and
    probes agree. Returns the lines and whether that holds."""
    out: list[str] = []
    flags = [j["model_loaded"] for j in later]
    event_loads = {j["job"]: load_lines(j["logs"]) for j in later if load_lines(j["logs"])}
    wlog = bench.worker_log()
    wlog_loads = worker_load_jobs(wlog)
    later_ids = {j["job"] for j in later}
    wlog_later = [j for j in wlog_loads if j in later_ids]
    warm_msgs = sum(1 for j in later if any("warm (no load)" in m for m in j["logs"]))
    second = warms[0]["jobs"][0] if warms and warms[0]["jobs"] else None
    loads_nothing = (
        bool(later) and all(f is False for f in flags) and not event_loads and not wlog_later
    )
    out.append(
        f"Second job on the warm worker (job {second['job'] if second else '-'}): model_loaded="
        f"{second['model_loaded'] if second else '-'}; all {len(later)} later jobs: model_loaded "
        f"False for {sum(1 for f in flags if f is False)}, True for "
        f"{sum(1 for f in flags if f is True)}, missing for {sum(1 for f in flags if f is None)}; "
        f"'warm (no load)' in the events of {warm_msgs}; load/prepare lines in their events: "
        f"{len(event_loads)} jobs {sorted(event_loads)[:8]}; worker log load lines for jobs "
        f"{wlog_loads} (later jobs among them: {wlog_later or 'none'})"
    )
    if cold["model_loaded"] is not True:
        bench.notes.append(
            f"the cold job's result says model_loaded={cold['model_loaded']!r}, expected True"
        )
    n_bars = len(re.findall(r"Loading pipeline components\.\.\.:\s+0%", wlog))
    loads = [p for p in probes if p["k"] == "load_pipeline"]
    lookups = [p for p in probes if p["k"] == "pipeline"]
    out.append(
        f"  worker probes: load_pipeline called {len(loads)} time(s) (expected 1, in job "
        f"{cold.get('job')}), {len(lookups)} model cache lookups, "
        f"{sum(1 for p in lookups if p.get('loaded'))} of them loading; diffusers 'Loading "
        f"pipeline components' progress bars in the worker log: {n_bars}"
    )
    if len(loads) != 1:
        loads_nothing = False
    return out, loads_nothing


def _report_pixels(
    args, bares, cold, warm_jobs, seq_jobs, batch_jobs, pure
) -> tuple[list[str], int, int, int]:
    """Same image, bare vs platform and batched vs alone. Returns the lines and the counts:
    (same, differ, batched jobs identical to alone)."""
    out: list[str] = []
    bare_px: dict[tuple, set] = {}
    bare_file: dict[tuple, str] = {}
    for b in bares:
        for im in b["images"]:
            key = (im["prompt"], im["seed"], im["size"])
            bare_px.setdefault(key, set()).add(im["pixels"])
            bare_file.setdefault(key, im["path"])
    bare_stable = all(len(v) == 1 for v in bare_px.values())
    plat_by_key: dict[tuple, dict] = {}
    for j in [cold, *warm_jobs]:
        plat_by_key.setdefault((j["prompt"], j["seed"], j["size"]), j)
    same = differ = 0
    diffs = []
    for key, j in plat_by_key.items():
        if key not in bare_px or not j["pixels"]:
            continue
        if j["pixels"][0] in bare_px[key]:
            same += 1
        else:
            differ += 1
            diffs.append(max_pixel_diff(bare_file[key], j["files"][0]))
    out.append(
        f"Same image, bare vs platform (pixels, same prompt, seed and size): identical for {same} of "
        f"{same + differ} requests"
        + (f"; the others differ by at most {max(diffs)}/255 per channel" if diffs else "")
        + f"; bare runs agree among themselves: {'yes' if bare_stable else 'NO'}"
    )
    line, batch_same = _report_batched_pixels(args, seq_jobs, batch_jobs)
    out.append(line)
    if pure:
        pairs = list(zip(pure["sequential_pixels"], pure["batch_pixels"], strict=True))
        ps = sum(a == b for a, b in pairs)
        odd = [SEED0 + i for i, (a, b) in enumerate(pairs) if a != b]
        out.append(
            f"  pure generate_batch (8 in one call) vs generate_images: identical for {ps} of "
            f"{pure['n']} requests" + (f" (differ: seeds {odd})" if odd else "")
        )
    return out, same, differ, batch_same


def _report_batched_pixels(args, seq_jobs, batch_jobs) -> tuple[str, int]:
    """Batched vs alone: the sequential rounds' jobs of the same request at the same size."""
    alone_px: dict[tuple, set] = {}
    alone_file: dict[tuple, str] = {}
    for j in seq_jobs:
        key = (j["prompt"], j["seed"], j["size"])
        alone_px.setdefault(key, set()).update(j["pixels"])
        if j["files"]:
            alone_file.setdefault(key, j["files"][0])
    alone_stable = all(len(v) == 1 for v in alone_px.values())
    batch_same = 0
    batch_diff = []
    for j in batch_jobs:
        key = (j["prompt"], j["seed"], j["size"])
        if j["pixels"] and j["pixels"][0] in alone_px.get(key, set()):
            batch_same += 1
        elif j["files"] and key in alone_file:
            size = len(j["batched_with"] or []) + 1
            batch_diff.append(
                f"job {j['job']} (seed {j['seed']}, in a batch of {size}): at most "
                f"{max_pixel_diff(alone_file[key], j['files'][0])}/255"
            )
        else:
            batch_diff.append(f"job {j['job']} (seed {j['seed']}): nothing to compare")
    line = (
        f"  batched vs alone (platform, same request at {args.batch_px} px; alone = the "
        f"sequential rounds): identical for {batch_same} of {len(batch_jobs)} jobs"
        + (f"; differ: {', '.join(batch_diff)}" if batch_diff else "")
        + f"; sequential rounds agree among themselves: {'yes' if alone_stable else 'NO'}"
    )
    return line, batch_same


def _report_batching(
    bench: Bench, args, seqs, batches, batch_warm, pure
) -> tuple[list[str], float]:
    """Batching at --batch-px: each sequential/batched pair, the speed-up and the pure level.
    Returns the lines and the speed-up."""
    out: list[str] = []
    px = args.batch_px
    seq_busy = mean([r["busy"] for r in seqs])
    seq_e2e = mean([r["e2e"] for r in seqs])
    batched = mean([b["elapsed"] for b in batches])
    speedup = seq_busy / batched
    out.append(
        f"Batching at {px} px, {BATCH} compatible requests (max {bench.batch_max_jobs} jobs per "
        f"batch); rounds alternate sequential, batched; before them one untimed warm-up job at "
        f"{px} px (job {batch_warm['job']}: started -> finished {batch_warm['run']:.2f}s, "
        f"model_loaded={batch_warm['model_loaded']})"
    )
    for i, (sq, b) in enumerate(zip(seqs, batches, strict=True), 1):
        out += _report_batch_pair(i, sq, b)
    out.append(
        f"  speed-up = sequential {seq_busy:.2f}s (mean of sums of started -> finished) / batched "
        f"{batched:.2f}s (mean first submit -> last finished) = {speedup:.2f}x "
        f"(goal >= {GOAL_SPEEDUP}x: {'met' if speedup >= GOAL_SPEEDUP else 'MISSED'}); "
        f"against submit -> finished sequential: {seq_e2e / batched:.2f}x"
    )
    if pure:
        s, bt = mean(pure["sequential_seconds"]), mean(pure["batch_seconds"])
        out.append(
            f"  pure level at {pure.get('size', px)} px (plain subprocess): 8 x generate_images "
            + " / ".join(f"{x:.2f}" for x in pure["sequential_seconds"])
            + "s, generate_batch "
            + " / ".join(f"{x:.2f}" for x in pure["batch_seconds"])
            + f"s: {s / bt:.2f}x (thread CPU: {mean(pure['sequential_cpu']) / mean(pure['batch_cpu']):.2f}x)"
        )
    return out, speedup


def _report_batch_pair(i: int, sq: dict, b: dict) -> list[str]:
    """One sequential round and the batched round after it: times and how the jobs grouped."""
    r = [j["run"] for j in sq["jobs"]]
    out = [
        f"  sequential {i}: sum of started -> finished {sq['busy']:.2f}s = "
        f"{BATCH / sq['busy']:.2f} img/s (per job mean {mean(r):.3f}, max {max(r):.3f}); "
        f"sum of submit -> finished {sq['e2e']:.2f}s; first submit -> last finished "
        f"{sq['elapsed']:.2f}s (with the bench's polling); jobs "
        f"{sq['jobs'][0]['job']}..{sq['jobs'][-1]['job']}"
    ]
    sizes = sorted((len(j["batched_with"] or []) + 1 for j in b["jobs"]), reverse=True)
    groups = []
    seen: set[int] = set()
    for j in b["jobs"]:
        if j["job"] in seen:
            continue
        members = {j["job"], *(j["batched_with"] or [])}
        seen |= members
        groups.append(len(members))
    lead_start = min(j["started"] for j in b["jobs"])
    stamps = [j["dispatched"] for j in b["jobs"] if not math.isnan(j["dispatched"])]
    race = ""
    if len(groups) > 1 and stamps:
        race = (
            f"; split: the lead's partner search did not see all 8 as queued and dispatched "
            f"(dispatched_at stamps span {1000 * (max(stamps) - min(stamps)):.0f} ms after "
            f"the commit; the lead was claimed {1000 * (lead_start - min(stamps)):.0f} ms "
            "after the first)"
        )
    out.append(
        f"  batched {i}:    first submit -> last finished {b['elapsed']:.2f}s = "
        f"{BATCH / b['elapsed']:.2f} img/s (8 job_create + commit {b['t_commit'] - b['t0']:.2f}s, "
        f"first started -> last finished {b['busy']:.2f}s); batches of {groups} jobs "
        f"(largest {sizes[0]}){race}; this pair {sq['busy'] / b['elapsed']:.2f}x"
    )
    return out


# ---------------------------------------------------------------------------------------- main


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--images",
        type=int,
        default=8,
        help="timed images per bare run / platform stream (x 256/size below 256 px)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="bare, platform cold, then N x (platform warm round, bare); all runs are averaged",
    )
    ap.add_argument(
        "--batch-rounds",
        type=int,
        default=2,
        help="sequential + batched round pairs at --batch-px (and pure reps)",
    )
    ap.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
        default=[64, 256, 512],
        help="warm-ratio image sizes, px, square, multiples of 8 (default 64,256,512)",
    )
    ap.add_argument(
        "--batch-px", type=int, default=64, help="batching image size, px, a multiple of 8"
    )
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument(
        "--sampler", default="Euler a", choices=["Euler a", "Euler", "DDIM", "UniPC", "DPM++ 2M"]
    )
    ap.add_argument(
        "--batch-max-jobs",
        type=int,
        default=None,
        help="run the worker with ATELIER_BATCH_MAX_JOBS=N (default: the setting's default)",
    )
    ap.add_argument("--no-pure", action="store_true", help="skip the pure-level context figures")
    ap.add_argument("--timeout", type=float, default=300, help="per run / job wait, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, DB, images)")
    args = ap.parse_args()
    if args.rounds < 1 or args.images < 1 or args.batch_rounds < 1:
        ap.error("--rounds, --images and --batch-rounds must be at least 1")
    if any(x % 8 or x < 8 for x in args.sizes) or args.batch_px % 8:
        ap.error("--sizes and --batch-px must be multiples of 8")
    args.sizes = sorted(set(args.sizes))
    return args


def _run_all(bench: Bench, args) -> tuple:
    """Every run in the documented order: report()'s arguments after `bench`, `args`."""
    sizes = args.sizes
    colds, streams, bares = [], {}, {}
    for k, size in enumerate(sizes):
        bares[size] = [bench.bare(1, size)]
        colds.append(bench.platform_cold(size) if k == 0 else bench.warmup_at(size))
        streams[size] = []
        for i in range(args.rounds):  # B P B P B: drift in the machine's load cancels
            streams[size].append(bench.platform_stream(i + 1, size))
            bares[size].append(bench.bare(i + 2, size))
    batch_warm = bench.batch_warmup()
    seqs, batches = [], []
    for i in range(args.batch_rounds):  # S B S B: drift cancels
        seqs.append(bench.platform_sequential(i + 1))
        batches.append(bench.platform_batched(i + 1))
    pure = None if args.no_pure else bench.pure()
    return sizes, colds, streams, bares, batch_warm, seqs, batches, pure


def main() -> int:
    args = _parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = Bench(args)
    t_start = time.monotonic()
    error = None
    text = ""
    try:
        bench.setup()
        runs = _run_all(bench, args)
        # The report reads image files and the worker log: build it before cleaning up.
        text, _ = report(bench, args, *runs, time.monotonic() - t_start)
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
        print(f"RESULT images FAILED ({error.splitlines()[0][:200]})")
        return 130 if error == "interrupted" else 1
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
