"""Import benchmark: 1M mixed Chinese/English QA rows through `import_file`, beside a bare CSV read.

Both runs happen in fresh child processes (so peak RSS is the run's own, not the bench's), on the
same generated file, in the same call. Goal (issue 3): 1,000,000 rows imported in <= 60 s.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_ZH = [
    "高血压",
    "糖尿病",
    "头痛",
    "失眠",
    "咳嗽",
    "发烧",
    "饮食",
    "运动",
    "药物",
    "复查",
    "医生",
    "患者",
    "症状",
    "治疗",
    "建议",
    "每天",
    "注意",
    "休息",
    "检查",
    "血糖",
]
_EN = [
    "blood",
    "pressure",
    "sleep",
    "doctor",
    "patient",
    "diet",
    "exercise",
    "dose",
    "symptom",
    "treatment",
    "daily",
    "check",
    "rest",
    "fever",
    "cough",
    "advice",
    "glucose",
    "follow-up",
]

_IMPORT_CHILD = """
import json, resource, sys, tempfile, time
t0 = time.perf_counter()
from workers.data.importer import import_file
t1 = time.perf_counter()
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as out:
    r = import_file(sys.argv[1], "bench_qa.csv", out_dir=out, validation_fraction=0.1, seed=7)
    t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "import_module_s": t1 - t0, "rows": r.rows, "sha256": r.sha256,
                  "encoding": r.encoding, "split": r.split_counts,
                  "peak_rss_kb": int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])}))
"""

_BASELINE_CHILD = """
import csv, json, resource, sys, time
t0 = time.perf_counter()
n = 0
with open(sys.argv[1], encoding="utf-8", newline="") as f:
    for row in csv.reader(f):
        n += 1
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "rows": n - 1,
                  "peak_rss_kb": int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])}))
"""


def _sentence(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(3, 14)):
        if rng.random() < 0.55:
            words.append(rng.choice(_ZH))
        else:
            words.append(rng.choice(_EN) + " ")
    text = "".join(words).strip()
    if rng.random() < 0.05:
        text += ', with "quotes", commas\nand a second line'
    return text


def generate_qa_csv(path: str | os.PathLike[str], rows: int, seed: int = 0) -> int:
    """Write a UTF-8 QA CSV (header 问题,答案) with `rows` distinct data rows; returns its size.

    Sentences come from a pool drawn once (fast to write); the row number in each question keeps
    every row distinct.
    """
    rng = random.Random(seed)
    pool = [_sentence(rng) for _ in range(4096)]
    pick = rng.choices
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["问题", "答案"])
        done = 0
        while done < rows:
            n = min(10_000, rows - done)
            parts = pick(pool, k=3 * n)
            writer.writerows(
                (f"{done + i} {parts[3 * i]}?", f"{parts[3 * i + 1]}。{parts[3 * i + 2]}")
                for i in range(n)
            )
            done += n
    return os.path.getsize(path)


def _child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_import(rows: int = 1_000_000) -> dict:
    """Time import_file on a generated `rows`-row CSV and a bare csv.reader pass over it."""
    with tempfile.TemporaryDirectory(prefix="atelier-bench-import-") as tmp:
        path = os.path.join(tmp, "bench_qa.csv")
        t0 = time.perf_counter()
        size = generate_qa_csv(path, rows)
        generate_s = time.perf_counter() - t0
        baseline = _child(_BASELINE_CHILD, path)
        run = _child(_IMPORT_CHILD, path, tmp)
    assert run["rows"] == rows == baseline["rows"], (run["rows"], baseline["rows"], rows)
    seconds = run["seconds"]
    return {
        "rows": rows,
        "file_mb": round(size / 2**20, 1),
        "generate_s": round(generate_s, 2),
        "import_s": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "mb_per_s": round(size / 2**20 / seconds, 1),
        "baseline_csv_reader_s": round(baseline["seconds"], 2),
        "ratio_vs_baseline": round(seconds / baseline["seconds"], 1),
        "peak_rss_mb": round(run["peak_rss_kb"] / 1024, 1),
        "baseline_peak_rss_mb": round(baseline["peak_rss_kb"] / 1024, 1),
        "split": run["split"],
        "sha256": run["sha256"],
        "goal_s": 60,
        "meets_goal": seconds <= 60,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(json.dumps(bench_import(n), indent=2))
