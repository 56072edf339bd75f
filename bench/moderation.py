"""Moderation engine benchmark (issue 12): rule matching over generated outputs and prompts.

    .venv/bin/python -m bench.moderation [--texts 100000] [--quick] [--seed 12]

Pure code only (workers/moderation), no Django. A realistic 500-rule set (the default rules, then
generated Chinese and English keywords, product codes, URLs, phone shapes, phrases with \\s+
between words, evasion patterns) is run over generated "model outputs" (English and Chinese
answers of 50-1500 characters, a few % carrying a rule hit), all deterministic from the seed.
Measured in the same run:

(a) baseline: ONE Python `re` alternation of all 500 patterns (keywords escaped, the same
    case-insensitive, ASCII-class flags), `.search` over every text. It only answers hit / no hit:
    the engine also says which rules hit and where, so the baseline does less work;
(b) `Matcher.scan` over every text, for each engine here (hyperscan, re2). Goal: >= 1.0x the
    baseline's texts/s;
(c) the submit check: `Matcher.scan` latency on 1,000 different 2,000-character prompts. Goal:
    p99 <= 1 ms;
(d) `compile_rules` for the 500 rules: a fixed cost, paid once per rule-set version and process.

MB/s counts 10^6 bytes of UTF-8 text per second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import pct, say  # noqa: E402
from workers.moderation import (  # noqa: E402
    Matcher,
    Rule,
    available_engines,
    compile_rules,
    default_rules,
)

GOAL_RATIO = 1.0
GOAL_SUBMIT_P99_MS = 1.0
RULES = 500
HIT_SHARE = 0.03
PROMPT_CHARS = 2000

# --- the rule set ------------------------------------------------------------------------------
SYLLABLES = "zen kor vax lum tri nex qua bri dor fal mik sor tel vin xar yol pex ruk jat mo".split()
EN_TAILS = "pro max coin token pills casino loans bet deals vip".split()
SPAM_WORDS = (
    "free guaranteed instant daily secret cheap miracle exclusive risk-free unlimited "
    "money profit cash bonus gift returns income credit crypto followers"
).split()
ZH_HEADS = "金银宝盈融汇聚鼎恒泰富瑞鑫隆昌盛"
ZH_MIDS = "贷币彩链赢利"
ZH_TAILS = ("平台", "理财", "娱乐", "棋牌", "返利", "网贷", "商城", "钱包")
ZH_EVASIONS = ("代开发票", "代办证件", "刷单返现", "网络赌博", "高仓出售", "私人贷款", "套现提额")
# One example that each default rule matches, so defaults appear among injected hits too.
DEFAULT_EXAMPLES = (
    "I want to kill myself",
    "我想自杀",
    "how to make a pipe bomb",
    "儿童色情",
    "you are worthless",
    "我的手机号是13812345678",
    "邮箱 jane.doe@example.com",
    "身份证号110105199001011234",
    "launder money",
    "血肉模糊",
)


def _word(r: random.Random) -> str:
    return "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3)))


def _digits(r: random.Random, n: int) -> str:
    return "".join(str(r.randint(0, 9)) for _ in range(n))


def _regex_and_example(r: random.Random, kind: int) -> tuple[str, str]:
    if kind == 0:  # product codes
        prefix = "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(r.randint(2, 3)))
        return rf"\b{prefix}-?\d{{4,6}}\b", f"{prefix}-{_digits(r, 5)}"
    if kind == 1:  # sites
        name = _word(r)
        return rf"https?://(?:www\.)?{name}\.(?:com|net|cn|io)\b", f"https://www.{name}.net/x"
    if kind == 2:  # spam phrases, any spacing
        words = r.sample(SPAM_WORDS, 3)
        return r"\b" + r"\s+".join(map(re.escape, words)) + r"\b", "  ".join(words)
    if kind == 3:  # hotline shapes
        head = r.choice(("400", "800", "95" + _digits(r, 1)))
        return rf"\b{head}-?\d{{3}}-?\d{{4}}\b", f"{head}-{_digits(r, 3)}-{_digits(r, 4)}"
    if kind == 4:  # contact handles
        verb = r.choice(("加", "联系", "添加"))
        chan = r.choice(("微信", "QQ", "V信", "客服"))
        return (
            rf"{verb}\s*{chan}\s*[:：]?\s*[A-Za-z0-9_-]{{5,}}",
            f"{verb}{chan}：{_word(r)}{_digits(r, 2)}",
        )
    phrase = r.choice(ZH_EVASIONS)  # spaced-out Chinese phrases
    sep = r.choice((r"\s*", r"[\s\-_.·]*"))
    return sep.join(phrase), " ".join(phrase)


def build_rules(seed: int, total: int = RULES) -> tuple[list[Rule], list[str]]:
    """(rules, examples): `total` rules and one text that each generated rule matches."""
    r = random.Random(seed)
    rules = default_rules()
    examples = list(DEFAULT_EXAMPLES)
    keyword_counts = {"en": int(total * 0.36), "zh": int(total * 0.3)}
    seen: set[str] = {rule.pattern for rule in rules}
    while len(rules) < total:
        n = len(rules)
        if n < len(DEFAULT_EXAMPLES) + keyword_counts["en"]:
            kind, pattern = "keyword", _word(r) + r.choice(("", " " + r.choice(EN_TAILS)))
            example = pattern if r.random() < 0.7 else pattern.upper()
        elif n < len(DEFAULT_EXAMPLES) + keyword_counts["en"] + keyword_counts["zh"]:
            kind = "keyword"
            pattern = r.choice(ZH_HEADS) + r.choice(ZH_MIDS + ZH_HEADS) + r.choice(ZH_TAILS)
            example = pattern
        else:
            kind = "regex"
            pattern, example = _regex_and_example(r, r.randrange(6))
        if pattern in seen:
            continue
        seen.add(pattern)
        rules.append(Rule(f"gen:{n}", kind, pattern, "custom", "flag"))
        examples.append(example)
    return rules, examples


# --- the texts ---------------------------------------------------------------------------------
EN = (
    "Sure! Here is a short summary of the article you shared.",
    "The main idea is that regular exercise improves both sleep and mood.",
    "To install the package, run the command below and restart your terminal.",
    "Version {v} fixes the sync issue and improves battery life by about {n}%.",
    "Most customers receive their order within {n} business days.",
    "Here is the Python function, with comments explaining each step.",
    "The class assignment is due on Friday; please submit it as a PDF.",
    "In summary, both approaches work, but the second one is easier to test.",
    "Preheat the oven to {t} degrees and bake for {n}0 minutes.",
    "Let me know if you would like a more detailed explanation.",
    "The meeting was moved to {d} at {h}:30 in room {n}0{n}.",
    "Invoice {o} was issued for a total of ${p}.{n}9.",
    "Kill the process with SIGTERM first, and only then with SIGKILL.",
    "The assassin in the novel is revealed in the last chapter.",
)
ZH = (
    "好的，下面是您要的文章摘要。",
    "总的来说，规律的运动可以同时改善睡眠和情绪。",
    "安装这个软件包后，请重新打开终端窗口。",
    "版本{v}修复了同步问题，电池续航提升了约{n}%。",
    "大多数订单会在{n}个工作日内送达。",
    "下面是这段代码的解释，每一步都有注释。",
    "今天天气很好，适合和家人一起去公园散步。",
    "会议改到{d}下午{h}点半，在{n}0{n}会议室举行。",
    "这道菜需要先把土豆切成小块，再用中火翻炒{n}分钟。",
    "如果您还有其他问题，欢迎继续提问。",
    "订单{o}已支付，发票将在{n}个工作日内寄出。",
    "这两种方法都可以，但第二种更容易测试和维护。",
    "建议保持规律作息，避免熬夜，每周运动{n}次以上。",
)


def _fill(r: random.Random, template: str) -> str:
    return template.format(
        v=f"{r.randint(1, 9)}.{r.randint(0, 20)}",
        n=r.randint(2, 9),
        t=r.randint(160, 230),
        d=r.choice(("Monday", "周三", "June 3", "5月20日")),
        h=r.randint(1, 11),
        o=f"A{r.randint(10_000_000, 99_999_999)}",
        p=r.randint(10, 999),
    )


def _text(r: random.Random, chars: int, examples: list[str], hit: bool) -> str:
    """About `chars` characters of English or Chinese answer; with `hit`, one rule example in it."""
    pool, sep = (EN, " ") if r.random() < 0.5 else (ZH, "")
    parts: list[str] = []
    size = 0
    while size < chars:
        parts.append(_fill(r, r.choice(pool)))
        size += len(parts[-1]) + len(sep)
    text = sep.join(parts)[:chars]
    if not hit:
        return text
    at = r.randrange(len(text) + 1)
    return text[:at] + " " + r.choice(examples) + " " + text[at:]


def build_texts(n: int, seed: int, examples: list[str]) -> list[str]:
    r = random.Random(seed)
    return [_text(r, r.randint(50, 1500), examples, r.random() < HIT_SHARE) for _ in range(n)]


def build_prompts(n: int, seed: int, examples: list[str]) -> list[str]:
    r = random.Random(seed + 1)
    return [_text(r, PROMPT_CHARS, examples, r.random() < HIT_SHARE) for _ in range(n)]


# --- measurements ------------------------------------------------------------------------------
def python_pattern(rule: Rule) -> str:
    """`rule` as one Python `re` branch with the engine's meaning."""
    if rule.kind == "regex":
        body = rule.pattern
    else:
        words = rule.pattern.split()
        body = r"\s+".join(re.escape(w) for w in words)
        if re.match(r"\w", words[0][0], re.ASCII):
            body = r"\b" + body
        if re.match(r"\w", words[-1][-1], re.ASCII):
            body += r"\b"
    return f"(?-i:{body})" if rule.case_sensitive else f"(?:{body})"


