"""Near-duplicate passes: what each one costs (the figures workers/data/dedup points here for).

    .venv/bin/python -m bench._dedup_passes [--rows 100000] [--embed-texts 1000]

Every file is generated; every run is a fresh child process (peak RSS is its own VmHWM, imports
included), beside a bare baseline measured in the same call:

* exact pass: `find_duplicates(semantic=False)` over `rows` varied short Chinese rows (8-29
  characters, 2 % near copies), beside a bare read of the same file (`json.loads` and
  `record_text` of every line). Memory per distinct text = (peak RSS - the read's) / texts.
* lexical pass: `find_duplicates` with an embedder that returns zero vectors (what MiniLM does
  on Chinese, so every row goes to the character pass) over 20,000 varied rows, 20,000 templated
  rows (shared boilerplate: many candidate pairs), `rows` varied rows, and one cluster of 3,000
  near-identical texts; beside the exact pass over the same file. The candidate pairs, the cost
  of the b-bit prefilter and of the exact Jaccard per pair are counted inside the run.
* MinHash of 1,500-character texts, beside shingling alone (same texts, same run, in process).
* semantic pass with the real all-MiniLM-L6-v2 over `embed_texts` short English texts: model
  load, texts/s, and the shares of `find_duplicates` spent embedding and in the tiled similarity
  search (timed inside the run), beside the bare embedder over the same distinct texts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 2_500)]
DISEASES = (
    "高血压 糖尿病 冠心病 哮喘 胃炎 肺炎 肝炎 痛风 贫血 失眠 偏头痛 关节炎 颈椎病 腰椎病 鼻炎 "
    "湿疹 甲亢 肾炎 结石 便秘 腹泻 感冒 发烧 咳嗽 过敏 近视 中耳炎 口腔溃疡 骨质疏松 脂肪肝 "
    "心律失常 支气管炎 荨麻疹 带状疱疹 前列腺炎 乳腺增生 痔疮 静脉曲张 低血糖 高血脂"
).split()
QUESTIONS = (
    "可以喝酒 可以吸烟 能吃海鲜 能运动 需要住院 会遗传 能喝咖啡 能吃辣 可以游泳 能熬夜 "
    "需要吃药 会复发 能怀孕 能献血 能坐飞机 需要手术 会传染 能喝牛奶 能吃水果 能泡温泉 "
    "可以跑步 能喝茶 要忌口 能吃鸡蛋 能晒太阳"
).split()
ADVICE = (
    "请咨询医生 请及时就医 建议定期复查 注意休息 遵医嘱用药 保持清淡饮食 多喝温水 避免劳累 "
    "适量运动 戒烟限酒 按时作息 监测血压 控制体重 保持心情舒畅 少盐少油 避免受凉 多吃蔬菜 "
    "不要自行停药 注意保暖 定期体检"
).split()
EN_VERBS = ("reset", "change", "recover", "update", "delete", "export", "share", "lock", "verify")
EN_THINGS = (
    "password",
    "account",
    "email address",
    "profile picture",
    "billing plan",
    "phone number",
    "two-factor code",
    "saved cards",
    "order history",
    "shipping address",
)
EN_TAILS = (
    "",
    " please",
    " quickly",
    " from my phone",
    " on the website",
    " without logging in",
    " after the update",
    " for my child",
    " today",
    " again",
    " if I forgot it",
)


# --- corpora -----------------------------------------------------------------------------------
def varied_rows(n: int, seed: int) -> list[str]:
    """Short random Chinese texts (8-29 characters); 2 % are an earlier row with one change."""
    rng = np.random.default_rng(seed)
    rows: list[str] = []
    for _ in range(n):
        if rows and rng.random() < 0.02:
            text = list(rows[int(rng.integers(len(rows)))])
            text[int(rng.integers(len(text)))] = CJK[int(rng.integers(len(CJK)))]
            rows.append("".join(text))
        else:
            rows.append("".join(rng.choice(CJK, int(rng.integers(8, 30)))))
    return rows


def templated_rows(n: int) -> list[str]:
    """ "请问{disease}患者{question}吗？{advice}。": distinct rows that share most of their text."""
    combos = [(d, q, a) for a in ADVICE for q in QUESTIONS for d in DISEASES]
    return [f"请问{d}患者{q}吗？{a}。" for d, q, a in combos[:n]]


def cluster_rows(n: int) -> list[str]:
    base = "高血压患者应该低盐低脂饮食，规律服用降压药物，定期监测血压，戒烟限酒，适当运动。"
    return [f"{base}编号{i:04d}" for i in range(n)]


def english_rows(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        f"How do I {rng.choice(EN_VERBS)} my {rng.choice(EN_THINGS)}{rng.choice(EN_TAILS)}?"
        f" Ticket {int(rng.integers(0, n // 4 + 1))}."
        for _ in range(n)
    ]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for text in texts:
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path


# --- children ----------------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Unreadable:
    """Zero vectors for every text, as all-MiniLM-L6-v2 gives Chinese: all rows go lexical."""

    name = "unreadable"

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)


def _count_lexical_checks() -> dict:
    """Wrap the prefilter and the exact Jaccard of the lexical pass to count pairs and time."""
    from workers.data.dedup import lexical

    stats = {"prefilter_pairs": 0, "prefilter_s": 0.0, "jaccard_pairs": 0, "jaccard_s": 0.0}
    agree, jaccard = lexical.signatures_agree, lexical.ShingleSets.jaccard

    def counted_agree(low, a, b, need):
        t0 = time.perf_counter()
        out = agree(low, a, b, need)
        stats["prefilter_s"] += time.perf_counter() - t0
        stats["prefilter_pairs"] += int(a.size)
        return out

    def counted_jaccard(self, x, y):
        t0 = time.perf_counter()
        out = jaccard(self, x, y)
        stats["jaccard_s"] += time.perf_counter() - t0
        stats["jaccard_pairs"] += int(x.size)
        return out

    lexical.signatures_agree = counted_agree
    lexical.ShingleSets.jaccard = counted_jaccard
    return stats


def _child(kind: str, path: str) -> dict:
    from workers.data.dedup import find_duplicates, record_text

    out: dict = {}
    if kind == "read":
        t0 = time.perf_counter()
        rows = 0
        with open(path, "rb") as fh:
            for line in fh:
                record_text(json.loads(line))
                rows += 1
        out["rows"] = rows
    elif kind == "exact":
        t0 = time.perf_counter()
        report = find_duplicates(path, semantic=False)
        out.update(rows=report.rows, distinct=report.rows - report.duplicates_to_drop)
    elif kind == "lexical":
        stats = _count_lexical_checks()
        t0 = time.perf_counter()
        report = find_duplicates(path, embedder=_Unreadable())
        out.update(
            rows=report.rows,
            lexical_rows=report.lexical_rows,
            lexical_pairs=report.lexical_pairs,
            near_groups=len(report.near_groups),
            **stats,
        )
    else:
        return _semantic_child(path)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def _semantic_child(path: str) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    import importlib

    import torch  # noqa: F401
    import transformers  # noqa: F401

    from workers.data.dedup import MiniLMEmbedder, find_duplicates, record_text

    find_module = importlib.import_module("workers.data.dedup.find")
    t1 = time.perf_counter()
    embedder = MiniLMEmbedder()
    t2 = time.perf_counter()
    with open(path, "rb") as fh:
        texts = list(dict.fromkeys(record_text(json.loads(line)) for line in fh))
    embedder(texts[:256])  # warm up: the first batches of each shape pay one-off costs
    t3 = time.perf_counter()
    embedder(texts)
    bare = time.perf_counter() - t3

    spent = {"embed": 0.0, "search": 0.0}

    class TimedEmbedder:
        name = embedder.name

        def __call__(self, batch: list[str]) -> np.ndarray:
            started = time.perf_counter()
            out = embedder(batch)
            spent["embed"] += time.perf_counter() - started
            return out

    search = find_module.join_similar_embeddings

    def timed_search(*args, **kwargs):
        started = time.perf_counter()
        out = search(*args, **kwargs)
        spent["search"] += time.perf_counter() - started
        return out

    find_module.join_similar_embeddings = timed_search
    t4 = time.perf_counter()
    report = find_duplicates(path, embedder=TimedEmbedder())
    full = time.perf_counter() - t4
    return {
        "imports_s": round(t1 - t0, 2),
        "load_s": round(t2 - t1, 2),
        "distinct": len(texts),
        "embed_s": round(bare, 2),
        "texts_per_s": round(len(texts) / bare, 1),
        "find_s": round(full, 2),
        "find_embed_pct": round(100 * spent["embed"] / full, 1),
        "search_s": round(spent["search"], 3),
        "search_pct": round(100 * spent["search"] / full, 2),
        "near_groups": len(report.near_groups),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _run_child(kind: str, path: Path, timeout: float = 600) -> dict:
    cmd = [sys.executable, "-m", "bench._dedup_passes", "--child", kind, "--path", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- in process --------------------------------------------------------------------------------
def bench_minhash(texts: int = 200, chars: int = 1_500, seed: int = 5) -> dict:
    """MinHash of `texts` texts of `chars` characters, beside shingling them alone."""
    from workers.data.dedup import lexical_text
    from workers.data.dedup.minhash import minhash_signatures, shingle_hashes

    rng = np.random.default_rng(seed)
    corpus = [lexical_text("".join(rng.choice(CJK, chars))) for _ in range(texts)]
    t0 = time.perf_counter()
    sets = [shingle_hashes(text) for text in corpus]
    shingle_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    minhash_signatures(sets)
    sign_s = time.perf_counter() - t0
    per_text = (shingle_s + sign_s) / texts
    return {
        "texts": texts,
        "chars": chars,
        "ms_per_text": round(1e3 * per_text, 2),
        "shingling_ms_per_text": round(1e3 * shingle_s / texts, 2),
        "ratio_vs_shingling": round(per_text / max(shingle_s / texts, 1e-12), 1),
    }


def _lexical_case(name: str, texts: list[str], tmp: Path) -> dict:
    path = write_jsonl(tmp / f"{name}.jsonl", texts)
    exact = _run_child("exact", path)
    run = _run_child("lexical", path)
    return {
        "rows": len(texts),
        "seconds": run["seconds"],
        "exact_s": exact["seconds"],
        "lexical_s": round(run["seconds"] - exact["seconds"], 3),
        "peak_rss_mb": run["peak_rss_mb"],
        "exact_peak_rss_mb": exact["peak_rss_mb"],
        "lexical_pairs": run["lexical_pairs"],
        "near_groups": run["near_groups"],
        "candidate_pairs": run["prefilter_pairs"],
        "prefilter_us_per_pair": round(
            1e6 * run["prefilter_s"] / max(run["prefilter_pairs"], 1), 3
        ),
        "jaccard_pairs": run["jaccard_pairs"],
        "jaccard_us_per_pair": round(1e6 * run["jaccard_s"] / max(run["jaccard_pairs"], 1), 3),
    }


def bench_dedup_passes(rows: int = 100_000, embed_texts: int = 1_000) -> dict:
    """Every measurement in the module docstring; `embed_texts=0` skips the MiniLM run."""
    small = min(rows, 20_000)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-passes-") as tmp_name:
        tmp = Path(tmp_name)
        big = write_jsonl(tmp / "varied.jsonl", varied_rows(rows, seed=11))
        read = _run_child("read", big)
        exact = _run_child("exact", big)
        lexical = {
            f"varied_{small}": _lexical_case("varied-small", varied_rows(small, seed=11), tmp),
            f"templated_{small}": _lexical_case("templated", templated_rows(small), tmp),
        }
        if rows > small:
            lexical[f"varied_{rows}"] = _lexical_case("varied", varied_rows(rows, seed=11), tmp)
        lexical["cluster_3000"] = _lexical_case("cluster", cluster_rows(3_000), tmp)
        semantic = None
        if embed_texts:
            semantic = _run_child(
                "semantic", write_jsonl(tmp / "en.jsonl", english_rows(embed_texts, seed=3))
            )
    extra_mb = max(exact["peak_rss_mb"] - read["peak_rss_mb"], 0.0)
    return {
        "rows": rows,
        "read": read,
        "exact": {
            **exact,
            "bytes_per_distinct_text": round(extra_mb * 2**20 / max(exact["distinct"], 1)),
            "ratio_vs_read": round(exact["seconds"] / max(read["seconds"], 1e-9), 2),
        },
        "lexical": lexical,
        "minhash": bench_minhash(),
        "semantic": semantic,
    }


def print_report(d: dict) -> None:
    """The figures, one line each, as bench/datasets.py prints them."""
    read, exact = d["read"], d["exact"]
    print(f"Near-duplicate passes ({d['rows']:,} varied short Chinese rows unless said):")
    print(
        f"  exact pass         {exact['seconds']:>7.2f} s   peak RSS {exact['peak_rss_mb']:>6.1f} MB"
        f"  ~{exact['bytes_per_distinct_text']} B per distinct text"
    )
    print(
        f"  bare read          {read['seconds']:>7.2f} s   peak RSS {read['peak_rss_mb']:>6.1f} MB"
        f"  (baseline; ratio {exact['ratio_vs_read']}x)"
    )
    for name, c in d["lexical"].items():
        print(
            f"  lexical {name:<18} {c['lexical_s']:>6.2f} s over exact ({c['seconds']:.2f} s in all,"
            f" exact {c['exact_s']:.2f} s)  peak RSS {c['peak_rss_mb']:.1f} MB (exact"
            f" {c['exact_peak_rss_mb']:.1f})  {c['candidate_pairs']:,} candidate pairs,"
            f" {c['lexical_pairs']:,} verified"
        )
    worst = max(d["lexical"].values(), key=lambda c: c["candidate_pairs"])
    print(
        f"  per pair: prefilter {worst['prefilter_us_per_pair']} us, exact Jaccard"
        f" {worst['jaccard_us_per_pair']} us (the case with the most candidates)"
    )
    m = d["minhash"]
    print(
        f"  MinHash            {m['ms_per_text']:>7.2f} ms per {m['chars']:,}-character text"
        f"  (shingling alone {m['shingling_ms_per_text']} ms: baseline; ratio"
        f" {m['ratio_vs_shingling']}x)"
    )
    s = d["semantic"]
    if s:
        print(
            f"  MiniLM semantic    {s['texts_per_s']:>7.1f} texts/s over {s['distinct']:,} texts;"
            f" load {s['load_s']} s after imports ({s['imports_s']} s)"
        )
        print(
            f"  find_duplicates    {s['find_s']:>7.2f} s: embedding {s['find_embed_pct']} %,"
            f" similarity search {s['search_s']} s ({s['search_pct']} %)"
            f"  (bare embedder {s['embed_s']} s: baseline)"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--embed-texts", type=int, default=1_000)
    ap.add_argument("--child", choices=("read", "exact", "lexical", "semantic"))
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.path)))
        return 0
    result = bench_dedup_passes(args.rows, args.embed_texts)
    print_report(result)
    print(json.dumps(result, ensure_ascii=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
