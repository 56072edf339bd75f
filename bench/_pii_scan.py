"""PII scan throughput and peak memory on generated mixed Chinese/English QA JSONL, and accuracy.

    .venv/bin/python -m bench._pii_scan [--size-mb 100] [--dense-mb 50] [--docs-mb 20]

`bench_pii()` writes two canonical JSONL files of question/answer rows (Chinese clinical QA, English
support QA, chat `messages`), then measures each in a fresh child process pinned to one CPU:

* *benign*: about 4% of rows carry a short PII snippet, many more carry PII-looking noise (dates,
  prices, order numbers, blood pressure, versions, times);
* *PII-dense*: the same rows, but every row also carries one document of the labeled evaluation
  generator (tests/data/pii_eval: medical records, bank letters, delivery slips, support chats,
  insurance forms, HR letters, code and logs; about three PII spans and several decoys each),
  a different document in (almost) every row, so no validator cache sees the same value twice;
* *documents only* (reported, no goal): rows that are nothing but one such document each
  (`{"text": ...}`, about 170 bytes), the worst case per byte: hits on every line, little text.

Per file: ``engine`` (`scan_jsonl` with the best engine here, Hyperscan when the wheel is
installed) and ``fallback`` (`scan_jsonl(engine="re")` on the first `fallback_mb`); the engines'
reports are compared on that prefix. ``baseline`` is one compiled `re` (an email regex) `finditer`
over the benign bytes in the same 4 MiB blocks: the bare cost of a single regex pass.

MB/s counts 10^6 bytes of the file per second of the child's CPU time (per core; the wall-clock
figure is reported beside it, and is higher on a busy machine). The fixed costs a process pays
once, before its first scan, are reported apart in CPU seconds: the engine's patterns (compiled,
or loaded from the compiled-pattern cache, `workers/data/hyperscan_cache`) and the segmenter's
dictionary (loaded on the first Chinese name candidate).
Peak RSS is the child's own. Accuracy: per-type precision/recall/F1 of `scan_text` on the test
half of the evaluation set (lenient: overlap counts; strict: same span).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GOAL_MB_S = 20.0
GOAL_RSS_MB = 300.0
GOAL_P_R = 0.95  # every type's precision and recall on the evaluation set's test half
BLOCK = 4 * 1024 * 1024

# --- corpus ------------------------------------------------------------------------------------
ZH_QUESTIONS = (
    "我最近总是头痛，晚上睡不好，应该怎么办？",
    "孩子发烧三天了，体温{t}度，需要去医院吗？",
    "高血压患者平时饮食需要注意什么？",
    "体检报告显示血糖{g}mmol/L，这个正常吗？",
    "吃完饭后胃胀气是什么原因？",
    "膝盖疼痛上下楼梯更明显，可能是什么问题？",
    "请问阿莫西林和头孢可以一起吃吗？",
    "怀孕{w}周出现少量出血要紧吗？",
    "长期咳嗽有痰，胸片正常，还需要做什么检查？",
    "糖尿病人可以吃水果吗？每天吃多少合适？",
)
ZH_SENTENCES = (
    "患者出现发热、咳嗽等症状时，应及时就医并完善血常规检查。",
    "建议保持规律作息，避免熬夜，适当进行有氧运动，每周至少{n}次。",
    "血压{bp}mmHg属于偏高范围，建议低盐饮食并定期监测。",
    "如症状持续超过{d}天或明显加重，请到正规医院就诊。",
    "该药物一般每日{n}次，每次{m}片，饭后服用可减少胃肠道刺激。",
    "患者既往有高血压病史，目前服用降压药物，血压控制尚可。",
    "检查结果需要结合临床表现综合判断，不能仅凭单项指标下结论。",
    "饮食上注意清淡，多吃新鲜蔬菜水果，少吃辛辣油腻食物。",
    "部分患者可能出现轻度头晕、乏力，一般休息后可自行缓解。",
    "{y}年版指南推荐，成人每日钠摄入量不超过{m}克。",
    "复查时请携带既往检查资料，挂号费{p}元，可在线预约。",
    "医生建议患者每{n}个月复查一次肝肾功能。",
    "门诊时间为周一至周五8:00-17:30，节假日停诊。",
    "该症状与季节变化、情绪紧张、睡眠不足等因素有关。",
    "如需进一步了解，请咨询主治医生或药师。",
    "订单{order}已支付，发票将在{d}个工作日内寄出。",
)
EN_QUESTIONS = (
    "How do I reset my password if I no longer have access to my email?",
    "What is the difference between a fixed and a variable interest rate?",
    "Can I take ibuprofen together with paracetamol?",
    "Why does my laptop battery drain so fast after the update to version {ver}?",
    "How long does shipping to Canada usually take?",
    "What are common side effects of the flu vaccine?",
    "Is it safe to run at {t} degrees in the summer?",
    "How should I store opened insulin pens?",
)
EN_SENTENCES = (
    "Most customers receive their package within {d} business days.",
    "Please make sure the device is charged to at least {n}0 percent before starting.",
    "The recommended dose for adults is {m}00 mg every {n} hours, not exceeding the daily limit.",
    "If the problem persists, restart the router and wait about {d} minutes.",
    "Our support team is available from 9:00 to 18:00, Monday to Friday.",
    "Invoice {order} was issued on {y}-0{n}-1{d} for a total of ${p}.{m}9.",
    "Side effects are usually mild and go away on their own within a day or two.",
    "You can change this setting later under Account > Security > Two-factor authentication.",
    "Keep the medicine at room temperature and away from direct sunlight.",
    "Version {ver} fixes the sync issue and improves battery life.",
    "The study followed {p} participants over {d} years.",
    "Refunds are processed to the original payment method.",
)
ZH_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭林罗郑梁宋唐韩冯邓"
ZH_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀兰霞平刚桂英华建国红梅"
EN_NAMES = ("John Smith", "Emily Clark", "Robert Brown", "Laura Wilson", "Wang", "Chen Li")
DOMAINS = ("example.com", "qq.com", "163.com", "gmail.com", "hospital.org.cn")


def _resident_id(r: random.Random) -> str:
    from workers.data.pii_recognizers import resident_id_check_char

    first = (
        r.choice(("110105", "310104", "440106", "510107", "330106"))
        + f"{r.randint(1950, 2005)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}"
        + f"{r.randint(0, 999):03d}"
    )
    return first + resident_id_check_char(first)


def _card(r: random.Random) -> str:
    from workers.data.pii_recognizers import luhn_ok

    body = r.choice(("6222", "6217", "4111", "5500")) + "".join(
        str(r.randint(0, 9)) for _ in range(11)
    )
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


def _pii(r: random.Random) -> str:
    kind = r.randrange(9)
    if kind == 0:
        number = f"1{r.choice('3589')}{r.randint(0, 9)}{r.randint(10_000_000, 99_999_999)}"
        return r.choice((f"手机{number}", f"call +86 {number[:3]}-{number[3:7]}-{number[7:]}"))
    if kind == 1:
        return f"身份证号{_resident_id(r)}"
    if kind == 2:
        return f"邮箱 user{r.randint(1, 99999)}@{r.choice(DOMAINS)}"
    if kind == 3:
        return f"卡号{_card(r)}"
    if kind == 4:
        return f"登录IP {r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind == 5:
        name = r.choice(ZH_SURNAMES) + "".join(r.choice(ZH_GIVEN) for _ in range(r.randint(1, 2)))
        return r.choice((f"患者{name}，", f"联系人：{name}", f"{name}先生"))
    if kind == 6:
        return f"Dr. {r.choice(EN_NAMES)}"
    if kind == 7:
        return f"护照号 E{r.randint(10_000_000, 99_999_999)}"
    return f"电话 0{r.choice(('10', '21', '755'))}-{r.randint(2_000_000, 89_999_999)}"


def _fill(r: random.Random, template: str) -> str:
    return template.format(
        t=f"{r.randint(37, 40)}.{r.randint(0, 9)}",
        g=f"{r.randint(4, 12)}.{r.randint(0, 9)}",
        w=r.randint(4, 38),
        n=r.randint(2, 6),
        m=r.randint(1, 5),
        d=r.randint(2, 9),
        bp=f"{r.randint(110, 170)}/{r.randint(60, 100)}",
        y=r.randint(2015, 2025),
        p=r.randint(5, 999),
        order=f"{r.randint(2020, 2025)}{r.randint(10**11, 10**12 - 1)}",
        ver=f"{r.randint(1, 16)}.{r.randint(0, 9)}.{r.randint(0, 20)}",
    )


def _paragraph(r: random.Random, sentences: tuple[str, ...], k: int, pii: bool, sep: str) -> str:
    parts = [_fill(r, r.choice(sentences)) for _ in range(k)]
    if pii:
        parts.insert(r.randrange(len(parts) + 1), _pii(r))
    return sep.join(parts)


def _row(r: random.Random, document: str | None = None) -> dict:
    """One QA or chat row; `document` (a generated PII document) is appended to its answer."""
    row = _plain_row(r)
    if document is not None:
        if "messages" in row:
            row["messages"][2]["content"] += "\n" + document
        else:
            row["answer"] += "\n" + document
    return row


def _plain_row(r: random.Random) -> dict:
    pii = r.random() < 0.04
    style = r.random()
    if style < 0.5:
        q = _fill(r, r.choice(ZH_QUESTIONS))
        return {"question": q, "answer": _paragraph(r, ZH_SENTENCES, r.randint(3, 9), pii, "")}
    if style < 0.75:
        q = _fill(r, r.choice(EN_QUESTIONS))
        return {"question": q, "answer": _paragraph(r, EN_SENTENCES, r.randint(3, 9), pii, " ")}
    zh = r.random() < 0.5
    sentences, questions, sep = (
        (ZH_SENTENCES, ZH_QUESTIONS, "") if zh else (EN_SENTENCES, EN_QUESTIONS, " ")
    )
    return {
        "messages": [
            {
                "role": "system",
                "content": "You are a careful medical and customer-support assistant.",
            },
            {"role": "user", "content": _fill(r, r.choice(questions))},
            {"role": "assistant", "content": _paragraph(r, sentences, r.randint(2, 7), pii, sep)},
        ]
    }


DOCUMENT_BYTES = 170  # about the mean size of a generated document in UTF-8 ...
ROW_BYTES = 500  # ... and of a plain QA or chat row


def _documents(count: int, seed: int) -> Iterator[str]:
    """`count` generated documents (dev and test halves interleaved), then the same again."""
    from tests.data.pii_eval.generate import generate as generate_records

    half = count // 2 + 1
    pool = [
        rec.text
        for pair in zip(
            generate_records("dev", half, seed), generate_records("test", half, seed), strict=True
        )
        for rec in pair
    ]
    return itertools.cycle(pool)


def generate(
    path: Path, size_mb: float, seed: int = 7, *, dense: bool = False, docs_only: bool = False
) -> int:
    """Write about `size_mb` MB (10^6 bytes) of canonical JSONL; return the row count.

    `dense`: every row also carries one generated PII document; `docs_only`: every row is one.
    """
    r = random.Random(seed)
    target = int(size_mb * 1_000_000)
    documents = None
    if dense or docs_only:
        documents = _documents(target // (DOCUMENT_BYTES + (0 if docs_only else ROW_BYTES)), seed)

    def row() -> dict:
        if documents is None:
            return _row(r)
        if docs_only:
            return {"text": next(documents)}
        return _row(r, next(documents))

    written = rows = 0
    with open(path, "wb") as f:
        while written < target:
            lines = [
                json.dumps(row(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                for _ in range(2000)
            ]
            data = ("\n".join(lines) + "\n").encode("utf-8")
            f.write(data)
            written += len(data)
            rows += len(lines)
    return rows


def _prefix(src: Path, dst: Path, size_mb: float) -> int:
    """Copy whole lines of `src` up to about `size_mb` MB into `dst`; return the bytes copied."""
    with open(src, "rb") as f:
        data = f.read(int(size_mb * 1_000_000))
    data = data[: data.rfind(b"\n") + 1]
    dst.write_bytes(data)
    return len(data)


# --- children ----------------------------------------------------------------------------------
def _pin_one_cpu() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child would report
    # at least its parent's size.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, path: str, engine: str) -> dict:
    cpu = _pin_one_cpu()
    size = os.path.getsize(path)
    out: dict = {"cpu": cpu, "bytes": size}
    if kind == "baseline":
        import re

        email = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
        c0 = time.process_time()
        t0 = time.perf_counter()
        n = 0
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                n += sum(1 for _ in email.finditer(block))
        out["matches"] = n
    else:
        from workers.data import pii, pii_names

        # Fixed costs, once per process, reported apart: the engine's patterns (compiled, or
        # loaded from the compiled-pattern cache) and the segmenter's dictionary.
        t_setup = time.process_time()
        pii.scan_text("warm up 13812345678", engine=engine)
        out["patterns_s"] = round(time.process_time() - t_setup, 3)
        t_setup = time.process_time()
        pii_names._segmenter()
        pii_names._strong_given()
        out["segmenter_s"] = round(time.process_time() - t_setup, 3)
        out["setup_s"] = round(out["patterns_s"] + out["segmenter_s"], 3)
        c0 = time.process_time()
        t0 = time.perf_counter()
        report = pii.scan_jsonl(path, engine=engine)
        d = report.to_dict()
        out.update(engine=d["engine"], rows=d["rows_scanned"], rows_with_pii=d["rows_with_pii"])
        out["counts"] = d["counts"]
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    out["seconds"] = round(seconds, 3)
    out["cpu_seconds"] = round(cpu, 3)
    out["mb_s"] = round(size / 1e6 / cpu, 1)  # per core: CPU time
    out["wall_mb_s"] = round(size / 1e6 / seconds, 1)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def _run_child(kind: str, path: Path, engine: str = "auto", timeout: float = 300) -> dict:
    cmd = [sys.executable, "-m", "bench._pii_scan", "--child", kind, "--path", str(path)]
    cmd += ["--engine", engine]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def accuracy() -> dict[str, dict[str, float]]:
    """Per-type lenient and strict P/R/F1 of `scan_text` on the evaluation set's test half."""
    from tests.data.pii_eval.generate import generate as generate_records
    from tests.data.pii_eval.score import score
    from workers.data import pii

    scores = score(
        generate_records("test", 2000),
        lambda text: [(f.start, f.end, f.type) for f in pii.scan_text(text)],
    )
    return _per_type(sorted(scores.types.items()) + [("micro", scores.micro())])