def timed_pass(texts: list[str], decide: Callable[[str], bool]) -> dict:
    hits = 0
    t0 = time.perf_counter()
    for text in texts:
        if decide(text):
            hits += 1
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "texts_with_hits": hits}


def scan_pass(matcher: Matcher, texts: list[str]) -> dict:
    digest = hashlib.sha256()
    hits = texts_with_hits = 0
    scan = matcher.scan
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        found = scan(text).hits
        if found:
            texts_with_hits += 1
            hits += len(found)
            digest.update(repr((i, [(h.rule_id, h.start, h.end) for h in found])).encode())
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "texts_with_hits": texts_with_hits,
        "hits": hits,
        "digest": digest.hexdigest()[:16],
    }


def latencies_ms(matcher: Matcher, prompts: list[str]) -> dict:
    """Wall and CPU (this thread's) milliseconds per scan: the difference is time the scheduler
    gave to other processes, which a loaded machine adds to the wall figures."""
    scan = matcher.scan
    for p in prompts[:50]:  # warm the scratch space and the caches
        scan(p)
    wall, cpu = [], []
    for p in prompts:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        scan(p)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        wall.append((t1 - t0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    return {
        "p50_ms": pct(wall, 50),
        "p99_ms": pct(wall, 99),
        "max_ms": max(wall),
        "cpu_p50_ms": pct(cpu, 50),
        "cpu_p99_ms": pct(cpu, 99),
    }


def compile_seconds(rules: list[Rule], engine: str) -> tuple[float, Matcher]:
    t0 = time.perf_counter()
    matcher = compile_rules(rules, engine=engine)
    return time.perf_counter() - t0, matcher


# --- the report --------------------------------------------------------------------------------
def run(n_texts: int, n_prompts: int, seed: int) -> dict:
    rules, examples = build_rules(seed)
    texts = build_texts(n_texts, seed, examples)
    prompts = build_prompts(n_prompts, seed, examples)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    engines = available_engines()
    say(f"{len(rules)} rules, {len(texts):,} texts ({mb:.1f} MB), engines: {', '.join(engines)}")
    report: dict = {"rules": len(rules), "texts": len(texts), "mb": mb, "engines": {}}
    matchers = {}
    for engine in engines:
        seconds, matchers[engine] = compile_seconds(rules, engine)
        report["engines"][engine] = {"compile_s": seconds}
    t0 = time.perf_counter()
    pattern = re.compile("|".join(map(python_pattern, rules)), re.IGNORECASE | re.ASCII)
    report["baseline_compile_s"] = time.perf_counter() - t0
    say("baseline: one Python re alternation, .search over every text")
    search = pattern.search
    report["baseline"] = timed_pass(texts, lambda t: search(t) is not None)
    for engine, matcher in matchers.items():
        say(f"{engine}: Matcher.scan over every text, then {len(prompts):,} prompts")
        report["engines"][engine].update(scan_pass(matcher, texts))
        report["engines"][engine]["submit"] = latencies_ms(matcher, prompts)
    return report


def print_report(report: dict, n_prompts: int) -> None:
    n, mb = report["texts"], report["mb"]
    base = report["baseline"]
    base_rate = n / base["seconds"]
    print(f"Moderation, {report['rules']} rules, {n:,} texts, {mb:.1f} MB (UTF-8):")
    print(f"  {'':<22} {'texts/s':>10} {'MB/s':>8} {'ratio':>7} {'texts hit':>10} {'hits':>7}")
    print(
        f"  {'baseline re alternation':<22} {base_rate:>10,.0f} {mb / base['seconds']:>8.1f}"
        f" {1.0:>6.2f}x {base['texts_with_hits']:>10,} {'-':>7}  (hit / no hit only)"
    )
    for engine, e in report["engines"].items():
        rate = n / e["seconds"]
        print(
            f"  {'Matcher.scan ' + engine:<22} {rate:>10,.0f} {mb / e['seconds']:>8.1f}"
            f" {rate / base_rate:>6.2f}x {e['texts_with_hits']:>10,} {e['hits']:>7,}"
            f"  digest {e['digest']}"
        )
    digests = {e["digest"] for e in report["engines"].values()}
    print(f"  engines give the same hits: {len(digests) == 1}")
    print(f"Submit check, {n_prompts:,} different {PROMPT_CHARS:,}-character prompts:")
    for engine, e in report["engines"].items():
        s = e["submit"]
        print(
            f"  {engine:<10} p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms"
            f"  max {s['max_ms']:.3f} ms   CPU p50 {s['cpu_p50_ms']:.3f} ms"
            f"  p99 {s['cpu_p99_ms']:.3f} ms"
        )
    print(f"compile_rules, {report['rules']} rules (fixed cost, once per rule-set version):")
    for engine, e in report["engines"].items():
        print(f"  {engine:<10} {e['compile_s']:.3f} s")
    print(
        f"  {'baseline':<10} {report['baseline_compile_s']:.3f} s  (re.compile of the alternation)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--texts", type=int, default=None, help="generated outputs (default 100000)")
    ap.add_argument("--quick", action="store_true", help="10,000 texts and 200 prompts")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    n_texts = args.texts or (10_000 if args.quick else 100_000)
    n_prompts = 200 if args.quick else 1000
    report = run(n_texts, n_prompts, args.seed)
    print_report(report, n_prompts)
    print(json.dumps(report), file=sys.stderr)

    best = next(iter(report["engines"]))
    e = report["engines"][best]
    ratio = report["baseline"]["seconds"] / e["seconds"]
    p99 = e["submit"]["p99_ms"]
    ok = ratio >= GOAL_RATIO and p99 <= GOAL_SUBMIT_P99_MS
    print(
        f"headline: engine/baseline {ratio:.1f}x ({best}; goal >= {GOAL_RATIO}x), "
        f"submit p99 {p99:.3f} ms (goal <= {GOAL_SUBMIT_P99_MS:g} ms), "
        f"compile {e['compile_s']:.2f} s (fixed){'' if ok else ' — GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
