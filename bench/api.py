"""OpenAI-compatible API benchmark: /v1/chat/completions streamed, against in-process generation.

    .venv/bin/python bench/api.py [--model tiny-llama] [--tokens 128] [--rounds 30]
                                  [--clients 50] [--keep]

In an isolated temp dir (own SQLite database, own embedded Redis, own var/ folders) one run
measures, for the same model folder, conversation, seed and max tokens (greedy decoding):

(a) in-process: bench/_api_child.py, a long-lived subprocess calling the platform's pure
    generation code (workers.ml.textgen.generate_text, warm model cache) directly: what a script
    that loads the model itself sees.
(b) the API: an HTTP client (httpx2, one kept-alive connection, as the openai client keeps
    one) POSTs `stream: true` chat completions to uvicorn (apps/api/openai_compat/chat.py) with
    a Bearer token; the endpoint submits a `textgen` job, a real Celery worker subprocess
    (queues gpu,cpu, concurrency 1) runs it, and the endpoint follows the job's text events
    live and writes them as Server-Sent Events.

Timed runs alternate (a), (b), (a), (b) ... (a), so drift in the shared machine's load falls on
both sides alike; both sides run with OMP_NUM_THREADS=1, and while one generates the other idles.
Both load the model and run one untimed warm-up first.

Definitions:
- TTFT: (a) the generate_text call -> its first streamed text; (b) the request sent -> the first
  SSE chunk with content received. Overhead per pair = (b) - the mean of the (a) either side;
  p50 and p99 over the pairs (goal: p50 <= 30 ms).
- tokens/s = new tokens / (first -> last streamed text): (a) as on_text gets them, (b) as the
  client receives them (usage.completion_tokens from the final chunk). Ratio per pair = (b) /
  the mean of the (a) either side; the median is the headline (goal >= 0.95). Tokens over the
  whole call (call or request -> last text) are printed too.
- Then --clients (50) concurrent streaming clients (asyncio + the official AsyncOpenAI client,
  the same request each): errors = requests that raised, ended without [DONE] / a finish
  reason, or whose text differs from the in-process text (goal 0).

Where the time goes: each API run's job is split by the stamps the platform leaves (the job
row's created_at and started_at, the first TEXT event's created_at) and the worker's timing
probes (bench/_text_child.py's, loaded into the worker as bench/text.py does: the generate
call and the first text in the worker), beside the client's own stamps.

Honesty checks: the streamed text equals the in-process text and the job's Output; every timed
job found the model warm. --keep keeps the temp dir. The last line printed is one RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is bench/: replace it by the repository root.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    bench_policy,
    isolated_environment,
    mean,
    ms,
    pct,
    probed_worker_env,
    run_bench,
    say,
    stop_everything,
    ts,
    without_probes,
)
from bench._text_child import PROBE_ENV, read_probes  # noqa: E402
from tests.harness import Processes, start_embedded_redis  # noqa: E402

GOAL_TTFT_MS = 30.0
GOAL_RATIO = 0.95
GOAL_ERRORS = 0
SEED = 1234
TEXT_CHILD = str(ROOT / "bench" / "_text_child.py")
API_CHILD = str(ROOT / "bench" / "_api_child.py")
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {
        "role": "user",
        "content": "Write a long, detailed story about a lighthouse keeper on a remote island "
        "who finds a message in a bottle, and what happens over the following year.",
    },
]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-apibench-"))
        self.redis_proc: subprocess.Popen | None = None
        self.procs: Processes | None = None
        self.children: list[subprocess.Popen] = []
        self.inproc_proc: subprocess.Popen | None = None
        self.facts: dict[str, str] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis_proc, redis_url = start_embedded_redis(self.tmp / "redis")
        env = isolated_environment(
            self.tmp, redis_url=redis_url, channel_prefix=f"atelier-apibench-{tag}"
        )
        os.environ.update(env)  # before django.setup(): settings read the environment at import
        (self.tmp / "var" / "models").mkdir(parents=True)
        self.probe_dir = self.tmp / "probes"
        self.probe_dir.mkdir()
        proc_env = probed_worker_env(
            env, probe_env=PROBE_ENV, probe_dir=self.probe_dir, module="bench._text_child"
        )
        self.procs = Processes(env=proc_env, log_dir=self.tmp / "logs")
        self.child_env = without_probes(self.procs.env, PROBE_ENV)
        self._migrate_and_build()
        self._create_rows(tag)
        say("starting the worker (queues gpu,cpu; threads pool, concurrency 1) and uvicorn")
        self.procs.worker(queues="gpu,cpu")
        self.base = self.procs.web()
        say("starting the in-process subprocess (workers.ml.textgen; loads the model)")
        self.inproc_log = open(self.tmp / "logs" / "inproc.log", "w")  # noqa: SIM115
        self.inproc_proc = subprocess.Popen(
            [sys.executable, API_CHILD, "inproc", self.model_dir],
            cwd=ROOT,
            env=self.child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.inproc_log,
            text=True,
            start_new_session=True,
        )
        self.children.append(self.inproc_proc)
        ready = json.loads(self._inproc_line())
        self.facts["in-process load"] = f"{ready['load_s']:.1f}s"
        import httpx2

        self.http = httpx2.Client(timeout=self.args.timeout)

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
            [
                sys.executable,
                TEXT_CHILD,
                "build",
                str(self.tmp / "var" / "models"),
                self.args.model,
            ],
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

        from apps.api.tokens import token_create
        from apps.models.models import BaseModel
        from apps.models.services import ensure_builtin_rows, model_folder
        from apps.projects.models import Membership, Project

        user = get_user_model().objects.create_user(username=f"apibench-{tag}", password=None)
        bench_policy()
        self.project = Project.objects.create(name=f"API bench {tag}", max_concurrent_jobs=100)
        Membership.objects.create(project=self.project, user=user, role="admin")
        ensure_builtin_rows()
        self.model = BaseModel.objects.get(reference=self.args.model)
        self.model_dir = str(model_folder(self.model))  # the folder prepared above
        _, self.token = token_create(user=user, name="bench", project_id=self.project.pk)

    def _inproc_line(self) -> str:
        assert self.inproc_proc is not None and self.inproc_proc.stdout is not None
        line = self.inproc_proc.stdout.readline()
        if not line:
            log = (self.tmp / "logs" / "inproc.log").read_text(errors="replace")[-3000:]
            raise RuntimeError("the in-process subprocess exited:\n" + log)
        return line

    # ------------------------------------------------------------------ (a) in-process
    def inproc(self, label: str) -> dict:
        say(f"in-process {label}: workers.ml.textgen.generate_text, {self.args.tokens} tokens")
        assert self.inproc_proc is not None and self.inproc_proc.stdin is not None
        req = {"messages": MESSAGES, "max_new_tokens": self.args.tokens, "seed": SEED}
        self.inproc_proc.stdin.write(json.dumps(req) + "\n")
        self.inproc_proc.stdin.flush()
        res = json.loads(self._inproc_line())
        res["ttft"] = res["t_first"] - res["t_call"]
        res["span"] = res["t_last"] - res["t_first"]
        res["rate"] = res["tokens"] / res["span"] if res["span"] > 0 else math.nan
        res["whole_rate"] = res["tokens"] / (res["t_last"] - res["t_call"])
        return res

    # ------------------------------------------------------------------ (b) the API
    def body(self) -> dict:
        return {
            "model": self.args.model,
            "messages": MESSAGES,
            "max_tokens": self.args.tokens,
            "temperature": 0,
            "seed": SEED,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def api(self, label: str) -> dict:
        say(f"api {label}: POST /v1/chat/completions stream=true, {self.args.tokens} tokens")
        headers = {"Authorization": f"Bearer {self.token}"}
        res: dict = {"t_first": math.nan, "t_last": math.nan, "text": "", "done": False}
        res["t_send"] = time.time()
        with self.http.stream(
            "POST", self.base + "/v1/chat/completions", json=self.body(), headers=headers
        ) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:500]!r}")
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.time()
                data = line[len("data: ") :]
                if data == "[DONE]":
                    res["done"] = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError(f"stream error: {chunk['error']}")
                res.setdefault("job", int(chunk["id"].split("-")[1]))
                if chunk.get("usage"):
                    res["tokens"] = chunk["usage"]["completion_tokens"]
                for choice in chunk["choices"]:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if math.isnan(res["t_first"]):
                            res["t_first"] = now
                        res["t_last"] = now
                        res["text"] += content
        res["t_end"] = time.time()
        res["ttft"] = res["t_first"] - res["t_send"]
        res["span"] = res["t_last"] - res["t_first"]
        res["rate"] = res["tokens"] / res["span"] if res["span"] > 0 else math.nan
        res["whole_rate"] = res["tokens"] / (res["t_last"] - res["t_send"])
        res.update(self.stamps(res["job"]))
        return res

    def stamps(self, job_id: int) -> dict:
        """What the platform recorded of the job: rows' stamps, the Output, the warm model."""
        from apps.jobs.models import Job
        from apps.outputs.models import Output

        deadline = time.monotonic() + 30
        while True:
            job = Job.objects.get(pk=job_id)
            if job.state == "succeeded" and job.result:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} ended {job.state}: {job.error[:2000]}")
            time.sleep(0.05)
        texts = list(job.events.filter(kind="text").order_by("seq").values("created_at"))
        run = job.result["runs"][0]
        return {
            "created": ts(job.created_at),
            "started": ts(job.started_at),
            "finished": ts(job.finished_at),
            "row_first": ts(texts[0]["created_at"]) if texts else math.nan,
            "row_last": ts(texts[-1]["created_at"]) if texts else math.nan,
            "text_events": len(texts),
            "loaded": run.get("loaded"),
            "output": Output.objects.get(pk=run["output_id"]).text,
        }

    # ------------------------------------------------------------------ (c) concurrent clients
    def concurrent(self, n: int, expected: str) -> dict:
        say(f"{n} concurrent streaming clients (AsyncOpenAI), the same request each")
        return asyncio.run(self._concurrent(n, expected))

    async def _concurrent(self, n: int, expected: str) -> dict:
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.base + "/v1",
            api_key=self.token,
            max_retries=0,
            timeout=self.args.timeout,
        )
        body = {k: v for k, v in self.body().items() if k != "stream"}

        async def one(i: int) -> dict:
            out = {"ok": False, "error": "", "ttft": math.nan, "total": math.nan}
            t0 = time.time()
            try:
                stream = await client.chat.completions.create(stream=True, **body)
                text, finish, done = "", None, False
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            if math.isnan(out["ttft"]):
                                out["ttft"] = time.time() - t0
                            text += choice.delta.content
                        finish = choice.finish_reason or finish
                    if chunk.usage is not None:
                        done = True  # the last chunk before [DONE]
                out["total"] = time.time() - t0
                if not done or finish is None:
                    out["error"] = "the stream ended without its final chunks"
                elif text != expected:
                    out["error"] = f"text differs ({len(text)} vs {len(expected)} chars)"
                else:
                    out["ok"] = True
            except Exception as exc:  # noqa: BLE001 - counted, reported
                out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            return out

        t0 = time.time()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.time() - t0
        await client.close()
        return {"results": results, "wall": wall}

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.inproc_proc is not None and self.inproc_proc.stdin is not None:
            try:
                self.inproc_proc.stdin.close()
                self.inproc_proc.wait(timeout=10)
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


