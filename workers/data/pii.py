"""PII detection and de-identification for canonical JSONL datasets (pure: no Django, no Celery).

Two engines give the same findings:

* ``hyperscan`` (the `hyperscan` wheel): one multi-pattern database of every recognizer's regex
  core is run over 4 MiB blocks of raw JSONL bytes. Almost every line has no hit and is only
  counted; a line with a hit is parsed, and only the recognizers that fired are run with `re`
  (boundaries, checksums, context) on its strings.
* ``re``: every recognizer is run with `re` on every string of every line. Slower, no wheel.

The multi-pattern step only chooses *which* lines and recognizers to look at; the findings always
come from the same `re` patterns and validators, which is why the engines agree (the tests compare
them on one corpus). See `pii_recognizers` for the rule that keeps that true.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

from workers.data.canonical import CanonicalWriter
from workers.data.errors import DatasetError
from workers.data.pii_fakes import mask, pseudonym, tag
from workers.data.pii_recognizers import RECOGNIZERS, TYPES

__all__ = [
    "TYPES",
    "Finding",
    "PiiReport",
    "RedactResult",
    "available_engines",
    "redact_jsonl",
    "redact_text",
    "scan_jsonl",
    "scan_text",
]

log = logging.getLogger(__name__)

Engine = Literal["auto", "hyperscan", "re"]
Mode = Literal["mask", "tag", "pseudonym"]
Progress = Callable[[int, int], None]

CHUNK_BYTES = 4 * 1024 * 1024
ROWS_KEPT_PER_TYPE = 1000
# A block with more multi-pattern hits than this (a file of digit tables, say) is rescanned line by
# line with one report per pattern and line, so Python callbacks stay bounded.
DENSE_HITS = 20_000

ALL = frozenset(range(len(RECOGNIZERS)))
_COMPILED = tuple(r.compile() for r in RECOGNIZERS)
_GATES = {r.gate: re.compile(r.gate) for r in RECOGNIZERS}
# Raw-byte triggers that mean "this line is not plain canonical JSON text, run everything": a
# \uXXXX or \/ escape can hide a character of a match from the multi-pattern step.
_ESCAPE_TRIGGERS = (r"\\u", r"\\/")


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    start: int
    end: int
    value: str


# --- engines -----------------------------------------------------------------------------------
@cache
def _hyperscan_module():
    try:
        import hyperscan
    except ImportError:
        return None
    return hyperscan


def _trigger_table() -> tuple[list[bytes], list[bool], list[frozenset[int]]]:
    expressions, flags, targets = [], [], []
    for i, rec in enumerate(RECOGNIZERS):
        for pattern, caseless in rec.trigger_patterns:
            expressions.append(pattern.encode("utf-8"))
            flags.append(caseless)
            targets.append(frozenset({i}))
    for pattern in _ESCAPE_TRIGGERS:
        expressions.append(pattern.encode("ascii"))
        flags.append(False)
        targets.append(ALL)
    return expressions, flags, targets


class _Hyperscan:
    """Two block-mode databases of the same triggers: all hits (blocks), one per pattern (lines)."""

    def __init__(self, hs) -> None:
        expressions, caseless, self.targets = _trigger_table()
        base = [hs.HS_FLAG_UTF8 | (hs.HS_FLAG_CASELESS if c else 0) for c in caseless]
        ids = list(range(len(expressions)))
        self.blocks = hs.Database(mode=hs.HS_MODE_BLOCK)
        self.blocks.compile(expressions=expressions, ids=ids, elements=len(ids), flags=base)
        self.lines = hs.Database(mode=hs.HS_MODE_BLOCK)
        single = [f | hs.HS_FLAG_SINGLEMATCH for f in base]
        self.lines.compile(expressions=expressions, ids=ids, elements=len(ids), flags=single)
        self.terminated = hs.ScanTerminated

    def recognizers_for(self, data: bytes) -> frozenset[int]:
        hit: set[int] = set()
        self.lines.scan(data, match_event_handler=_collect_ids, context=hit)
        targets = self.targets
        return frozenset().union(*(targets[i] for i in hit)) if hit else frozenset()

    def block_hits(self, data: bytes) -> list[tuple[int, int]] | None:
        """(end offset, pattern id) of every hit in `data`, or None when there are too many."""
        hits: list[tuple[int, int]] = []
        try:
            self.blocks.scan(data, match_event_handler=_collect_hits, context=hits)
        except self.terminated:  # _collect_hits stopped the scan: too many hits
            return None
        return hits


def _collect_ids(pattern_id, start, end, flags, context):
    context.add(pattern_id)


def _collect_hits(pattern_id, start, end, flags, context):
    context.append((end, pattern_id))
    return len(context) > DENSE_HITS  # True stops the scan


_local = threading.local()  # a Hyperscan scratch space may only be used by one thread at a time


def _hyperscan() -> _Hyperscan | None:
    hs = _hyperscan_module()
    if hs is None:
        return None
    engine = getattr(_local, "engine", None)
    if engine is None:
        engine = _local.engine = _Hyperscan(hs)
    return engine


@cache
def _hyperscan_works() -> bool:
    try:
        _hyperscan()
    except Exception:  # e.g. a CPU without SSSE3: the wheel imports but cannot compile or scan
        log.warning(
            "hyperscan is installed but unusable; PII scans use the re engine", exc_info=True
        )
        return False
    return _hyperscan_module() is not None


def available_engines() -> list[str]:
    """Engines usable on this machine, best first."""
    return (["hyperscan"] if _hyperscan_works() else []) + ["re"]


def _resolve_engine(engine: Engine) -> _Hyperscan | None:
    if engine not in ("auto", "hyperscan", "re"):
        raise ValueError(f"unknown PII engine {engine!r}: use auto, hyperscan or re")
    if engine == "re":
        return None
    if not _hyperscan_works():
        if engine == "hyperscan":
            raise RuntimeError("the hyperscan engine needs a working `hyperscan` package")
        return None
    return _hyperscan()


# --- text --------------------------------------------------------------------------------------
def _find(text: str, recognizers: frozenset[int]) -> list[Finding]:
    candidates: list[tuple[int, int, int, int, str]] = []
    gates: dict[str, bool] = {}
    for i in recognizers:
        rec = RECOGNIZERS[i]
        open_ = gates.get(rec.gate)
        if open_ is None:
            open_ = gates[rec.gate] = _GATES[rec.gate].search(text) is not None
        if not open_:
            continue
        validate = rec.validate
        for m in _COMPILED[i].finditer(text):
            start, end = m.span("v")
            value = m.group("v")
            if validate is None or validate(value, text, start):
                candidates.append((rec.rank, start - end, start, end, rec.type))
    if not candidates:
        return []
    if len(candidates) == 1:
        _rank, _neg_len, start, end, type_ = candidates[0]
        return [Finding(type_, start, end, text[start:end])]
    # Most specific type first, then the longest, then the leftmost; keep what does not overlap.
    candidates.sort()
    starts: list[int] = []
    kept: list[Finding] = []
    for _rank, _neg_len, start, end, type_ in candidates:
        at = bisect_right(starts, start)
        if at and kept[at - 1].end > start:
            continue
        if at < len(starts) and starts[at] < end:
            continue
        starts.insert(at, start)
        kept.insert(at, Finding(type_, start, end, text[start:end]))
    return kept


def scan_text(text: str, *, engine: Engine = "auto") -> list[Finding]:
    """Non-overlapping PII findings in `text`, in order; overlaps keep the more specific type."""
    hs = _resolve_engine(engine)
    if hs is None:
        return _find(text, ALL)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8 for Hyperscan, check everything
        return _find(text, ALL)
    recognizers = hs.recognizers_for(data)
    return _find(text, recognizers) if recognizers else []


def _replace(text: str, findings: list[Finding], replacement: Callable[[Finding], str]) -> str:
    out, pos = [], 0
    for f in findings:
        out.append(text[pos : f.start])
        out.append(replacement(f))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def redact_text(
    text: str,
    mode: Mode,
    key: bytes = b"",
    types: set[str] | None = None,
    *,
    engine: Engine = "auto",
) -> str:
    """`text` with its PII (of `types`, default all) replaced as `mode` says."""
    replacer = _Replacer(mode, key, types)
    return replacer.text(text, scan_text(text, engine=engine))


# --- JSONL streaming ---------------------------------------------------------------------------
@dataclass(slots=True)
class _Block:
    data: bytes  # whole lines, the last one with or without its "\n"
    first_line: int  # 1-based line number of the block's first line
    # line index in the block -> recognizers to run; None means every line, every recognizer
    hits: dict[int, frozenset[int]] | None


def _blocks(path: Path, hs: _Hyperscan | None, progress: Progress | None) -> Iterator[_Block]:
    total = os.path.getsize(path)
    done = 0
    line_no = 1
    with open(path, "rb") as f:
        tail = b""
        while True:
            chunk = f.read(CHUNK_BYTES)
            if chunk:
                cut = chunk.rfind(b"\n")
                if cut < 0:
                    tail += chunk
                    continue
                data, tail = tail + chunk[: cut + 1], chunk[cut + 1 :]
            else:
                data, tail = tail, b""
            if data:
                hits = None if hs is None else _line_hits(hs, data)
                yield _Block(data, line_no, hits)
                line_no += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                done += len(data)
                if progress is not None:
                    progress(done, total)
            if not chunk:
                break
    if progress is not None and done == 0:
        progress(0, total)


def _line_hits(hs: _Hyperscan, data: bytes) -> dict[int, frozenset[int]]:
    hits = hs.block_hits(data)
    out: dict[int, frozenset[int]] = {}
    if hits is None:  # dense: per line, one report per pattern
        for index, line in enumerate(data.split(b"\n")):
            found = hs.recognizers_for(line) if line else None
            if found:
                out[index] = found
        return out
    targets = hs.targets
    index, line_start, line_end = 0, 0, -1
    for end, pattern_id in sorted(hits):
        if end > line_end:  # the hit is on a later line (no trigger spans a newline)
            start = data.rfind(b"\n", 0, end) + 1
            index += data.count(b"\n", line_start, start)
            line_start = start
            nl = data.find(b"\n", end)
            line_end = len(data) if nl < 0 else nl
        out[index] = out.get(index, frozenset()) | targets[pattern_id]
    return out


def _block_lines(block: _Block) -> list[bytes]:
    lines = block.data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    return lines


def _lines_to_check(block: _Block, lines: list[bytes]) -> Iterator[tuple[int, frozenset[int]]]:
    """(line index, recognizers) for the lines of the block that may hold PII."""
    if block.hits is None:
        return ((i, ALL) for i in range(len(lines)))
    return iter(block.hits.items())  # in line order: hits were sorted by offset


def _parse(line: bytes, line_no: int) -> Any:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"not valid JSON ({exc})", line=line_no, code="invalid_json") from None


def _collect_strings(obj: Any, out: list[str]) -> None:
    """Append every text value of a JSON value (dict values, list items, integers) to `out`."""
    t = type(obj)
    if t is str:
        out.append(obj)
    elif t is dict:
        for v in obj.values():
            if type(v) is str:
                out.append(v)
            else:
                _collect_strings(v, out)
    elif t is list:
        for v in obj:
            _collect_strings(v, out)
    elif t is int:
        out.append(str(obj))


def _row_findings(obj: Any, recognizers: frozenset[int]) -> list[Finding]:
    texts: list[str] = []
    _collect_strings(obj, texts)
    findings: list[Finding] = []
    for text in texts:
        found = _find(text, recognizers)
        if found:
            findings.extend(found)
    return findings


# --- the scan report ---------------------------------------------------------------------------
@dataclass
class TypeReport:
    count: int = 0
    rows_total: int = 0
    rows: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "rows_total": self.rows_total,
            "rows": list(self.rows),
            "rows_truncated": self.rows_total > len(self.rows),
            "examples": list(self.examples),
        }


@dataclass
class PiiReport:
    """What a scan found: per type counts, masked examples and (the first) row numbers."""

    engine: str
    rows_scanned: int = 0
    rows_with_pii: int = 0
    bytes_scanned: int = 0
    types: dict[str, TypeReport] = field(default_factory=dict)
    sample_per_type: int = 5
    rows_kept_per_type: int = ROWS_KEPT_PER_TYPE

    @property
    def counts(self) -> dict[str, int]:
        return {t: r.count for t, r in self.types.items()}

    @property
    def total_findings(self) -> int:
        return sum(r.count for r in self.types.values())

    def add_row(self, row: int, findings: list[Finding]) -> None:
        self.rows_with_pii += 1
        seen: set[str] = set()
        for f in findings:
            rep = self.types.get(f.type)
            if rep is None:
                rep = self.types[f.type] = TypeReport()
            rep.count += 1
            if f.type not in seen:
                seen.add(f.type)
                rep.rows_total += 1
                if len(rep.rows) < self.rows_kept_per_type:
                    rep.rows.append(row)
            if len(rep.examples) < self.sample_per_type:
                masked = mask(f.type, f.value)
                if masked not in rep.examples:
                    rep.examples.append(masked)

    def to_dict(self) -> dict[str, Any]:
        ordered = [t for t in TYPES if t in self.types]
        return {
            "engine": self.engine,
            "rows_scanned": self.rows_scanned,
            "rows_with_pii": self.rows_with_pii,
            "bytes_scanned": self.bytes_scanned,
            "total_findings": self.total_findings,
            "counts": {t: self.types[t].count for t in ordered},
            "types": {t: self.types[t].to_dict() for t in ordered},
        }


def _engine_name(hs: _Hyperscan | None) -> str:
    return "re" if hs is None else "hyperscan"


def scan_jsonl(
    path: str | os.PathLike[str],
    progress: Progress | None = None,
    sample_per_type: int = 5,
    *,
    engine: Engine = "auto",
) -> PiiReport:
    """Scan every string value of a canonical JSONL file, streaming, into a `PiiReport`.

    Row numbers are 1-based line numbers (one record per line); `progress(bytes_done, bytes_total)`
    is called after each block of a few MiB.
    """
    hs = _resolve_engine(engine)
    report = PiiReport(engine=_engine_name(hs), sample_per_type=sample_per_type)
    for block in _blocks(Path(path), hs, progress):
        lines = _block_lines(block)
        report.bytes_scanned += len(block.data)
        report.rows_scanned += len(lines) - lines.count(b"")
        for index, recognizers in _lines_to_check(block, lines):
            line = lines[index]
            if not line.strip():
                continue
            line_no = block.first_line + index
            findings = _row_findings(_parse(line, line_no), recognizers)
            if findings:
                report.add_row(line_no, findings)
    return report


# --- redaction ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RedactResult:
    path: Path
    rows: int
    sha256: str
    replaced_counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "sha256": self.sha256,
            "replaced_counts": dict(self.replaced_counts),
        }


class _Replacer:
    def __init__(self, mode: Mode, key: bytes, types: set[str] | None) -> None:
        if mode not in ("mask", "tag", "pseudonym"):
            raise ValueError(f"unknown redaction mode {mode!r}: use mask, tag or pseudonym")
        if types is not None and (unknown := set(types) - set(TYPES)):
            raise ValueError(f"unknown PII types: {', '.join(sorted(unknown))}")
        if mode == "pseudonym" and not key:
            raise ValueError("pseudonym redaction needs a non-empty project secret key")
        self.types = None if types is None else frozenset(types)
        self.counts: dict[str, int] = {}
        if mode == "mask":
            self._make = mask
        elif mode == "tag":
            self._make = tag
        else:
            self._make = lru_cache(maxsize=65_536)(lambda t, v: pseudonym(t, v, key))

    def replacement(self, f: Finding) -> str:
        self.counts[f.type] = self.counts.get(f.type, 0) + 1
        return self._make(f.type, f.value)

    def text(self, text: str, findings: list[Finding]) -> str:
        if self.types is not None:
            findings = [f for f in findings if f.type in self.types]
        return _replace(text, findings, self.replacement) if findings else text

    def value(self, obj: Any, recognizers: frozenset[int]) -> Any:
        if isinstance(obj, str):
            return self.text(obj, _find(obj, recognizers))
        if isinstance(obj, dict):
            return {k: self.value(v, recognizers) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v, recognizers) for v in obj]
        if isinstance(obj, int) and not isinstance(obj, bool):
            as_text = str(obj)
            redacted = self.text(as_text, _find(as_text, recognizers))
            return obj if redacted == as_text else redacted
        return obj


def redact_jsonl(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    mode: Mode,
    key: bytes,
    types: set[str] | None = None,
    progress: Progress | None = None,
    *,
    engine: Engine = "auto",
) -> RedactResult:
    """Write a canonical JSONL copy of `src` with PII of `types` (default all) replaced.

    The file appears at `out` only when complete (written beside it, then renamed).
    """
    replacer = _Replacer(mode, key, types)
    hs = _resolve_engine(engine)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with CanonicalWriter(tmp) as writer:
            for block in _blocks(Path(src), hs, progress):
                hits = block.hits
                for index, line in enumerate(_block_lines(block)):
                    if not line.strip():
                        continue
                    obj = _parse(line, block.first_line + index)
                    recognizers = ALL if hits is None else hits.get(index)
                    if recognizers:
                        obj = replacer.value(obj, recognizers)
                    writer.write(obj)
            sha256 = writer.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    counts = {t: replacer.counts[t] for t in TYPES if t in replacer.counts}
    return RedactResult(path=out, rows=writer.rows, sha256=sha256, replaced_counts=counts)
