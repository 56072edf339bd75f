"""Fine-tune benchmark (issue 4): the platform's LoRA job against the team's bare script.

    .venv/bin/python bench/finetune.py [--steps 600] [--rounds 2] [--no-smollm2] [--keep]

In an isolated temp dir (own SQLite database, own embedded Redis, own var/ folders) it trains the
tiny Llama (workers.ml.models.build_tiny_llama, built once, before anything is timed) with the same
rows and hyperparameters:

(a) bare: bench/_finetune_bare.bare_run in a fresh Python subprocess (the recipe as a plain
    script: from_pretrained, LoraConfig, TrainingArguments, Trainer.train, save_pretrained);
(b) platform: services.job_create of a `finetune.lora` job -> a real Celery worker subprocess
    (threads pool, started and idle before the submit; it has not run a job yet, so it imports
    torch/transformers/peft inside the job just as the bare subprocess does) -> succeeded.

Runs alternate, bare first and last (bare, then --rounds x (platform job, bare); default 2 rounds:
B P B P B), and every run of a side is averaged, so drift in a shared machine's load mostly cancels
out. Both sides run with OMP_NUM_THREADS=1 (and MKL_NUM_THREADS=1): the bare subprocesses and the
worker get the same environment. 600 steps of the tiny model is 5-10 s of training loop.

Printed:
- training-loop throughput, tokens per second: real (non-padding) tokens handed to the training
  loop / wall time of Trainer.train(). The platform's figure is the job's own: the
  `train_tokens_per_second` of its final metrics event (checked against job.result). Ratio =
  platform / bare.
- end-to-end overhead: platform job 1 (job_create called -> Job.finished_at, the moment the row
  turned succeeded; the worker's first job, so it imports torch/transformers/peft like a fresh
  script) minus the mean bare run (subprocess spawned -> bare_run returned, the adapter saved; the
  interpreter's ~1-2 s teardown after that is left out, in the bare side's favour). Both include
  library imports, model load, tokenization, the training loop with its checkpoints, and saving
  the adapter. Only the platform includes: job validation and DB rows, Celery dispatch and pickup, claim and lease,
  reading the dataset split, eval loss/perplexity before and after, checkpoint COMPLETE markers,
  the model card, the adapter zip, publishing the adapter to media + Adapter row + audit, event
  writes (+ websocket doorbells) and job_finish. Only the bare includes Python interpreter
  start-up. The same difference without the library imports (the noisiest part) is printed too.
- where the platform's time goes (timing probes in the worker: bench/_finetune_probes.py).
- SmolLM2-135M-Instruct LoRA steps/s (ensure_smollm2 into the repository's var/models, reusing a
  finished conversion): a few optimizer steps at seq 128, batch 4, through the platform's own
  training function (workers.ml.finetune.train_lora) in a subprocess with --smollm2-threads torch
  threads (default: all CPUs). Skip with --no-smollm2.

Diagnosis: --keep keeps the temp dir (worker log, probes, database); --profile-train cProfiles
every Trainer.train; --what-if background-flush / doorbell-loop patch a proposed product change
into the worker from the bench (never the product), and --what-if-event-interval S runs the worker
with ATELIER_EVENT_MIN_INTERVAL=S; the RESULT line then says WHAT-IF.

The last line printed is one RESULT line.
"""

from __future__ import annotations

import argparse
import csv
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is bench/: replace it by the repository root.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from bench._common import bench_policy, mean, pct, say, stop_everything  # noqa: E402
from bench._finetune_bare import DEFAULT_TEMPLATE, demo_rows  # noqa: E402
from bench._finetune_probes import read_all  # noqa: E402
from tests.harness import Processes, start_embedded_redis  # noqa: E402