def _probe(kind: str, run: dict, probes: list[dict]) -> dict | None:
    """The worker's first probe record of `kind` that started inside the run's job."""
    return next(
        (
            p
            for p in sorted(probes, key=lambda p: p["t0"])
            if p["k"] == kind and run["started"] - 0.05 <= p["t0"] <= run["finished"] + 0.05
        ),
        None,
    )


def split(run: dict, probes: list[dict]) -> dict[str, float] | None:
    """One API run's time to first token, segment by segment (seconds). The fourth segment is
    what the in-process TTFT measures too (the model cache lookup, the prompt, the first
    token); the others are the API's and the job engine's own."""
    stream, load = _probe("stream", run, probes), _probe("load", run, probes)
    folder = _probe("model_folder", run, probes)
    claim = next((p for p in probes if p["k"] == "job_claim" and p.get("job") == run["job"]), None)
    if None in (stream, load, folder, claim) or not stream.get("first_text"):
        return None
    return {
        "request sent -> job row created (HTTP, token, checks, job_create)": run["created"]
        - run["t_send"],
        "job row created -> claimed, started_at (commit, Celery, claim)": run["started"]
        - run["created"],
        "started_at -> job_claim returned (its state event, commit)": claim["t1"] - run["started"],
        "job_claim returned -> runner starts (runtime: heartbeat, reporter, params)": folder["t0"]
        - claim["t1"],
        "runner starts -> generate_text (model row, folder, adapters)": load["t0"] - folder["t0"],
        "generate_text -> first text in the worker (= the in-process TTFT)": stream["first_text"]
        - load["t0"],
        "first text in the worker -> its TEXT row written": run["row_first"] - stream["first_text"],
        "TEXT row -> first content chunk at the client (doorbell, SSE)": run["t_first"]
        - run["row_first"],
    }


