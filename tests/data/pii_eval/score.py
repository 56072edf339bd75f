"""Per-type precision / recall / F1 of a detector on generated records, lenient and strict.

Lenient: a finding matches a labeled span of the same type that it overlaps (one to one, in
order). Strict: same type, same start and end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.data.pii_eval.generate import Record

__all__ = ["Scores", "TypeScore", "score"]

Span = tuple[int, int, str]


@dataclass
class TypeScore:
    gold: int = 0
    found: int = 0
    lenient_tp_gold: int = 0  # labeled spans some finding overlaps
    lenient_tp_found: int = 0  # findings that overlap some labeled span
    strict_tp: int = 0

    @staticmethod
    def _f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def precision(self) -> float:
        return self.lenient_tp_found / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.lenient_tp_gold / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        return self._f1(self.precision, self.recall)

    @property
    def strict_precision(self) -> float:
        return self.strict_tp / self.found if self.found else 1.0

    @property
    def strict_recall(self) -> float:
        return self.strict_tp / self.gold if self.gold else 1.0

    @property
    def strict_f1(self) -> float:
        return self._f1(self.strict_precision, self.strict_recall)


@dataclass
class Scores:
    types: dict[str, TypeScore] = field(default_factory=dict)
    misses: list[tuple[str, str, str]] = field(default_factory=list)  # (record id, type, text)
    false_alarms: list[tuple[str, str, str]] = field(default_factory=list)

    def micro(self) -> TypeScore:
        total = TypeScore()
        for s in self.types.values():
            total.gold += s.gold
            total.found += s.found
            total.lenient_tp_gold += s.lenient_tp_gold
            total.lenient_tp_found += s.lenient_tp_found
            total.strict_tp += s.strict_tp
        return total

    def table(self) -> str:
        rows = [f"{'type':<16} {'gold':>5} {'found':>5}   P     R     F1   | strict P  R  F1"]
        for name, s in sorted(self.types.items()) + [("micro", self.micro())]:
            rows.append(
                f"{name:<16} {s.gold:>5} {s.found:>5} {s.precision:.3f} {s.recall:.3f} {s.f1:.3f}"
                f" | {s.strict_precision:.3f} {s.strict_recall:.3f} {s.strict_f1:.3f}"
            )
        return "\n".join(rows)


def _overlaps(a: Span, b: Span) -> bool:
    return a[2] == b[2] and a[0] < b[1] and b[0] < a[1]


def score(records: Iterable[Record], detect: Callable[[str], list[Span]]) -> Scores:
    out = Scores()
    for rec in records:
        gold = [tuple(s) for s in rec.spans]
        found = detect(rec.text)
        for s in gold:
            out.types.setdefault(s[2], TypeScore()).gold += 1
        for f in found:
            out.types.setdefault(f[2], TypeScore()).found += 1
        used: set[int] = set()
        for g in gold:
            hit = next((i for i, f in enumerate(found) if i not in used and _overlaps(g, f)), None)
            if hit is None:
                out.misses.append((rec.id, g[2], rec.text[g[0] : g[1]]))
                continue
            used.add(hit)
            ts = out.types[g[2]]
            ts.lenient_tp_gold += 1
            ts.lenient_tp_found += 1
            ts.strict_tp += found[hit][:2] == g[:2]
        for i, f in enumerate(found):
            if i in used:
                continue
            if any(_overlaps(f, g) for g in gold):  # a second finding on one span: not an alarm
                out.types[f[2]].lenient_tp_found += 1
            else:
                out.false_alarms.append((rec.id, f[2], rec.text[max(0, f[0] - 8) : f[1] + 8]))
    return out