def holdout_accuracy() -> dict[str, dict[str, float]]:
    """Per-type P/R/F1 on the hand-written hold-out (tests/data/pii_holdout), written by someone
    who never read the detector's lists: the honest figure, and the one the goal is judged on."""
    from tests.data.pii_holdout.score import load
    from tests.data.pii_holdout.score import score as score_holdout
    from workers.data import pii

    scores = score_holdout(
        load(), lambda text: [(f.start, f.end, f.type) for f in pii.scan_text(text)]
    )
    return _per_type(sorted(scores.types.items()))


def _per_type(items) -> dict[str, dict[str, float]]:
    out = {}
    for name, s in items:
        out[name] = {
            "gold": s.gold,
            "precision": round(s.precision, 3),
            "recall": round(s.recall, 3),
            "f1": round(s.f1, 3),
            "strict_f1": round(s.strict_f1, 3),
        }
    return out


def _measure(path: Path, small: Path) -> dict:
    engine = _run_child("scan", path, "auto")
    fallback = _run_child("scan", small, "re")
    check = _run_child("scan", small, "auto")
    same = (
        fallback["counts"] == check["counts"]
        and fallback["rows_with_pii"] == check["rows_with_pii"]
    )
    return {"engine": engine, "fallback": fallback, "engines_agree_on_prefix": same}