GOAL_RATIO = 0.97
GOAL_OVERHEAD_S = 3.0
TERMINAL = ("succeeded", "failed", "cancelled")
CHILD = str(ROOT / "bench" / "_finetune_child.py")


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-ftbench-"))
        self.redis_proc: subprocess.Popen | None = None
        self.procs: Processes | None = None
        self.children: list[subprocess.Popen] = []
        self.facts: dict[str, str] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis_proc, redis_url = start_embedded_redis(self.tmp / "redis")
        db_url = self.args.database_url or f"sqlite:///{(self.tmp / 'bench.sqlite3').resolve()}"
        self.facts["database"] = "given --database-url" if self.args.database_url else "SQLite"
        self.probe_dir = self.tmp / "probes"
        self.probe_dir.mkdir()
        env = self._environment(tag, redis_url, db_url)
        os.environ.update(env)  # before django.setup(): settings read the environment at import
        (self.tmp / "var").mkdir()
        self.procs = Processes(env=self._process_env(env), log_dir=self.tmp / "logs")
        # The bare subprocess gets the worker's environment, less the probe hook (no Django there).
        self.child_env = {
            k: v
            for k, v in self.procs.env.items()
            if k not in ("ATELIER_BENCH_FT_PROBE_DIR", "ATELIER_BENCH_FT_WHATIF")
        }
        self._migrate_and_build()
        self._create_rows(tag)
        self._import_dataset()
        say("starting the platform worker (queues gpu,cpu; threads pool, concurrency 1)")
        self.procs.worker(queues="gpu,cpu")

    def _environment(self, tag: str, redis_url: str, db_url: str) -> dict[str, str]:
        """The isolated run's settings: own database, Redis, var/ folders and channel prefix."""
        return {
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "ATELIER_JOB_KIND_MODULES": "bench._finetune_probes",
            "ATELIER_BENCH_FT_PROBE_DIR": str(self.probe_dir),
            "ATELIER_VAR_DIR": str(self.tmp / "var"),
            "ATELIER_MEDIA_ROOT": str(self.tmp / "media"),
            "ATELIER_JOBS_DIR": str(self.tmp / "jobs"),
            "ATELIER_CHANNEL_PREFIX": f"atelier-ftbench-{tag}",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }

    def _process_env(self, env: dict[str, str]) -> dict[str, str]:
        """The worker's environment: one torch thread, and the what-ifs and profiling asked for."""
        # Processes puts os.environ and `env` over its OMP_NUM_THREADS=1 default: force it here.
        proc_env = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if self.args.what_if_event_interval is not None:
            proc_env["ATELIER_EVENT_MIN_INTERVAL"] = str(self.args.what_if_event_interval)
        if self.args.profile_train:
            (self.tmp / "pstats").mkdir()
            proc_env["ATELIER_BENCH_FT_CPROFILE"] = str(self.tmp / "pstats")
        if "background-flush" in self.args.what_if:
            proc_env["ATELIER_BENCH_FT_WHATIF"] = "background-flush"
        if "doorbell-loop" in self.args.what_if:  # bench/probes.py's what-if, via bench.jobkinds
            proc_env["ATELIER_BENCH_WHATIF"] = "doorbell-loop"
            proc_env["ATELIER_JOB_KIND_MODULES"] += ",bench.jobkinds"
        return proc_env

    def _migrate_and_build(self) -> None:
        """Migrate the fresh database and build the tiny Llama, side by side (not timed)."""
        say("migrating the fresh database; building the tiny Llama (setup, not timed)")
        t = time.monotonic()
        migrate = subprocess.Popen(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        self.children.append(migrate)
        models_dir = self.tmp / "var" / "models"
        models_dir.mkdir(parents=True)
        build = self._child(["build-tiny", str(models_dir / "tiny-llama")], self.child_env)
        if migrate.wait() != 0:
            raise RuntimeError("manage.py migrate failed")
        if build.wait() != 0:
            raise RuntimeError("building the tiny Llama failed")
        self.facts["setup"] = f"{time.monotonic() - t:.1f}s"
        self.facts["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())

    def _create_rows(self, tag: str) -> None:
        """The bench's user and project, and the built-in tiny-llama row on the folder built."""
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from apps.models.models import BaseModel
        from apps.models.services import ensure_builtin_rows, model_folder
        from apps.projects.models import Membership, Project

        self.user = get_user_model().objects.create_user(username=f"ftbench-{tag}", password=None)
        bench_policy()
        self.project = Project.objects.create(
            name=f"FT bench {tag}", max_concurrent_jobs=10, require_dataset_approval=False
        )
        Membership.objects.create(project=self.project, user=self.user, role="admin")

        # The built-in tiny model, prepared the platform's way (its folder is already there).
        ensure_builtin_rows()
        self.base = BaseModel.objects.get(reference="tiny-llama")
        self.model_dir = str(model_folder(self.base))

    def _import_dataset(self) -> None:
        """The QA rows imported the platform's way; both sides train on its train split."""
        from apps.datasets import services as dataset_services
        from apps.datasets.storage import media_path
        from workers.data.canonical import iter_split

        rows = demo_rows(self.args.rows)
        upload = self.tmp / "sums.csv"
        with open(upload, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["question", "answer"])
            w.writerows([r["question"], r["answer"]] for r in rows)
        self.version, _ = dataset_services.dataset_import(
            project=self.project,
            actor=self.user,
            upload_path=upload,
            filename=upload.name,
            name="Bench sums",
            license="CC0-1.0",
            source="generated by bench/finetune.py",
            validation_fraction=self.args.validation_fraction,
            seed=1,
        )
        path = media_path(self.version.storage_path)
        split = dict(seed=self.version.split_seed, fraction=self.version.validation_fraction)
        self.train_rows = list(iter_split(path, "train", **split))
        self.eval_rows = list(iter_split(path, "validation", **split))
        self.facts["rows"] = f"{len(self.train_rows)} train + {len(self.eval_rows)} validation"

    def hyper(self) -> dict:
        """The fine-tune parameters both runs get (fields of LoraFinetuneConfig)."""
        a = self.args
        return {
            "r": 8,
            "lora_alpha": 32,
            "lora_dropout": 0.1,
            "per_device_train_batch_size": a.batch,
            "gradient_accumulation_steps": a.grad_accum,
            "warmup_steps": a.warmup,
            "max_steps": a.steps,
            "logging_steps": a.logging_steps,
            "learning_rate": 1e-3,
            "lr_scheduler_type": "linear",
            "max_seq_length": 128,
            "save_steps": a.save_steps,
            "seed": 42,
            # The bare script evaluates nothing during training: no eval curve on the platform
            # side either (its eval before and after training stay, counted as overhead).
            "eval_steps": 0,
        }

    def _child(self, argv: list[str], env: dict) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, CHILD, *argv], cwd=ROOT, env=env, start_new_session=True
        )
        self.children.append(proc)
        return proc

    # ------------------------------------------------------------------ (a) bare
    def bare(self, n: int) -> dict:
        say(f"bare run {n}: bench/_finetune_bare.bare_run in a fresh subprocess")
        spec = self.tmp / f"bare-{n}.json"
        out = self.tmp / f"bare-{n}.out.json"
        spec.write_text(
            json.dumps(
                {
                    "model_dir": self.model_dir,
                    "rows": self.train_rows,
                    "params": self.hyper(),
                    "template": DEFAULT_TEMPLATE,
                    "output_dir": str(self.tmp / f"bare-{n}"),
                },
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
        t_spawn = time.time()
        proc = self._child(["bare", str(spec), str(out)], self.child_env)
        rc = proc.wait(timeout=self.args.timeout)
        t_exit = time.time()
        if rc != 0:
            raise RuntimeError(f"bare run {n} exited {rc}")
        res = json.loads(out.read_text())
        # The script's work is done when bare_run returned (adapter saved); the interpreter's
        # teardown after that (~1 s: torch and friends) is left out, which favours the bare side.
        res.update(
            t_spawn=t_spawn,
            t_exit=t_exit,
            wall=res["t_done"] - t_spawn,
            teardown=t_exit - res["t_done"],
        )
        shutil.rmtree(self.tmp / f"bare-{n}", ignore_errors=True)
        return res

    # ------------------------------------------------------------------ (b) platform
    def platform(self, n: int = 1) -> dict:
        from apps.jobs import services
        from apps.jobs.models import Job

        params = {
            "base_model_id": self.base.pk,
            "dataset_version_id": self.version.pk,
            "template": DEFAULT_TEMPLATE,
            **self.hyper(),
        }
        say(f"platform run {n}: job_create(finetune.lora) -> worker -> succeeded")
        t_submit = time.time()
        job = services.job_create(
            project=self.project, kind="finetune.lora", params=params, created_by=self.user
        )
        t_ret = time.time()
        deadline = time.monotonic() + self.args.timeout
        while True:
            state = Job.objects.filter(pk=job.pk).values_list("state", flat=True).first()
            if state in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job.pk} still {state} after {self.args.timeout}s")
            time.sleep(0.5)  # the end is read from Job.finished_at: no need to poll hard
        t_seen = time.time()
        job.refresh_from_db()
        if job.state != "succeeded":
            raise RuntimeError(f"job {job.pk} ended {job.state}: {job.error[:2000]}")
        events = list(job.events.order_by("seq").values("seq", "kind", "data", "created_at"))
        return {
            "job": job.pk,
            "t_submit": t_submit,
            "t_ret": t_ret,
            "t_seen": t_seen,
            "created": job.created_at.timestamp(),
            "started": job.started_at.timestamp(),
            "finished": job.finished_at.timestamp(),
            "result": job.result,
            "events": events,
        }

    # ------------------------------------------------------------------ SmolLM2
    def smollm2(self) -> dict:
        a = self.args
        threads = str(a.smollm2_threads or os.cpu_count() or 1)
        say(
            f"SmolLM2-135M-Instruct: {a.smollm2_steps} LoRA steps, seq 128, batch 4, "
            f"{threads} torch threads (train_lora in a subprocess)"
        )
        answer = (
            "这是一个用于测量训练速度的较长回答, 它包含足够多的字, 让每个样本都被截断到最大长度。"
            * 4
        )
        rows = [
            {"question": f"第 {i} 个问题: 请详细解释一下?", "answer": answer} for i in range(16)
        ]
        spec = self.tmp / "smollm2.json"
        out = self.tmp / "smollm2.out.json"
        spec.write_text(
            json.dumps(
                {
                    "cache_dir": str(Path(a.models_cache).resolve()),
                    "rows": rows,
                    "template": DEFAULT_TEMPLATE,
                    "output_dir": str(self.tmp / "smollm2-run"),
                    "params": {
                        "max_steps": a.smollm2_steps,
                        "per_device_train_batch_size": 4,
                        "gradient_accumulation_steps": 1,
                        "max_seq_length": 128,
                        "warmup_steps": 0,
                        "logging_steps": 1,
                        "save_steps": 100000,
                        "eval_fraction": 0.0,
                        "learning_rate": 2e-4,
                        "seed": 42,
                    },
                },
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
        env = {**self.child_env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        t0 = time.time()
        proc = self._child(["smollm2", str(spec), str(out)], env)
        rc = proc.wait(timeout=a.timeout)
        if rc != 0:
            raise RuntimeError(f"SmolLM2 run exited {rc}")
        res = json.loads(out.read_text())
        res["wall"] = time.time() - t0
        shutil.rmtree(self.tmp / "smollm2-run", ignore_errors=True)
        return res

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        stop_everything(
            children=self.children,
            procs=self.procs,
            redis_proc=self.redis_proc,
            tmp=self.tmp,
            keep=self.args.keep,
        )

    def log_tails(self) -> str:
        out = []
        logs = self.tmp / "logs"
        if logs.exists():
            for f in sorted(logs.glob("*.log")):
                out.append(f"--- {f.name} (tail)\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(out)


# ---------------------------------------------------------------------------------- analysis


def platform_figures(plat: dict) -> dict:
    """The job's own throughput, from its final metrics event (and the result, as a check)."""
    metrics = [e for e in plat["events"] if e["kind"] == "metrics"]
    final = next(
        (e for e in reversed(metrics) if "train_tokens_per_second" in e["data"]["values"]), None
    )
    if final is None:
        raise RuntimeError("the job reported no train_tokens_per_second metrics event")
    values = final["data"]["values"]
    result_m = plat["result"].get("metrics", {})
    loss_points = [e for e in metrics if "loss" in e["data"]["values"]]
    interval_tps = [
        e["data"]["values"]["tokens_per_second"]
        for e in loss_points
        if "tokens_per_second" in e["data"]["values"]
    ]
    return {
        "tps": values["train_tokens_per_second"],
        "tps_result": result_m.get("train_tokens_per_second"),
        "train_seconds": values.get("train_seconds"),
        "tokens": int(values.get("train_tokens", 0)),
        "loss_first": loss_points[0]["data"]["values"]["loss"] if loss_points else None,
        "loss_last": loss_points[-1]["data"]["values"]["loss"] if loss_points else None,
        "loss_points": len(loss_points),
        "interval_tps_median": pct(interval_tps, 50),
        "events": len(plat["events"]),
        "events_by_kind": {
            k: sum(1 for e in plat["events"] if e["kind"] == k)
            for k in sorted({e["kind"] for e in plat["events"]})
        },
        "eval_before": values.get("eval_loss_before", result_m.get("eval_loss_before")),
        "eval_after": values.get("eval_loss_after", result_m.get("eval_loss_after")),
    }


def _one(probes: list[dict], kind: str, **match) -> dict | None:
    for p in probes:
        if p["k"] == kind and all(p.get(k) == v for k, v in match.items()):
            return p
    return None


def platform_breakdown(plat: dict, probes: list[dict]) -> tuple[list[tuple[str, float]], dict]:
    """Consecutive segments from submit to finished_at (they add up), plus flush statistics."""
    job = plat["job"]
    claim = _one(probes, "claim", job=job)
    execute = _one(probes, "execute_job", job=job)
    if claim is None or execute is None:
        return [], {}
    pid = claim["pid"]
    mine = [p for p in probes if p["pid"] == pid and claim["t0"] <= p["t0"] <= execute["t1"]]
    return _job_segments(plat, claim, mine), _job_stats(job, mine)


def _job_stamps(claim: dict, mine: list[dict], finished: float) -> list[tuple[str, float | None]]:
    """Where each segment of the job ends (None: its probe is missing), in order."""

    def get(kind, **m):
        return _one(mine, kind, **m)

    rf, tl, rp = get("run_finetune"), get("train_lora"), get("resolve_precision")
    tp, load = get("train_process"), get("load_model")
    ev_b, ev_a = get("eval", which="before"), get("eval", which="after")
    train = get("trainer.train")
    stamps = [
        ("submit: job_create (validate, checks, rows, audit), Celery send + pickup", claim["t0"]),
        ("claim + lease (DB)", claim["t1"]),
        ("run_finetune start: workdir, heartbeat thread", rf["t0"] if rf else None),
        (
            "dataset version + base model row + read the split",
            tl["t0"] if tl else None,
        ),
        ("imports: torch (train_lora's device/precision checks)", rp["t1"] if rp else None),
        (
            "imports: transformers config (inspect model folder); split, fingerprint",
            tp["t0"] if tp else None,
        ),
        ("imports: transformers Trainer, peft; set_seed", load["t0"] if load else None),
        ("load model + tokenizer", load["t1"] if load else None),
        (
            "tokenize, LoRA wrap, TrainingArguments, Trainer",
            ev_b["t0"] if ev_b else (train["t0"] if train else None),
        ),
    ]
    if ev_b:
        stamps.append(("eval before training", ev_b["t1"]))
    stamps += [
        ("callbacks, reporter", train["t0"] if train else None),
        ("TRAINING LOOP (Trainer.train, incl. checkpoints)", train["t1"] if train else None),
    ]
    if ev_a:
        stamps += [
            ("after the loop: callbacks, reporter", ev_a["t0"]),
            ("eval after training", ev_a["t1"]),
        ]
    stamps += [
        ("save adapter (save_pretrained)", tp["t1"] if tp else None),
        ("model card + adapter.zip + result.json", tl["t1"] if tl else None),
        ("publish adapter: copy to media, Adapter row, audit", rf["t1"] if rf else None),
        ("job_finish: final flush, state row", finished),
    ]
    return stamps


def _job_segments(plat: dict, claim: dict, mine: list[dict]) -> list[tuple[str, float]]:
    """The job's segments from submit: each from the previous stamp found to its own."""
    segs: list[tuple[str, float]] = []
    prev = plat["t_submit"]
    for label, t in _job_stamps(claim, mine, plat["finished"]):
        if t is None:
            continue
        segs.append((label, t - prev))
        prev = t
    return segs


def _job_stats(job: int, mine: list[dict]) -> dict:
    """Imports, the training loop's CPU and steps, the event flushes and doorbells inside it,
    checkpoint markers and the steps after the loop."""

    def get(kind, **m):
        return _one(mine, kind, **m)

    tl, load, train = get("train_lora"), get("load_model"), get("trainer.train")
    pub, fin = get("publish_adapter"), get("finish", job=job)
    card, zipped = get("model_card"), get("zip")
    marks = [p for p in mine if p["k"] == "checkpoint_marker"]
    flushes = [p for p in mine if p["k"] == "flush"]

    def during_train(kind, same_thread=True):
        """Calls of `kind` during Trainer.train, in the training thread (or in the others)."""
        if not train:
            return []
        return [
            p
            for p in mine
            if p["k"] == kind
            and train["t0"] <= p["t0"] <= train["t1"]
            and (p.get("thread") == train.get("thread")) == same_thread
        ]

    in_train = during_train("flush")
    rings = during_train("ring_job") + during_train("ring_project")
    return {
        "imports": (load["t0"] - tl["t0"]) if (load and tl) else math.nan,
        "doorbell_in_train": sum(p["t1"] - p["t0"] for p in rings),
        "append_in_train": sum(p["t1"] - p["t0"] for p in during_train("append")),
        "flushes": len(flushes),
        "flushes_in_train": len(in_train),
        "flushes_other_threads": len(during_train("flush", same_thread=False)),
        "flush_wall_in_train": sum(f["t1"] - f["t0"] for f in in_train),
        "flush_cpu_in_train": sum(f["cpu"] for f in in_train),
        "flush_p50_ms": pct([1000 * (f["t1"] - f["t0"]) for f in in_train], 50),
        "flush_max_ms": max((1000 * (f["t1"] - f["t0"]) for f in in_train), default=math.nan),
        "train_wall": (train["t1"] - train["t0"]) if train else math.nan,
        "train_thread_cpu": train["cpu"] if train else math.nan,
        "train_process_cpu": train["process_cpu"] if train else math.nan,
        "step_ms": train.get("step_ms", []) if train else [],
        "markers": len(marks),
        "marker_wall": sum(p["t1"] - p["t0"] for p in marks),
        "card": (card["t1"] - card["t0"]) if card else math.nan,
        "zip": (zipped["t1"] - zipped["t0"]) if zipped else math.nan,
        "publish": (pub["t1"] - pub["t0"]) if pub else math.nan,
        "finish": (fin["t1"] - fin["t0"]) if fin else math.nan,
    }


def bare_segments(b: dict) -> list[tuple[str, float]]:
    start = b["t_child_start"] - b["t_spawn"]
    run_other = b["total_seconds"] - b["train_seconds"]
    return [
        ("spawn + interpreter start-up", start),
        ("imports: torch, transformers, peft", b["import_seconds"]),
        ("load model + tokenizer, tokenize, LoRA wrap, Trainer; save adapter", run_other),
        ("TRAINING LOOP (Trainer.train, incl. checkpoints)", b["train_seconds"]),
        (
            "rest: bench module imports, writing the spec/result",
            b["wall"] - start - b["import_seconds"] - b["total_seconds"],
        ),
        ("[not counted: interpreter teardown after the adapter was saved]", b["teardown"]),
    ]


def step_stats(ms: list[float]) -> dict:
    med = pct(ms, 50)
    return {
        "n": len(ms),
        "median": med,
        "mean": mean(ms),
        "p90": pct(ms, 90),
        "max": max(ms) if ms else math.nan,
        "excess": sum(max(0.0, x - med) for x in ms) / 1000,  # s above the median step
    }


# ---------------------------------------------------------------------------------------- main


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--steps", type=int, default=600, help="optimizer steps of the tiny model (~5-10 s of loop)"
    )
    ap.add_argument("--rows", type=int, default=200, help="QA rows in the dataset")
    ap.add_argument("--validation-fraction", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--logging-steps", type=int, default=10)
    ap.add_argument("--save-steps", type=int, default=200, help="the platform's default")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="bare, then N x (platform job, bare): 1 gives A-B-A; all runs are averaged",
    )
    ap.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 LoRA steps/s")
    ap.add_argument(
        "--no-packing",
        action="store_true",
        help="skip packed vs unpacked (bench/_finetune_packing)",
    )
    ap.add_argument("--packing-steps", type=int, default=300)
    ap.add_argument("--no-dpo", action="store_true", help="skip DPO steps/s (bench/_finetune_dpo)")
    ap.add_argument("--smollm2-steps", type=int, default=3)
    ap.add_argument("--smollm2-threads", type=int, default=0, help="0: all CPUs")
    ap.add_argument(
        "--models-cache",
        default=str(ROOT / "var" / "models"),
        help="where the SmolLM2 conversion is cached (converted once, ~40 s, if missing)",
    )
    ap.add_argument(
        "--what-if-event-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run the worker with ATELIER_EVENT_MIN_INTERVAL=SECONDS (a setting, not the default)",
    )
    ap.add_argument(
        "--what-if",
        action="append",
        default=[],
        choices=["background-flush", "doorbell-loop"],
        help="measure a proposed product change, patched into the worker from the bench (not the "
        "product): background-flush (bench/_finetune_probes.py), doorbell-loop (bench/probes.py)",
    )
    ap.add_argument(
        "--profile-train",
        action="store_true",
        help="cProfile every Trainer.train (bare and platform) into TMP/pstats; use with --keep",
    )
    ap.add_argument("--database-url", default="", help="default: SQLite in the temp dir")
    ap.add_argument("--timeout", type=float, default=600, help="per run, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, probes, DB)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


def main() -> int:
    args = _parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = Bench(args)
    t_start = time.monotonic()
    error = None
    bares: list[dict] = []
    plats: list[dict] = []
    smol = None
    probes: list[dict] = []
    extra: dict = {}
    try:
        bench.setup()
        bares.append(bench.bare(1))
        for i in range(args.rounds):
            plats.append(bench.platform(i + 1))
            bares.append(bench.bare(i + 2))
        probes = read_all(str(bench.probe_dir))
        if not args.no_smollm2:
            smol = bench.smollm2()
        if not args.no_packing:
            from bench._finetune_packing import packing_bench

            say("packing: the platform packed vs the bare unpacked script (issue 17)")
            extra["packing"] = packing_bench(steps=args.packing_steps, rounds=2)
        if not args.no_dpo:
            from bench._finetune_dpo import measure

            say("DPO: the platform vs a bare trl DPOTrainer script (issue 17)")
            extra["dpo"] = measure()
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
        print(f"RESULT finetune FAILED ({error.splitlines()[0][:200]})")
        return 130 if error == "interrupted" else 1
    print(report(bench, args, bares, plats, probes, smol, elapsed, extra), flush=True)
    return 0


def report(bench, args, bares, plats, probes, smol, elapsed, extra=None) -> str:
    pfs = [platform_figures(p) for p in plats]
    details = [platform_breakdown(p, probes) for p in plats]
    bare_tps = mean([b["tokens_per_second"] for b in bares])
    plat_tps = mean([pf["tps"] for pf in pfs])
    bare_wall = mean([b["wall"] for b in bares])
    ratio = plat_tps / bare_tps
    first = plats[0]
    e2e = first["finished"] - first["t_submit"]
    overhead = e2e - bare_wall
    tags = list(args.what_if)
    if args.what_if_event_interval is not None:
        tags.append(f"ATELIER_EVENT_MIN_INTERVAL={args.what_if_event_interval:g}")
    whatif = f"[WHAT-IF {'+'.join(tags)}, not the product] " if tags else ""
    out = _report_head(bench, plats, whatif, elapsed)
    out.append("")
    out += _report_loop(bench, bares, plats, pfs, details, bare_tps, plat_tps)
    out.append("")
    out += _report_end_to_end(bench, bares, e2e, bare_wall, details[0][1])
    out += _report_where(plats, details, pfs[0])
    for i, b in enumerate(bares, 1):
        out.append(f"  bare {i}, where the time goes (the child's own stamps):")
        for label, sec in bare_segments(b):
            out.append(f"    {label:<{WHERE_WIDTH}} {sec:7.3f}s")
    smol_txt = "skipped"
    if smol is not None:
        out.append("")
        out.append(_report_smollm2(smol))
        smol_txt = f"{smol['steps_per_second']:.3f} steps/s"
    extra = extra or {}
    tail = ""
    if "packing" in extra:
        from bench._finetune_packing import headline as packing_line

        line = packing_line(extra["packing"]).removeprefix("RESULT ")
        out += ["", line]
        pk = extra["packing"]
        tail += (
            f" | packing {pk['ratio']:.2f}x useful tok/s (goal >= 1.5), eval loss diff "
            f"{pk['diff_pct']:.2f}% (goal <= 2%)"
        )
    if "dpo" in extra:
        from bench._finetune_dpo import headline as dpo_line

        out += ["", dpo_line(extra["dpo"])]
        tail += f" | dpo {extra['dpo']['ratio']:.3f}x steps/s (goal >= 0.97)"
    for n in bench.notes:
        out.append(f"NOTE: {n}")
    out.append(
        f"RESULT {whatif}finetune ratio={ratio:.2f} (goal >= {GOAL_RATIO}) overhead={overhead:.1f}s "
        f"(goal <= {GOAL_OVERHEAD_S:.0f}s) [bare {bare_tps:.0f} tok/s, platform {plat_tps:.0f} tok/s] "
        f"| smollm2 lora {smol_txt}{tail}"
    )
    return "\n".join(out)


WHERE_WIDTH = 72  # the label column of the "where the time goes" tables


def _report_head(bench, plats, whatif: str, elapsed) -> list[str]:
    """The run's facts, the what-if if any, and the hyperparameters both sides get."""
    hp = bench.hyper()
    out = [
        "Atelier fine-tune bench: "
        + ", ".join(
            f"{k}={v}"
            for k, v in {
                **bench.facts,
                "cpus": os.cpu_count(),
                "OMP_NUM_THREADS": "1 (bare subprocesses and worker)",
                "order": "bare, " + ", ".join(["platform, bare"] * len(plats)),
                "wall time": f"{elapsed:.0f}s",
            }.items()
        )
    ]
    if whatif:
        out.append("  " + whatif)
    out.append(
        "  hyperparameters (both): "
        + ", ".join(f"{k}={v}" for k, v in hp.items())
        + f"; template {DEFAULT_TEMPLATE!r}; tiny Llama (build_tiny_llama, seed 0)"
    )
    return out


def _report_loop(bench, bares, plats, pfs, details, bare_tps, plat_tps) -> list[str]:
    """The training loop: tokens/s of every run, the ratio, and what the platform's loop does
    besides training (flushes, markers), on CPU time and per step."""
    hp = bench.hyper()
    ratio = plat_tps / bare_tps
    out = ["Training loop (tokens/s = real tokens handed to Trainer.train / its wall time)"]
    for i, b in enumerate(bares, 1):
        out.append(
            f"  bare {i}:      {b['tokens_per_second']:>9.1f} tok/s  {b['steps_per_second']:>6.2f} steps/s  "
            f"{b['tokens']} tokens, {b['steps']} steps in {b['train_seconds']:.2f}s; train loss "
            f"{b['train_loss']:.4f}; torch threads {b['torch_threads']}; CPU in train(): thread "
            f"{b['train_thread_cpu']:.2f}s, process {b['train_process_cpu']:.2f}s"
        )
    for i, (pf, (_, fs)) in enumerate(zip(pfs, details, strict=True), 1):
        cpu = (
            f"; CPU in train(): thread {fs['train_thread_cpu']:.2f}s, process {fs['train_process_cpu']:.2f}s"
            if fs
            else ""
        )
        out.append(
            f"  platform {i}:  {pf['tps']:>9.1f} tok/s  {hp['max_steps'] / pf['train_seconds']:>6.2f} steps/s  "
            f"{pf['tokens']} tokens in {pf['train_seconds']:.2f}s (job {plats[i - 1]['job']}'s final "
            f"metrics event; job.result says {pf['tps_result']}){cpu}"
        )
    pf0 = pfs[0]
    out.append(
        f"  the job learned: loss {pf0['loss_first']:.3f} -> {pf0['loss_last']:.3f} over "
        f"{pf0['loss_points']} metrics points; eval loss {pf0['eval_before']:.3f} -> {pf0['eval_after']:.3f}"
    )
    tokens = {b["tokens"] for b in bares} | {pf["tokens"] for pf in pfs}
    out.append(
        f"  same work: tokens per run {'identical' if len(tokens) == 1 else 'DIFFER'} ({sorted(tokens)})"
    )
    out.append(
        f"  ratio platform/bare = {plat_tps:.1f} / {bare_tps:.1f} = {ratio:.3f} "
        f"(goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'MISSED'})"
    )
    out += _report_loop_flushes(details)
    out += _report_loop_cpu(bares, pfs, details)
    return out


def _report_loop_flushes(details) -> list[str]:
    """Per platform run: the event flushes and checkpoint markers inside its training loop."""
    out = []
    for i, (_, fs) in enumerate(details, 1):
        if not fs:
            continue
        tw = fs["train_wall"]
        out.append(
            f"  platform {i}, inside its loop: {fs['flushes_in_train']} event flushes, synchronous "
            f"in the training thread, took {fs['flush_wall_in_train']:.3f}s of {tw:.2f}s "
            f"({100 * fs['flush_wall_in_train'] / tw:.1f}%; p50 {fs['flush_p50_ms']:.1f}ms, max "
            f"{fs['flush_max_ms']:.1f}ms each): job_append_events {fs['append_in_train']:.3f}s, of "
            f"which websocket doorbells (group_send via async_to_sync) {fs['doorbell_in_train']:.3f}s; "
            f"{fs['markers']} checkpoint COMPLETE markers {fs['marker_wall']:.3f}s"
            + (
                f"; {fs['flushes_other_threads']} flushes in other threads meanwhile"
                if fs["flushes_other_threads"]
                else ""
            )
        )
    return out


def _report_loop_cpu(bares, pfs, details) -> list[str]:
    """The loop on CPU time (tokens per process CPU-second) and per optimizer step."""
    out = []
    if all(fs for _, fs in details):
        bare_cpu = mean([b["tokens"] / b["train_process_cpu"] for b in bares])
        plat_cpu = mean(
            [
                pf["tokens"] / fs["train_process_cpu"]
                for pf, (_, fs) in zip(pfs, details, strict=True)
            ]
        )
        out.append(
            f"  cross-check on CPU time: tokens per CPU-second of the whole process during train(): "
            f"bare {bare_cpu:.0f}, platform {plat_cpu:.0f} (ratio {plat_cpu / bare_cpu:.3f}); the "
            "worker's other threads (heartbeat poll, doorbell event loop) are in its process CPU"
        )
    if all(fs and fs["step_ms"] for _, fs in details) and all(b.get("step_ms") for b in bares):
        out.append(
            "  per optimizer step, ms (the median is robust to bursts of other load; 'excess' = "
            "seconds spent above the median step: flushes, checkpoints, hiccups):"
        )
        rows = [(f"bare {i}", step_stats(b["step_ms"])) for i, b in enumerate(bares, 1)]
        prow = [
            (f"platform {i}", step_stats(fs["step_ms"])) for i, (_, fs) in enumerate(details, 1)
        ]
        for name, st in rows + prow:
            out.append(
                f"    {name:<11} median {st['median']:6.2f}  mean {st['mean']:6.2f}  p90 {st['p90']:6.2f}"
                f"  max {st['max']:7.1f}  excess {st['excess']:5.2f}s over {st['n']} steps"
            )
        med_b = mean([st["median"] for _, st in rows])
        med_p = mean([st["median"] for _, st in prow])
        out.append(
            f"    median step time bare/platform = {med_b / med_p:.3f} (1.0: the same steady per-step "
            "cost; flushes and checkpoints fall outside the median)"
        )
    return out


def _report_end_to_end(bench, bares, e2e: float, bare_wall: float, fs0: dict) -> list[str]:
    """Platform job 1 submit -> succeeded against a bare run, with and without the imports and
    the loop; a note when the bare runs alone disagree by more than the ratio goal allows."""
    overhead = e2e - bare_wall
    out = [
        f"End to end: platform 1 (fresh worker: its first job) submit -> succeeded {e2e:.2f}s; bare "
        "subprocess spawn -> adapter saved "
        + " / ".join(f"{b['wall']:.2f}s" for b in bares)
        + f" (mean {bare_wall:.2f}s)"
    ]
    out.append(
        f"  overhead = {e2e:.2f} - {bare_wall:.2f} = {overhead:.2f}s "
        f"(goal <= {GOAL_OVERHEAD_S:.0f}s: {'met' if overhead <= GOAL_OVERHEAD_S else 'MISSED'})"
    )
    if fs0 and not math.isnan(fs0["imports"]):
        bare_imp = mean([b["import_seconds"] for b in bares])
        out.append(
            f"  the same without library imports (the noisiest part on a loaded machine): platform "
            f"{e2e - fs0['imports']:.2f}s - bare {bare_wall - bare_imp:.2f}s = "
            f"{(e2e - fs0['imports']) - (bare_wall - bare_imp):.2f}s (imports: platform "
            f"{fs0['imports']:.2f}s, bare "
            + " / ".join(f"{b['import_seconds']:.2f}s" for b in bares)
            + ")"
        )
        bare_loop = mean([b["train_seconds"] for b in bares])
        plat_rest = e2e - fs0["imports"] - fs0["train_wall"]
        bare_rest = bare_wall - bare_imp - bare_loop
        out.append(
            f"  and without the training loop either (what the platform adds around the same work): "
            f"platform {plat_rest:.2f}s - bare {bare_rest:.2f}s = {plat_rest - bare_rest:.2f}s"
        )
    tps = [b["tokens_per_second"] for b in bares]
    spread = (max(tps) - min(tps)) / mean(tps)
    if spread > 0.03:
        bench.notes.append(
            f"the bare runs alone differ by {100 * spread:.0f}% in tokens/s (load average "
            f"{bench.facts.get('load', '?')}): this machine's other load is larger than the 3% the "
            "ratio goal allows; read the ratio with the CPU-time cross-check and the flush share"
        )
    return out


def _report_where(plats, details, pf0: dict) -> list[str]:
    """Where each platform job's time goes (worker probes): one column per job."""
    width = WHERE_WIDTH
    labels: list[str] = []
    table: dict[str, list[float | None]] = {}
    for j, (job_segs, _) in enumerate(details):
        for label, sec in job_segs:
            if label not in table:
                labels.append(label)
                table[label] = [None] * len(details)
            table[label][j] = sec
    head = "".join(f"{f'job {i}':>10}" for i in range(1, len(details) + 1))
    out = [
        "  platform, where the time goes (worker probes; each column adds up to submit->succeeded;"
    ]
    out.append(f"  job 1 ran on a fresh worker, later ones on a warm one)   {'':<14}{head}")
    for label in labels:
        cells = "".join(f"{'-':>10}" if v is None else f"{v:>9.3f}s" for v in table[label])
        out.append(f"    {label:<{width}}{cells}")
    totals = "".join(f"{p['finished'] - p['t_submit']:>9.3f}s" for p in plats)
    out.append(f"    {'total':<{width}}{totals}")
    fs0 = details[0][1]
    if fs0:
        out.append(
            f"    [inside: model card {fs0['card']:.3f}s, zip {fs0['zip']:.3f}s, publish "
            f"{fs0['publish']:.3f}s, job_finish {fs0['finish']:.3f}s; {pf0['events']} events "
            f"{pf0['events_by_kind']}, {fs0['flushes']} flushes]"
        )
    return out


def _report_smollm2(smol: dict) -> str:
    """The SmolLM2 LoRA steps/s line."""
    return (
        f"SmolLM2-135M-Instruct LoRA ({smol['details'].get('target_modules')}, r=8): "
        f"{smol['steps']} steps at seq 128, batch 4 in {smol['train_seconds']:.2f}s = "
        f"{smol['steps_per_second']:.3f} steps/s ({smol['train_tokens_per_second']} tok/s; "
        f"steps after the first: {smol['step_seconds']} s); torch threads "
        f"{smol['torch_threads']}; model folder ready in {smol['prepare_seconds']:.1f}s "
        f"(cached conversion reused), subprocess {smol['wall']:.1f}s"
    )


if __name__ == "__main__":
    sys.exit(main())
