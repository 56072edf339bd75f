"""The moderation matcher: a rule set compiled once, then run over many texts in linear time.

A scan has two steps, and only the first runs on every text:

1. *which rules hit*: one multi-pattern pass over the text's UTF-8 bytes, reporting each rule at
   most once. ``hyperscan`` (the `hyperscan` wheel) runs one block-mode database built with
   HS_FLAG_SINGLEMATCH; ``re2`` (google-re2, every platform) runs `re2.Set`s. Most texts match
   nothing and stop here.
2. *where*: each rule that hit is run alone with RE2 (`finditer`, leftmost-first, as Python's `re`
   reports spans), which gives character offsets into the text.

Both engines read the same translated patterns (`rules.translate`) and share step 2, so they
report the same hits (the tests compare them). Neither ever backtracks: a pattern like
``(a+)+$`` costs the same as any other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import re2

from workers.moderation.rules import Rule, RuleError, translate

__all__ = [
    "Hit",
    "Matcher",
    "ScanResult",
    "available_engines",
    "compile_rules",
    "validate_rule",
]

log = logging.getLogger(__name__)

HIT_TEXT = 200  # characters of matched text kept per hit
RULE_MEM = 8 << 20  # RE2's own default budget per rule
SET_MEM = 64 << 20  # per re2.Set: a Set that runs out of DFA memory reports no match at all
SET_RULES = 64  # rules per re2.Set, so that no DFA grows past SET_MEM on long texts


@dataclass(frozen=True, slots=True)
class Hit:
    rule_id: int | str
    category: str
    severity: str
    start: int  # character offsets into the scanned text
    end: int
    text: str  # the matched text, at most HIT_TEXT characters

    def as_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "category": self.category,
            "severity": self.severity,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    hits: tuple[Hit, ...]

    @property
    def severity(self) -> str | None:
        """ "block" if any hit blocks, "flag" if there are hits, else None."""
        if not self.hits:
            return None
        return "block" if any(h.severity == "block" for h in self.hits) else "flag"

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(sorted({h.category for h in self.hits}))

    def as_json(self) -> list[dict[str, Any]]:
        return [h.as_json() for h in self.hits]


_CLEAN = ScanResult(())


# --- engines -----------------------------------------------------------------------------------
@cache
def _hyperscan_module():
    try:
        import hyperscan
    except ImportError:
        return None
    return hyperscan


@cache
def _hyperscan_works() -> bool:
    hs = _hyperscan_module()
    if hs is None:
        return False
    try:
        finder = _HyperscanFinder(hs, ["(?i:ok)"])
        return finder.which(b"it is OK") == [0]
    except Exception:  # e.g. a CPU without SSSE3: the wheel imports but cannot compile or scan
        log.warning("hyperscan is installed but unusable; moderation uses RE2", exc_info=True)
        return False


def available_engines() -> list[str]:
    """Engines usable on this machine, best first."""
    return (["hyperscan"] if _hyperscan_works() else []) + ["re2"]


def _resolve_engine(engine: str) -> str:
    if engine not in ("auto", "hyperscan", "re2"):
        raise ValueError(f"unknown moderation engine {engine!r}: use auto, hyperscan or re2")
    if engine == "hyperscan" and not _hyperscan_works():
        raise RuntimeError("the hyperscan engine needs a working `hyperscan` package")
    if engine == "auto":
        return "hyperscan" if _hyperscan_works() else "re2"
    return engine


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False  # errors come back as RuleError, not as lines on stderr
    return options


def _collect(rule_index, start, end, flags, found):
    found.append(rule_index)


class _HyperscanFinder:
    """One block-mode database, each pattern reported at most once per scan."""

    def __init__(self, hs, patterns: list[str]) -> None:
        self.hs = hs
        self.db = _hyperscan_database(hs, patterns)
        self._local = threading.local()  # a scratch space serves one thread at a time

    def which(self, data: bytes) -> list[int]:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self.hs.Scratch(self.db)
        found: list[int] = []
        self.db.scan(data, match_event_handler=_collect, context=found, scratch=scratch)
        return found


def _hyperscan_database(hs, patterns: list[str]):
    flags = hs.HS_FLAG_UTF8 | hs.HS_FLAG_SINGLEMATCH
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    db.compile(
        expressions=[p.encode("utf-8") for p in patterns],
        ids=list(range(len(patterns))),
        elements=len(patterns),
        flags=[flags] * len(patterns),
    )
    return db


class _Re2Finder:
    """re2.Sets of at most SET_RULES patterns each."""

    def __init__(self, patterns: list[str]) -> None:
        self.sets: list[tuple[int, re2.Set]] = []
        for first in range(0, len(patterns), SET_RULES):
            rule_set = re2.Set.SearchSet(_options(SET_MEM))
            for pattern in patterns[first : first + SET_RULES]:
                rule_set.Add(pattern)
            rule_set.Compile()
            self.sets.append((first, rule_set))

    def which(self, data: bytes) -> list[int]:
        found: list[int] = []
        for first, rule_set in self.sets:
            hit = rule_set.Match(data)
            if hit:
                found.extend(first + i for i in hit)
        return found


# --- validation --------------------------------------------------------------------------------
def _compile_rule(rule: Rule) -> tuple[str, Any]:
    """(translated pattern, RE2 regex) for `rule`; raises RuleError naming the rule."""
    try:
        pattern = translate(rule)
        try:
            regex = re2.compile(pattern, _options(RULE_MEM))
        except re2.error as exc:
            raise RuleError(f"the regex engine refuses it: {_reason(exc)}") from None
    except RuleError as exc:
        raise RuleError(exc.message, position=exc.position, rule_id=rule.id) from None
    return pattern, regex


def _reason(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.rstrip(".")


def _hyperscan_refusal(hs, pattern: str) -> str | None:
    try:
        _hyperscan_database(hs, [pattern])
    except hs.error as exc:
        return _reason(exc)
    return None


def validate_rule(rule: Rule) -> None:
    """Raise RuleError if `rule` cannot be used: bad kind, category, severity or pattern."""
    pattern, _regex = _compile_rule(rule)
    if _hyperscan_works():  # past one of Hyperscan's limits (size, anchors), even a keyword
        refusal = _hyperscan_refusal(_hyperscan_module(), pattern)
        if refusal:
            raise RuleError(f"the regex engine refuses it: {refusal}", rule_id=rule.id)


# --- the matcher -------------------------------------------------------------------------------
def _utf8(text: str) -> tuple[bytes, str]:
    """(UTF-8 bytes, text to match): lone surrogates become "?", so offsets do not move."""
    try:
        return text.encode("utf-8"), text
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
        return data, data.decode("utf-8")


class Matcher:
    """A compiled rule set. `scan` may be called from several threads at once."""

    def __init__(self, rules: tuple[Rule, ...], regexes: list[Any], finder, engine: str) -> None:
        self.rules = rules
        self.engine = engine
        self._regexes = regexes
        self._finder = finder

    def __repr__(self) -> str:
        return f"<Matcher {self.engine}, {len(self.rules)} rules>"

    def scan(self, text: str, *, max_hits: int = 50) -> ScanResult:
        """The rules' hits in `text`, in order; at most `max_hits` of them (see `_cap`)."""
        if max_hits < 1:
            raise ValueError("max_hits must be at least 1")
        if not text or self._finder is None:
            return _CLEAN
        data, subject = _utf8(text)
        which = self._finder.which(data)
        if not which:
            return _CLEAN
        return self._locate(text, subject, which, max_hits)

    def scan_many(self, texts: Iterable[str]) -> Iterator[ScanResult]:
        """`scan` of each text, in order (dataset rows, outputs in bulk)."""
        scan = self.scan
        for text in texts:
            yield scan(text)

    def _locate(self, text: str, subject: str, which: list[int], max_hits: int) -> ScanResult:
        found: list[tuple[int, int, int, Hit]] = []
        for index in sorted(which):
            rule = self.rules[index]
            for count, match in enumerate(self._regexes[index].finditer(subject)):
                if count == max_hits:
                    break
                start, end = match.span()
                hit = Hit(
                    rule.id,
                    rule.category,
                    rule.severity,
                    start,
                    end,
                    text[start : min(end, start + HIT_TEXT)],
                )
                found.append((start, end, index, hit))
        if not found:
            return _CLEAN
        found.sort(key=lambda f: f[:3])
        if len(found) > max_hits:
            found = _cap(found, max_hits)
        return ScanResult(tuple(f[3] for f in found))


