"""Provenance on chain (issue 13): approval -> confirmed record latency, on the real platform.

    .venv/bin/python bench/provenance.py [--outputs 150] [--waves 3] [--age 5] [--quick] [--keep]

Goal (issue 13): from a reviewer's approval to a confirmed (final) record <= the batch age
setting + 3 blocks. The batcher runs every few seconds in the scheduler, so its period is
shown beside the goal as the allowance it adds.

In a temp dir it starts what `make run` starts for provenance, as separate processes:

- a database: SQLite (WAL) in the temp dir, or a fresh database on the PostgreSQL server of
  DATABASE_URL (created and dropped here), migrated;
- Redis: REDIS_URL when it answers, else an embedded one (apps.core.processes);
- anvil with a block every `--block-time` seconds (1), its state in the temp dir;
- `manage.py chain_dev_setup`: a random signer key under the temp ATELIER_VAR_DIR (0600),
  funded, and the registry deployed;
- the signer: a Celery worker on the `chain` queue, the only process given
  CHAIN_PRIVATE_KEY_FILE (concurrency 1, as `make run`);
- the scheduler, whose periodic batcher (apps/provenance/services.batcher_tick) makes records,
  closes batches by age (ATELIER_CHAIN_BATCH_AGE_SECONDS) and starts their anchor jobs.

Then it creates `--outputs` text outputs through apps.outputs.services.output_create with a
project rule that flags them, and a reviewer approves them through
apps.review.services.output_decide in `--waves` waves `--gap` seconds apart. Per output:
approval (ReviewDecision.decided_at) -> ProvenanceRecord.final_at, split by the row stamps
into approval -> record made -> batch closed -> anchor job running -> signed -> sent -> mined
(seen by the signer) -> final. The last line is the headline.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is bench/: replace it by the repository root.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from apps.core import processes  # noqa: E402
from bench._common import bench_policy, pct, say, stop_everything  # noqa: E402
from tests.harness import Processes, redis_answers, start_embedded_redis  # noqa: E402
from workers.chain.keys import SIGNER_ONLY_VARIABLES as KEY_VARIABLES  # noqa: E402

CHAIN_ID = 31337
CONFIRMATIONS = 3
FLAG_WORD = "zorblax"
FLAG_RULES = [{"kind": "keyword", "pattern": FLAG_WORD, "category": "custom", "severity": "flag"}]


# --------------------------------------------------------------------------- database


class PostgresScratch:
    """A fresh database on DATABASE_URL's server, dropped at the end (the bench's batcher must
    not resume other runs' batches, nor share their registry row)."""

    def __init__(self, url: str, name: str):
        import dj_database_url

        self.admin = dj_database_url.parse(url)
        self.name = name
        parts = urllib.parse.urlsplit(url)
        self.url = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))

    def _run(self, sql: str) -> None:
        import psycopg

        a = self.admin
        with psycopg.connect(
            dbname=a["NAME"] or "postgres",
            user=a.get("USER") or None,
            password=a.get("PASSWORD") or None,
            host=a.get("HOST") or "127.0.0.1",
            port=a.get("PORT") or 5432,
            autocommit=True,
        ) as conn:
            conn.execute(sql)

    def create(self) -> None:
        self._run(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --------------------------------------------------------------------------- environment


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-prov-"))
        self.redis_proc: subprocess.Popen | None = None
        self.procs: Processes | None = None
        self.pg: PostgresScratch | None = None
        self.facts: dict[str, str] = {}
        self.notes: list[str] = []

    def setup(self) -> None:
        args = self.args
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if not processes.anvil_binary().exists():
            raise SystemExit(
                f"anvil missing at {processes.anvil_binary()}: run `npm ci --prefix contracts`"
            )
        for name in KEY_VARIABLES:  # chain_dev_setup must make its own key; no child inherits one
            os.environ.pop(name, None)

        redis_url = os.environ.get("REDIS_URL", "")
        if redis_url and redis_answers(redis_url):
            self.facts["redis"] = f"{redis_url} (REDIS_URL)"
            self.notes.append(
                "REDIS_URL is shared: another worker on queue 'chain' of that Redis would take "
                "this bench's anchor jobs"
            )
        else:
            self.redis_proc, redis_url = start_embedded_redis(self.tmp / "redis")
            self.facts["redis"] = "embedded"
        db_url = os.environ.get("DATABASE_URL", "")
        if db_url:
            self.pg = PostgresScratch(db_url, f"atelier_bench_prov_{tag.replace('-', '_')}")
            self.pg.create()
            db_url = self.pg.url
            self.facts["database"] = f"PostgreSQL (scratch database {self.pg.name})"
        else:
            db_url = f"sqlite:///{(self.tmp / 'bench.sqlite3').resolve()}"
            self.facts["database"] = "SQLite (WAL)"

        say(f"starting anvil (a block every {args.block_time} s)")
        port = processes.free_port()
        rpc_url = f"http://127.0.0.1:{port}"
        env = {
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "ATELIER_VAR_DIR": str(self.tmp / "var"),
            "ATELIER_MEDIA_ROOT": str(self.tmp / "media"),
            "ATELIER_JOBS_DIR": str(self.tmp / "jobs"),
            "ATELIER_CHANNEL_PREFIX": f"atelier-bench-{tag}",
            "CHAIN_RPC_URL": rpc_url,
            "CHAIN_ID": str(CHAIN_ID),
            "ATELIER_CHAIN_BATCH_AGE_SECONDS": f"{args.age:g}",
            "ATELIER_CHAIN_BATCH_SIZE": str(args.batch_size),
            "ATELIER_CHAIN_CONFIRMATIONS": str(CONFIRMATIONS),
            "ATELIER_CHAIN_BATCHER_SECONDS": f"{args.batcher:g}",
            "ATELIER_CHAIN_POLL_SECONDS": f"{args.poll:g}",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        # Before django.setup(): settings read the environment once, at import.
        os.environ.update(env)
        (self.tmp / "var").mkdir()
        self.procs = Processes(env=env, log_dir=self.tmp / "logs")
        self.procs.spawn(
            "anvil",
            processes.anvil_cmd(
                port=port,
                state_path=self.tmp / "anvil-state.json",
                chain_id=CHAIN_ID,
                block_time=args.block_time,
            ),
        )
        from workers.chain.node import wait_until_answers

        self.w3 = wait_until_answers(rpc_url, timeout=30)
        self.facts["anvil"] = self.w3.client_version

        say("migrating the fresh database")
        t = time.monotonic()
        self._manage("migrate", "--noinput", "-v", "0")
        self.facts["migrate"] = f"{time.monotonic() - t:.0f}s"

        say("manage.py chain_dev_setup (signer key, funds, registry)")
        out = self._manage("chain_dev_setup")
        key_lines = [ln for ln in out.splitlines() if ln.startswith("CHAIN_PRIVATE_KEY_FILE=")]
        if not key_lines:
            raise RuntimeError(f"chain_dev_setup printed no key file:\n{out}")
        key_file = key_lines[-1].split("=", 1)[1].strip()

        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from apps.moderation.services import ruleset_current, ruleset_save
        from apps.projects.models import Membership, Project, Role

        users = get_user_model().objects
        self.author = users.create_user(username=f"author-{tag}", password=None)
        self.reviewer = users.create_user(username=f"reviewer-{tag}", password=None)
        admin = users.create_user(username=f"admin-{tag}", password=None)
        bench_policy()
        self.project = Project.objects.create(name=f"Provenance bench {tag}")
        for user, role in (
            (self.author, Role.MEMBER),
            (self.reviewer, Role.REVIEWER),
            (admin, Role.ADMIN),
        ):
            Membership.objects.create(project=self.project, user=user, role=role)
        ruleset_current(self.project.pk)
        ruleset_save(project=self.project, rows=FLAG_RULES, actor=admin, comment="bench")

        say("starting the scheduler (batcher) and the signer (chain queue)")
        self.procs.scheduler(interval=args.scheduler_interval)
        # The key reaches this one process, as `make run` and compose arrange it.
        signer_env = {**self.procs.env, "CHAIN_PRIVATE_KEY_FILE": key_file}
        self.procs.procs["signer"] = processes.spawn(
            "signer",
            processes.celery_worker_cmd(
                "chain", node=f"signer-{os.getpid()}@%h", concurrency=1, heartbeat=False
            ),
            env=signer_env,
            log_dir=self.procs.log_dir,
        )
        self.procs.wait_log("signer", "ready.", timeout=90)

    def _manage(self, *argv: str) -> str:
        done = subprocess.run(
            [sys.executable, processes.MANAGE, *argv],
            cwd=ROOT,
            env=self.procs.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {argv[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    # ---- the measured part
    def run(self) -> list[dict]:
        """Flag every output, approve them wave by wave, wait until every record is final;
        return one row of stamps per output."""
        from apps.outputs.models import Moderation
        from apps.outputs.services import output_create
        from apps.projects.selectors import project_access
        from apps.review.services import output_decide

        args = self.args
        say(f"creating {args.outputs} flagged outputs")
        outputs = []
        for i in range(args.outputs):
            out = output_create(
                project_id=self.project.pk,
                kind="text",
                sha256=secrets.token_hex(32),
                created_by_id=self.author.pk,
                text=f"bench output {i}: the {FLAG_WORD} again",
                prompt="write something",
            )
            if out.moderation != Moderation.FLAGGED:
                raise RuntimeError(f"output {out.pk} was not flagged ({out.moderation})")
            outputs.append(out.pk)

        access = project_access(user=self.reviewer, project_id=self.project.pk, need="review")
        waves = [outputs[i :: args.waves] for i in range(args.waves)]
        self.wave_spans = []
        t_first = time.monotonic()
        for w, ids in enumerate(waves):
            start_at = t_first + w * args.gap
            time.sleep(max(0.0, start_at - time.monotonic()))
            say(f"wave {w + 1}/{len(waves)}: approving {len(ids)} outputs")
            t0 = time.time()
            for pk in sorted(ids):
                output_decide(
                    access=access, actor=self.reviewer, output_id=pk, approve=True, reason=""
                )
            self.wave_spans.append((t0, time.time()))
        self._wait_final(outputs)
        return self._rows(outputs, waves)

    def _wait_final(self, outputs: list[int]) -> None:
        from apps.provenance.models import AnchorBatch, BatchState, ProvenanceRecord, RecordState

        timeout = self.args.age + 20 * self.args.block_time + 60
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            final = ProvenanceRecord.objects.filter(
                output_id__in=outputs, state=RecordState.FINAL
            ).count()
            if final != last:
                say(f"{final}/{len(outputs)} records final")
                last = final
            if final == len(outputs):
                return
            failed = AnchorBatch.objects.filter(state=BatchState.FAILED).first()
            if failed is not None:
                raise RuntimeError(f"batch {failed.pk} failed: {failed.error}")
            time.sleep(0.25)
        raise RuntimeError(
            f"only {last}/{len(outputs)} records final {timeout:.0f} s after the last wave:\n"
            + self.procs.log("signer")[-3000:]
            + self.procs.log("scheduler")[-3000:]
        )

    def _rows(self, outputs: list[int], waves: list[list[int]]) -> list[dict]:
        from apps.jobs.models import Job
        from apps.provenance.models import AnchorBatch, ProvenanceRecord
        from apps.review.models import ReviewDecision

        wave_of = {pk: w for w, ids in enumerate(waves) for pk in ids}
        decided = dict(
            ReviewDecision.objects.filter(output_id__in=outputs).values_list(
                "output_id", "decided_at"
            )
        )
        records = {
            r.output_id: r
            for r in ProvenanceRecord.objects.filter(output_id__in=outputs).select_related("batch")
        }
        batches = {
            b.pk: b
            for b in AnchorBatch.objects.filter(pk__in={r.batch_id for r in records.values()})
        }
        jobs = {j.pk: j for j in Job.objects.filter(pk__in={b.job_id for b in batches.values()})}
        self.batches = batches
        self.jobs = jobs
        rows = []
        for pk in outputs:
            rec = records[pk]
            b = rec.batch
            job = jobs.get(b.job_id)
            rows.append(
                {
                    "output": pk,
                    "wave": wave_of[pk],
                    "batch": b.pk,
                    "approved": decided[pk].timestamp(),
                    "record": rec.created_at.timestamp(),
                    "closed": b.created_at.timestamp(),
                    "job_running": job.started_at.timestamp() if job and job.started_at else None,
                    "signed": b.signed_at.timestamp(),
                    "sent": b.sent_at.timestamp(),
                    "mined": b.mined_at.timestamp(),
                    "batch_final": b.final_at.timestamp(),
                    "final": rec.final_at.timestamp(),
                }
            )
        return rows

    def cleanup(self) -> None:
        stop_everything(
            children=[],
            procs=self.procs,
            redis_proc=self.redis_proc,
            tmp=self.tmp,
            keep=self.args.keep,
        )
        if self.pg is not None:
            try:
                self.pg.drop()
            except Exception as exc:
                say(f"could not drop {self.pg.name}: {exc}")

    def log_tails(self) -> str:
        logs = self.tmp / "logs"
        if not logs.exists():
            return ""
        return "\n".join(
            f"--- {f.name} (tail)\n" + f.read_text(errors="replace")[-2000:]
            for f in sorted(logs.glob("*.log"))
        )


# --------------------------------------------------------------------------- report


def stats(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": max(values) if values else math.nan,
        "min": min(values) if values else math.nan,
    }


STAGES = [
    # (label, from stamp, to stamp); indented rows split the row above them.
    ("approval -> batch closed", "approved", "closed"),
    ("  approval -> record made (batcher tick)", "approved", "record"),
    ("  record made -> batch closed (age + tick)", "record", "closed"),
    ("batch closed -> mined (seen by the signer)", "closed", "mined"),
    ("  closed -> anchor job running (dispatch)", "closed", "job_running"),
    ("  job running -> signed (nonce, fees, sign)", "job_running", "signed"),
    ("  signed -> sent (broadcast)", "signed", "sent"),
    ("  sent -> receipt seen (next block + poll)", "sent", "mined"),
    ("mined -> final (confirmations + poll)", "mined", "final"),
    ("approval -> final (total)", "approved", "final"),
]


def report(bench: Bench, rows: list[dict], elapsed: float) -> list[str]:
    args = bench.args
    out = [
        "Atelier provenance bench (issue 13): approval -> final record, real platform: "
        + ", ".join(f"{k}={v}" for k, v in bench.facts.items())
        + f", wall time={elapsed:.0f}s",
        f"  settings: batch age {args.age:g} s, batch size {args.batch_size}, confirmations "
        f"{CONFIRMATIONS}, batcher every {args.batcher:g} s (scheduler round "
        f"{args.scheduler_interval:g} s), signer poll {args.poll:g} s, a block every "
        f"{args.block_time} s; {len(rows)} outputs approved in {args.waves} waves "
        f"{args.gap:g} s apart",
        "",
        f"  {'per output, seconds':<46} {'n':>5} {'p50':>7} {'p95':>7} {'max':>7} {'min':>7}",
    ]
    for label, a, b in STAGES:
        vals = [r[b] - r[a] for r in rows if r[a] is not None and r[b] is not None]
        s = stats(vals)
        out.append(
            f"  {label:<46} {s['n']:>5} {s['p50']:7.2f} {s['p95']:7.2f} {s['max']:7.2f} "
            f"{s['min']:7.2f}"
        )
    out.append("")
    out.append(
        f"  {'batch':>6} {'wave':>4} {'hashes':>6} {'block':>6} {'conf':>4} {'gas':>7}  "
        f"{'last approval->closed':>21} {'closed->mined':>13} {'mined->final':>12}"
    )
    by_batch: dict[int, list[dict]] = {}
    for r in rows:
        by_batch.setdefault(r["batch"], []).append(r)
    for pk in sorted(by_batch):
        b, rs = bench.batches[pk], by_batch[pk]
        last = max(r["approved"] for r in rs)
        out.append(
            f"  {pk:>6} {','.join(sorted({str(r['wave'] + 1) for r in rs})):>4} {b.count:>6} "
            f"{b.block_number:>6} {b.confirmations:>4} {b.gas_used or 0:>7}  "
            f"{rs[0]['closed'] - last:>21.2f} {rs[0]['mined'] - rs[0]['closed']:>13.2f} "
            f"{rs[0]['batch_final'] - rs[0]['mined']:>12.2f}"
        )
    spans = ", ".join(f"{t1 - t0:.2f}" for t0, t1 in bench.wave_spans)
    out.append(f"  approving a wave took (s): {spans}")
    for note in bench.notes:
        out.append(f"NOTE: {note}")
    return out


def headline(args: argparse.Namespace, rows: list[dict]) -> str:
    total = stats([r["final"] - r["approved"] for r in rows])
    blocks = CONFIRMATIONS * args.block_time
    goal = args.age + blocks
    allowance = goal + args.batcher
    verdict = "met" if total["p95"] <= goal else "MISSED"
    with_tick = "met" if total["p95"] <= allowance else "MISSED"
    return (
        f"headline: approval→final p95 {total['p95']:.2f} s (goal <= batch age {args.age:g} s + "
        f"{CONFIRMATIONS} blocks {blocks:g} s = {goal:g} s: {verdict}; with the batcher period "
        f"{args.batcher:g} s: {allowance:g} s: {with_tick}), p50 {total['p50']:.2f} s, max "
        f"{total['max']:.2f} s, {total['n']} outputs in {args.waves} waves"
    )


# --------------------------------------------------------------------------- main


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--outputs", type=int, default=None, help="outputs approved (150; quick 40)")
    ap.add_argument("--waves", type=int, default=None, help="approval waves (3; quick 2)")
    ap.add_argument("--age", type=float, default=5.0, help="ATELIER_CHAIN_BATCH_AGE_SECONDS (5)")
    ap.add_argument(
        "--gap", type=float, default=None, help="seconds between waves (age + 3 blocks + 7)"
    )
    ap.add_argument("--batch-size", type=int, default=1000, help="ATELIER_CHAIN_BATCH_SIZE")
    ap.add_argument("--batcher", type=float, default=1.0, help="ATELIER_CHAIN_BATCHER_SECONDS (1)")
    ap.add_argument(
        "--scheduler-interval",
        type=float,
        default=None,
        help="seconds between scheduler rounds (half the batcher period: the batcher runs in a round)",
    )
    ap.add_argument("--poll", type=float, default=0.5, help="ATELIER_CHAIN_POLL_SECONDS (0.5)")
    ap.add_argument("--block-time", type=int, default=1, help="anvil --block-time (1)")
    ap.add_argument("--quick", action="store_true", help="40 outputs in 2 waves")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = ap.parse_args()
    args.outputs = args.outputs or (40 if args.quick else 150)
    args.waves = max(1, min(args.waves or (2 if args.quick else 3), args.outputs))
    args.gap = args.gap if args.gap is not None else args.age + CONFIRMATIONS * args.block_time + 7
    args.scheduler_interval = args.scheduler_interval or args.batcher / 2
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
    rows: list[dict] = []
    try:
        bench.setup()
        rows = bench.run()
    except KeyboardInterrupt:
        error = "interrupted"
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        print(bench.log_tails(), file=sys.stderr)
    finally:
        say("cleaning up")
        bench.cleanup()
    if error:
        print(f"headline: FAILED ({error.splitlines()[0][:200]})")
        return 130 if error == "interrupted" else 1
    print("\n".join(report(bench, rows, time.monotonic() - t_start)))
    print(headline(args, rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