def bench_pii(
    size_mb: float = 100,
    fallback_mb: float = 10,
    dense_mb: float = 50,
    workdir: str | None = None,
    docs_mb: float = 20,
) -> dict:
    """Generate the corpora, measure engine / fallback / baseline in pinned children, return all."""
    with tempfile.TemporaryDirectory(prefix="pii-bench-", dir=workdir) as tmp:
        path, dense = Path(tmp) / "qa.jsonl", Path(tmp) / "qa-dense.jsonl"
        docs = Path(tmp) / "documents.jsonl"
        t0 = time.perf_counter()
        rows = generate(path, size_mb)
        dense_rows = generate(dense, dense_mb, seed=8, dense=True)
        docs_rows = generate(docs, docs_mb, seed=9, docs_only=True)
        generate_s = time.perf_counter() - t0
        size, dense_size = os.path.getsize(path), os.path.getsize(dense)
        docs_size = os.path.getsize(docs)
        small, dense_small = Path(tmp) / "qa-prefix.jsonl", Path(tmp) / "qa-dense-prefix.jsonl"
        docs_small = Path(tmp) / "documents-prefix.jsonl"
        _prefix(path, small, min(fallback_mb, size_mb))
        _prefix(dense, dense_small, min(fallback_mb, dense_mb))
        _prefix(docs, docs_small, min(fallback_mb, docs_mb))

        baseline = _run_child("baseline", path)
        benign = _measure(path, small)
        pii_dense = _measure(dense, dense_small)
        documents = _measure(docs, docs_small)
    scores, holdout = accuracy(), holdout_accuracy()
    worst = min(min(s["precision"], s["recall"]) for s in holdout.values())
    worst_generated = min(
        min(s["precision"], s["recall"]) for name, s in scores.items() if name != "micro"
    )
    e, d = benign["engine"], pii_dense["engine"]
    return {
        "size_mb": round(size / 1e6, 1),
        "rows": rows,
        "dense_size_mb": round(dense_size / 1e6, 1),
        "dense_rows": dense_rows,
        "generate_s": round(generate_s, 1),
        "baseline": baseline,
        "engine": e,
        "fallback": benign["fallback"],
        "dense": pii_dense,
        "docs_size_mb": round(docs_size / 1e6, 1),
        "docs_rows": docs_rows,
        "documents": documents,
        "engines_agree_on_prefix": benign["engines_agree_on_prefix"]
        and pii_dense["engines_agree_on_prefix"]
        and documents["engines_agree_on_prefix"],
        "engine_vs_baseline": round(e["mb_s"] / baseline["mb_s"], 2),
        "fallback_vs_baseline": round(benign["fallback"]["mb_s"] / baseline["mb_s"], 2),
        "accuracy": scores,
        "holdout": holdout,
        "worst_type_p_or_r": worst,
        "worst_type_p_or_r_generated": worst_generated,
        "goal_mb_s": GOAL_MB_S,
        "goal_peak_rss_mb": GOAL_RSS_MB,
        "goal_p_r": GOAL_P_R,
        "meets_goals": e["mb_s"] >= GOAL_MB_S
        and d["mb_s"] >= GOAL_MB_S
        and max(e["peak_rss_mb"], d["peak_rss_mb"]) <= GOAL_RSS_MB
        and worst >= GOAL_P_R,
    }


