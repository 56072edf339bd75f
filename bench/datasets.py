"""Dataset benchmarks (issue 3): PII scan throughput and memory, and a 1M-row import.

Each figure is printed beside a bare baseline measured in the same run:
- PII scan on ONE core (pinned child) of a generated ~100 MB mixed Chinese/English QA JSONL (about
  4% of rows with PII) and of a ~50 MB PII-dense one (every row also carries a document of the
  labeled evaluation generator) and, with no goal, ~20 MB of rows that are only such documents,
  beside a single compiled regex pass; and the detector's per-type precision/recall/F1 on the
  evaluation set's test half. Goals: >= 20 MB/s per core on the first two, peak RSS <= 300 MB,
  every type's precision and recall >= 0.95.
- Import (validate + canonicalise + hash) of a generated 1,000,000-row QA CSV, beside a bare
  csv.reader pass over the same file. Goal: <= 60 s.
- Near-duplicates: one cluster of 3,000 near-identical rows (~4.5 million pairs) through
  find_duplicates with a table embedder, beside the bare similarity pass. Goal: <= 10 s.
- Near-duplicate passes (no goal: the costs workers/data/dedup documents): the exact pass and its
  memory per distinct text beside a bare read; the lexical pass on varied, templated and
  clustered Chinese rows beside the exact pass (time, peak RSS, candidate pairs, cost per pair);
  MinHash beside shingling alone; MiniLM's texts/s and the similarity search's share of the
  semantic pass beside the bare embedder (bench/_dedup_passes.py).

Usage: .venv/bin/python bench/datasets.py [--pii-mb 100] [--pii-dense-mb 50] [--pii-docs-mb 20]
           [--rows 1000000] [--dedup-rows 3000]
           [--dedup-pass-rows 100000] [--dedup-embed-texts 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._dataset_import import bench_import  # noqa: E402
from bench._dedup_cluster import bench_dedup_cluster  # noqa: E402
from bench._dedup_passes import bench_dedup_passes, print_report  # noqa: E402
from bench._pii_scan import bench_pii, headline  # noqa: E402
from bench._pii_scan import print_report as print_pii_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pii-mb", type=float, default=100)
    ap.add_argument("--pii-dense-mb", type=float, default=50)
    ap.add_argument("--pii-docs-mb", type=float, default=20)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dedup-rows", type=int, default=3_000)
    ap.add_argument("--dedup-pass-rows", type=int, default=100_000)
    ap.add_argument("--dedup-embed-texts", type=int, default=1_000, help="0: skip MiniLM")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    pii = bench_pii(args.pii_mb, 10, args.pii_dense_mb, docs_mb=args.pii_docs_mb)
    print_pii_report(pii)

    imp = bench_import(args.rows)
    print(f"Import, {imp['rows']:,} rows, {imp['file_mb']} MB CSV:")
    print(
        f"  import_file        {imp['import_s']:>7.2f} s   {imp['rows_per_s']:>9,} rows/s  peak RSS {imp['peak_rss_mb']} MB"
    )
    print(
        f"  bare csv.reader    {imp['baseline_csv_reader_s']:>7.2f} s   (baseline; ratio {imp['ratio_vs_baseline']}x)"
    )

    dd = bench_dedup_cluster(args.dedup_rows)
    goal = f"goal <= {dd['goal_s']:g} s" if dd["goal_s"] else "goal stated for 3,000 rows"
    print(f"Near-duplicates, one cluster of {dd['rows']:,} rows ({dd['pairs']:,} pairs):")
    print(f"  find_duplicates    {dd['seconds']:>7.2f} s   one group: {dd['one_group']}  ({goal})")
    print(
        f"  bare similarity    {dd['baseline_s']:>7.3f} s   (baseline; ratio {dd['ratio_vs_baseline']}x)"
    )
    passes = bench_dedup_passes(args.dedup_pass_rows, args.dedup_embed_texts)
    print_report(passes)
    report = {"pii": pii, "import": imp, "dedup": dd, "dedup_passes": passes}
    print(json.dumps(report, ensure_ascii=False), file=sys.stderr)

    ok = pii["meets_goals"] and imp["meets_goal"] and dd["meets_goal"]
    print(
        f"RESULT {headline(pii)} | "
        f"import {imp['rows']:,} rows {imp['import_s']} s (goal <= 60 for 1,000,000) peak RSS {imp['peak_rss_mb']} MB "
        f"[baseline csv.reader {imp['baseline_csv_reader_s']} s, ratio {imp['ratio_vs_baseline']}x]"
        f"{'' if ok else ' — GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