def tail_split(run: dict, probes: list[dict]) -> dict[str, float] | None:
    """Where the first -> last text span of an API run goes (seconds): the worker's own
    generation between its first and last text, then the last text's way to the client,
    against the first text's way (their difference is what the span gains over the worker's)."""
    stream = _probe("stream", run, probes)
    if stream is None or not stream.get("first_text") or not stream.get("last_text"):
        return None
    return {
        "first -> last text in the worker (the generation itself)": stream["last_text"]
        - stream["first_text"],
        "last text in the worker -> its TEXT row written": run["row_last"] - stream["last_text"],
        "last TEXT row -> last content chunk at the client": run["t_last"] - run["row_last"],
        "(first text's way: worker -> row -> client)": run["t_first"] - stream["first_text"],
        "first -> last content chunk at the client": run["t_last"] - run["t_first"],
    }


def report(bench: Bench, inprocs: list[dict], apis: list[dict], conc: dict) -> str:
    args = bench.args
    out: list[str] = []
    pairs = [i for i in range(len(apis)) if i + 1 < len(inprocs)]
    overheads = [
        apis[i]["ttft"] - mean([inprocs[i]["ttft"], inprocs[i + 1]["ttft"]]) for i in pairs
    ]
    ratios = [apis[i]["rate"] / mean([inprocs[i]["rate"], inprocs[i + 1]["rate"]]) for i in pairs]
    whole = [
        apis[i]["whole_rate"] / mean([inprocs[i]["whole_rate"], inprocs[i + 1]["whole_rate"]])
        for i in pairs
    ]
    ratios = [r for r in ratios if not math.isnan(r)]
    p50, p99 = ms(pct(overheads, 50)), ms(pct(overheads, 99))
    ratio = pct(ratios, 50)

    out.append(
        f"\nOpenAI-compatible streaming: {args.model}, {args.tokens} max tokens, greedy, seed "
        f"{SEED}, OMP_NUM_THREADS=1 both sides; {len(apis)} API runs between {len(inprocs)} "
        "in-process runs"
    )
    out.append("  facts: " + ", ".join(f"{k} {v}" for k, v in bench.facts.items()))
    out.append(
        f"\n{'':<12}{'TTFT ms p50':>12}{'p99':>9}{'tok/s p50':>11}{'tokens':>8}{'events':>8}"
    )
    for name, runs in (("in-process", inprocs), ("API", apis)):
        out.append(
            f"{name:<12}{ms(pct([r['ttft'] for r in runs], 50)):>12.1f}"
            f"{ms(pct([r['ttft'] for r in runs], 99)):>9.1f}"
            f"{pct([r['rate'] for r in runs], 50):>11.1f}"
            f"{mean([r['tokens'] for r in runs]):>8.0f}"
            + (f"{mean([r['text_events'] for r in runs]):>8.1f}" if name == "API" else "")
        )
    out.append(
        f"TTFT overhead (API - in-process, per pair): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"mean {ms(mean(overheads)):.1f} ms"
    )
    out.append(
        f"tokens/s ratio (first -> last text, per pair): median {ratio:.3f}, min "
        f"{min(ratios, default=math.nan):.3f}; over the whole call (call/request -> last text): "
        f"median {pct(whole, 50):.3f}"
    )

    probes = read_probes(bench.probe_dir)
    for what, splitter, label, key in (
        ("time to first token", split, "generate_text -> first text", "ttft"),
        ("first -> last text span", tail_split, "first -> last text", "span"),
    ):
        rows = [s for s in (splitter(r, probes) for r in apis) if s]
        if not rows:
            continue
        out.append(f"\nWhere an API request's {what} goes (mean of {len(rows)}, ms):")
        for name in rows[0]:
            values = [r[name] for r in rows]
            out.append(f"  {name:<72}{ms(mean(values)):>8.1f}  (p50 {ms(pct(values, 50)):.1f})")
        in_process = ms(mean([r[key] for r in inprocs]))
        out.append(f"  {'in-process: ' + label:<72}{in_process:>8.1f}")

    results = conc["results"]
    errors = [r for r in results if not r["ok"]]
    ttfts = [r["ttft"] for r in results if not math.isnan(r["ttft"])]
    out.append(
        f"\n{len(results)} concurrent streaming clients: {len(errors)} errors, wall "
        f"{conc['wall']:.1f} s (one worker runs the jobs one after the other), TTFT p50 "
        f"{ms(pct(ttfts, 50)):.0f} ms, p99 {ms(pct(ttfts, 99)):.0f} ms; total p50 "
        f"{ms(pct([r['total'] for r in results], 50)):.0f} ms"
    )
    for r in errors[:5]:
        out.append(f"  error: {r['error']}")

    expected = inprocs[0]["text"]
    checks = [
        "API text == in-process text: "
        + ("yes" if all(a["text"] == expected for a in apis) else "NO"),
        "API text == the job's Output: "
        + ("yes" if all(a["text"] == a["output"] for a in apis) else "NO"),
        "in-process runs agree: "
        + ("yes" if all(i["text"] == expected for i in inprocs) else "NO"),
        "model warm in every timed job: "
        + ("yes" if all(a["loaded"] is False for a in apis) else "NO"),
        "every stream ended with [DONE]: " + ("yes" if all(a["done"] for a in apis) else "NO"),
    ]
    out.append("checks: " + "; ".join(checks))
    if bench.notes:
        out.append("notes: " + "; ".join(bench.notes))

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    out.append(
        f"RESULT api TTFT overhead p50={p50:.1f} ms p99={p99:.1f} ms (goal p50 <= "
        f"{GOAL_TTFT_MS:.0f} ms, {verdict(p50 <= GOAL_TTFT_MS)}) | tokens/s ratio={ratio:.3f} "
        f"(goal >= {GOAL_RATIO}, {verdict(ratio >= GOAL_RATIO)}) | {len(results)} concurrent "
        f"streams errors={len(errors)} (goal {GOAL_ERRORS}, {verdict(len(errors) <= GOAL_ERRORS)})"
        f" [{args.model}, {args.tokens} tokens, {len(pairs)} pairs; TTFT in-process "
        f"{ms(pct([r['ttft'] for r in inprocs], 50)):.1f} ms vs API "
        f"{ms(pct([r['ttft'] for r in apis], 50)):.1f} ms]"
    )
    return "\n".join(out)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="tiny-llama",
        choices=("tiny-llama", "smollm2-135m-instruct"),
        help="built-in text model (the issue's benchmark: the tiny model)",
    )
    ap.add_argument("--tokens", type=int, default=128, help="max_tokens")
    ap.add_argument("--rounds", type=int, default=30, help="(in-process, API) pairs")
    ap.add_argument("--clients", type=int, default=50, help="concurrent streaming clients")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    return ap.parse_args()


def main() -> int:
    args = _parse_args()
    bench = Bench(args)

    def body() -> str:
        bench.setup()
        say("warm-up (untimed): one in-process generation, one API request (the worker loads)")
        bench.inproc("warm-up")
        bench.api("warm-up")
        inprocs, apis = [], []
        for i in range(args.rounds):
            inprocs.append(bench.inproc(f"{i + 1}"))
            apis.append(bench.api(f"{i + 1}"))
        inprocs.append(bench.inproc(f"{args.rounds + 1}"))
        conc = (
            bench.concurrent(args.clients, inprocs[0]["text"])
            if args.clients
            else {"results": [], "wall": 0.0}
        )
        return report(bench, inprocs, apis, conc)

    return run_bench("api", bench, body)


if __name__ == "__main__":
    sys.exit(main())