def print_report(pii: dict) -> None:
    """The PII part of the bench's report, one figure per line."""
    b = pii["baseline"]
    for label, run in (
        (f"benign, {pii['size_mb']} MB, {pii['rows']:,} rows", pii),
        (f"PII-dense, {pii['dense_size_mb']} MB, {pii['dense_rows']:,} rows", pii["dense"]),
        (
            f"documents only (no goal), {pii['docs_size_mb']} MB, {pii['docs_rows']:,} rows",
            pii["documents"],
        ),
    ):
        e, f = run["engine"], run["fallback"]
        print(f"PII scan, {label}, one core:")
        print(
            f"  engine {e['engine']:<10} {e['mb_s']:>7.1f} MB/s  (wall {e['wall_mb_s']:.1f})"
            f"  peak RSS {e['peak_rss_mb']:>6.1f} MB"
        )
        print(f"  re fallback        {f['mb_s']:>7.1f} MB/s  ({f['bytes'] / 1e6:.0f} MB prefix)")
    e = pii["engine"]
    print(
        f"  fixed cost once per process (CPU, not in MB/s): patterns {e['patterns_s']} s, "
        f"segmenter dictionary {e['segmenter_s']} s"
    )
    print(f"  bare single regex  {b['mb_s']:>7.1f} MB/s  (baseline, benign file)")
    print(f"  engines agree on every prefix: {pii['engines_agree_on_prefix']}")
    for title, table in (
        ("generated evaluation set, test half", pii["accuracy"]),
        ("hand-written hold-out", pii["holdout"]),
    ):
        _print_accuracy(title, table)