def _cap(found: list[tuple[int, int, int, Hit]], max_hits: int) -> list[tuple[int, int, int, Hit]]:
    """`max_hits` of the hits (sorted by place): the first hit of every rule that matched (block
    rules first), so that the severity and categories stay true, then the earliest of the rest."""
    first: dict[int, tuple[int, int, int, Hit]] = {}
    for f in found:
        first.setdefault(f[2], f)
    keep = sorted(first.values(), key=lambda f: (f[3].severity != "block", f[:3]))[:max_hits]
    kept = {id(f) for f in keep}
    room = max_hits - len(keep)
    for f in found:
        if room <= 0:
            break
        if id(f) not in kept:
            keep.append(f)
            room -= 1
    keep.sort(key=lambda f: f[:3])
    return keep


def _finder(engine: str, rules: tuple[Rule, ...], patterns: list[str]):
    if engine == "re2":
        return _Re2Finder(patterns)
    hs = _hyperscan_module()
    try:
        return _HyperscanFinder(hs, patterns)
    except hs.error as exc:
        for rule, pattern in zip(rules, patterns, strict=True):
            refusal = _hyperscan_refusal(hs, pattern)
            if refusal:
                raise RuleError(
                    f"the regex engine refuses it: {refusal}", rule_id=rule.id
                ) from None
        raise RuntimeError(f"hyperscan cannot build the rule set: {_reason(exc)}") from exc


def compile_rules(rules: Sequence[Rule], *, engine: str = "auto") -> Matcher:
    """Validate every rule (RuleError names the first bad one) and build a Matcher.

    `engine`: "auto" (hyperscan where it is installed and works, else re2), "hyperscan" or "re2".
    """
    chosen = _resolve_engine(engine)
    rules = tuple(rules)
    patterns, regexes = [], []
    for rule in rules:
        pattern, regex = _compile_rule(rule)
        patterns.append(pattern)
        regexes.append(regex)
    finder = None
    if rules:
        try:
            finder = _finder(chosen, rules, patterns)
        except RuntimeError:
            if engine != "auto":
                raise
            log.warning("hyperscan cannot build this rule set; it runs on RE2", exc_info=True)
            chosen, finder = "re2", _finder("re2", rules, patterns)
    return Matcher(rules, regexes, finder, chosen)
