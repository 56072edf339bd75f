"""Score `scan_text` on the hand-written hold-out set: per-type P/R/F1, misses and false alarms.

Lenient (the issue's rule): a finding that overlaps a labeled span of the same type is a true
positive; each labeled span is matched by at most one finding, and a second finding on an already
matched span is neither a hit nor an alarm. Strict: same type, same start and end.

Run ``python -m tests.data.pii_holdout.score`` for the full report (tables, every miss and false
alarm grouped by type, and the scan speed).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

RECORDS = Path(__file__).resolve().parent / "records.jsonl"

Span = tuple[int, int, str]


@dataclass(frozen=True)
class Record:
    line: int
    text: str
    spans: list[Span]
    kind: str
    decoys: list[str]


def load(path: Path = RECORDS) -> list[Record]:
    records = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(raw)
        spans = [(s, e, t) for s, e, t in row["spans"]]
        records.append(Record(n, row["text"], spans, row["kind"], row.get("decoys", [])))
    return records


@dataclass
class TypeScore:
    gold: int = 0
    found: int = 0
    hit_gold: int = 0  # labeled spans some finding overlaps
    hit_found: int = 0  # findings that overlap a labeled span
    strict: int = 0

    @property
    def precision(self) -> float:
        return self.hit_found / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.hit_gold / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    @property
    def strict_precision(self) -> float:
        return self.strict / self.found if self.found else 1.0

    @property
    def strict_recall(self) -> float:
        return self.strict / self.gold if self.gold else 1.0

    @property
    def strict_f1(self) -> float:
        return _f1(self.strict_precision, self.strict_recall)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class Error:
    """A miss (a labeled span nothing of its type overlaps) or a false alarm, with context."""

    line: int
    kind: str
    type: str
    value: str
    context: str
    found_as: str = ""  # for a miss: the type a finding on the same text had, if any


@dataclass
class Scores:
    types: dict[str, TypeScore] = field(default_factory=lambda: defaultdict(TypeScore))
    misses: list[Error] = field(default_factory=list)
    false_alarms: list[Error] = field(default_factory=list)
    boundaries: list[Error] = field(default_factory=list)  # lenient hits with other offsets

    def table(self) -> str:
        head = f"{'type':<16}{'gold':>5}{'found':>6}    P      R      F1   | strict P   R     F1"
        rows = [head]
        for name in sorted(self.types):
            s = self.types[name]
            rows.append(
                f"{name:<16}{s.gold:>5}{s.found:>6}  {s.precision:.3f}  {s.recall:.3f}  {s.f1:.3f}"
                f" | {s.strict_precision:.3f}  {s.strict_recall:.3f}  {s.strict_f1:.3f}"
            )
        return "\n".join(rows)


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _context(text: str, start: int, end: int, width: int = 12) -> str:
    left, right = text[max(0, start - width) : start], text[end : end + width]
    return f"{left}[{text[start:end]}]{right}".replace("\n", "⏎")


def score(records: Iterable[Record], detect: Callable[[str], list[Span]]) -> Scores:
    out = Scores()
    for rec in records:
        found = detect(rec.text)
        for *_, t in rec.spans:
            out.types[t].gold += 1
        for *_, t in found:
            out.types[t].found += 1
        used: set[int] = set()
        for g in rec.spans:
            same = [i for i, f in enumerate(found) if f[2] == g[2] and _overlaps(f, g)]
            free = [i for i in same if i not in used]
            if not free:
                if same:  # two labeled spans under one finding (a merged span): count it once
                    continue
                other = next((f[2] for f in found if _overlaps(f, g)), "")
                value = rec.text[g[0] : g[1]]
                ctx = _context(rec.text, g[0], g[1])
                out.misses.append(Error(rec.line, rec.kind, g[2], value, ctx, other))
                continue
            i = free[0]
            used.add(i)
            ts = out.types[g[2]]
            ts.hit_gold += 1
            ts.hit_found += 1
            if found[i][:2] == g[:2]:
                ts.strict += 1
            else:
                value = rec.text[found[i][0] : found[i][1]]
                ctx = _context(rec.text, g[0], g[1])
                out.boundaries.append(Error(rec.line, rec.kind, g[2], value, ctx))
        for i, f in enumerate(found):
            if i in used:
                continue
            if any(f[2] == g[2] and _overlaps(f, g) for g in rec.spans):
                out.types[f[2]].hit_found += 1  # a second finding on one labeled span
                continue
            value = rec.text[f[0] : f[1]]
            ctx = _context(rec.text, f[0], f[1])
            out.false_alarms.append(Error(rec.line, rec.kind, f[2], value, ctx))
    return out


def scan_spans(text: str, engine: str = "auto") -> list[Span]:
    from workers.data.pii import scan_text

    return [(f.start, f.end, f.type) for f in scan_text(text, engine=engine)]


def speed(records: list[Record], engine: str = "auto", rounds: int = 5) -> float:
    """MB/s of `scan_text` over every record's UTF-8 text, by CPU time (best of `rounds`)."""
    size = sum(len(r.text.encode("utf-8")) for r in records)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for r in records:
            scan_spans(r.text, engine)
        best = min(best, time.process_time() - start)
    return size / 1e6 / best if best else float("inf")


def _grouped(errors: list[Error], title: str) -> list[str]:
    lines = [f"\n## {title} ({len(errors)})"]
    by_type: dict[str, list[Error]] = defaultdict(list)
    for e in errors:
        by_type[e.type].append(e)
    for t in sorted(by_type):
        lines.append(f"\n### {t} ({len(by_type[t])})")
        for e in by_type[t]:
            extra = f" (found as {e.found_as})" if e.found_as else ""
            lines.append(f"- line {e.line} [{e.kind}] {e.value!r}{extra}: {e.context}")
    return lines


def report(engine: str = "auto") -> str:
    records = load()
    scores = score(records, lambda text: scan_spans(text, engine))
    spans = sum(len(r.spans) for r in records)
    decoys = sum(len(r.decoys) for r in records)
    lines = [
        f"# PII hold-out: {len(records)} records, {spans} spans, {decoys} decoys (engine {engine})",
        "",
        scores.table(),
        f"\nscan speed: {speed(records, engine):.2f} MB/s CPU",
    ]
    lines += _grouped(scores.misses, "misses")
    lines += _grouped(scores.false_alarms, "false alarms")
    lines += _grouped(scores.boundaries, "lenient hits with other offsets (value = what was found)")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(report(sys.argv[1] if len(sys.argv) > 1 else "auto"))