def _print_accuracy(title: str, table: dict) -> None:
    print(f"PII accuracy, {title} (lenient P / R / F1, strict F1):")
    for name, s in table.items():
        print(
            f"  {name:<16} {s['gold']:>5}  {s['precision']:.3f} {s['recall']:.3f} "
            f"{s['f1']:.3f}  strict {s['strict_f1']:.3f}"
        )


def headline(pii: dict) -> str:
    """The PII figures of the bench's RESULT line, beside their goals."""
    e, d = pii["engine"], pii["dense"]["engine"]
    rss = max(e["peak_rss_mb"], d["peak_rss_mb"])
    return (
        f"pii scan benign {e['mb_s']} MB/s, PII-dense {d['mb_s']} MB/s (goal >= {GOAL_MB_S} "
        f"per core) peak RSS {rss} MB (goal <= {GOAL_RSS_MB}) worst per-type P/R "
        f"{pii['worst_type_p_or_r']} on the hand-written hold-out (goal >= {GOAL_P_R}; "
        f"{pii['worst_type_p_or_r_generated']} on the generated set) [fixed setup "
        f"{e['setup_s']} s per process; documents only "
        f"{pii['documents']['engine']['mb_s']} MB/s; baseline regex "
        f"{pii['baseline']['mb_s']} MB/s, ratio {pii['engine_vs_baseline']}x]"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=100)
    ap.add_argument("--dense-mb", type=float, default=50)
    ap.add_argument("--docs-mb", type=float, default=20)
    ap.add_argument("--fallback-mb", type=float, default=10)
    ap.add_argument("--child", choices=("scan", "baseline"))
    ap.add_argument("--path")
    ap.add_argument("--engine", default="auto")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.path, args.engine)))
        return 0
    result = bench_pii(args.size_mb, args.fallback_mb, args.dense_mb, docs_mb=args.docs_mb)
    print(json.dumps(result, ensure_ascii=False), file=sys.stderr)
    print_report(result)
    print(f"RESULT {headline(result)}{'' if result['meets_goals'] else ' — GOAL MISSED'}")
    return 0 if result["meets_goals"] else 1


if __name__ == "__main__":
    sys.exit(main())
