"""PII detection and de-identification for canonical JSONL datasets (pure: no Django, no Celery).

Two engines give the same findings:

* ``hyperscan`` (the `hyperscan` wheel): one multi-pattern database of every recognizer's
  triggers is run over 4 MiB blocks of raw JSONL bytes. Almost every line of ordinary data has no
  hit and is only counted; the lines with a hit are parsed, and the strings of all of them are
  joined (NUL-separated) into batches of about `BATCH_CHARS`, each scanned again as one text, and
  each recognizer's `re` pattern (boundaries, checksums, context) is searched only in a window
  around each of its trigger hits. The findings are then handed back to their rows and strings.
  Where most lines of a block have hits (PII-dense data: a probe of its first `PROBE_BYTES` says
  so) the line selection is skipped, as it would cost more than it saves. Everything Python does
  per hit or per string is what is left: one scan, one search loop and one overlap pass per batch.
* ``re``: every recognizer is run with `re` over every string of every line. Slower, no wheel.

The multi-pattern step only chooses *where* to look; the findings always come from the same `re`
patterns and validators, which is why the engines agree (the tests compare them on a fuzzed
corpus and on the labeled evaluation set). See `pii_recognizers` for the rules that keep that
true: triggers are a superset of the patterns, every pattern has a bounded length, and every
match has a trigger hit within its recognizer's `window`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import re._constants as re_constants  # type: ignore[import-not-found]
import re._parser as re_parser  # type: ignore[import-not-found]
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import accumulate, count
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

from workers.data.canonical import CanonicalWriter
from workers.data.errors import DatasetError
from workers.data.hyperscan_cache import block_database
from workers.data.pii_fakes import mask, pseudonym, tag
from workers.data.pii_recognizers import MAX_CONTEXT, RECOGNIZERS, TYPES

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
# How much of a block is looked at to tell PII-dense data (most lines with a hit) from the rest.
PROBE_BYTES = 64 * 1024
# A block with more multi-pattern hits than this (a file of digit tables, say) is rescanned line by
# line with one report per pattern and line, so Python callbacks stay bounded.
DENSE_HITS = 250_000

ALL = frozenset(range(len(RECOGNIZERS)))
_COMPILED = tuple(r.compile() for r in RECOGNIZERS)
_GATES = {r.gate: re.compile(r.gate) for r in RECOGNIZERS}
# Raw-byte triggers that mean "this line is not plain canonical JSON text, run everything": a
# \uXXXX or \/ escape can hide a character of a match from the multi-pattern step.
_ESCAPE_TRIGGERS = (r"\\u", r"\\/")


class Finding(NamedTuple):
    """One PII value in a text: its type, its span and the value (a tuple: cheap to make)."""

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
    """Two block-mode databases of the same triggers: all hits (blocks), one per pattern (lines).

    Compiled once per process, or read from the on-disk cache (`hyperscan_cache`: compiling takes
    seconds), and shared by its threads, each scanning with a scratch space of its own.
    """

    def __init__(self, hs) -> None:
        expressions, caseless, self.targets = _trigger_table()
        # The one recognizer each trigger stands for; -1 for the escape triggers (all of them).
        self.owner = [-1 if len(t) != 1 else next(iter(t)) for t in self.targets]
        # UTF-8 mode only where a trigger may consume a non-ASCII character: on bytes, an ASCII-only
        # trigger finds exactly the same matches, and the scan is about a third faster.
        base = [
            (0 if _ascii_only(e) else hs.HS_FLAG_UTF8) | (hs.HS_FLAG_CASELESS if c else 0)
            for e, c in zip(expressions, caseless, strict=True)
        ]
        self.hs = hs
        self.blocks = block_database(hs, "pii-blocks", expressions, base)
        single = [f | hs.HS_FLAG_SINGLEMATCH for f in base]
        self.lines = block_database(hs, "pii-lines", expressions, single)
        self.terminated = hs.ScanTerminated
        self._local = threading.local()  # a scratch space may serve one thread at a time
        owner = self.owner

        def collect_by_recognizer(pattern_id, start, end, flags, context):
            context[owner[pattern_id]].append(end)  # -1: the last list, escape triggers

        self._collect_by_recognizer = collect_by_recognizer

    def _scan(self, db, data: bytes, handler, context) -> None:
        """`db.scan` with this thread's scratch space for `db`."""
        scratches = getattr(self._local, "scratches", None)
        if scratches is None:
            scratches = self._local.scratches = {}
        scratch = scratches.get(id(db))
        if scratch is None:
            scratch = scratches[id(db)] = self.hs.Scratch(db)
        db.scan(data, match_event_handler=handler, context=context, scratch=scratch)

    def recognizers_for(self, data: bytes) -> frozenset[int]:
        hit: set[int] = set()
        self._scan(self.lines, data, _collect_ids, hit)
        targets = self.targets
        return frozenset().union(*(targets[i] for i in hit)) if hit else frozenset()

    def string_hits(self, data: bytes) -> list[tuple[int, int]]:
        """(end offset, pattern id) of every trigger hit in one string's UTF-8 bytes, in order."""
        hits: list[tuple[int, int]] = []
        self._scan(self.blocks, data, _collect_all, hits)
        hits.sort()
        return hits

    def hits_by_recognizer(self, data: bytes) -> list[list[int]]:
        """Per recognizer, the end offsets of its trigger hits in `data`, ascending; the last list
        holds those of the escape triggers.

        The hits are sorted into their recognizer's list as they are reported, which saves
        a tuple per hit and a pass over all of them.
        """
        lists: list[list[int]] = [[] for _ in range(len(RECOGNIZERS) + 1)]
        self._scan(self.blocks, data, self._collect_by_recognizer, lists)
        for ends in lists:
            ends.sort()  # already in order, or nearly: the order is Hyperscan's, not a promise
        return lists

    def block_hits(self, data: bytes) -> list[tuple[int, int]] | None:
        """(end offset, pattern id) of every hit in `data`, or None when there are too many."""
        hits: list[tuple[int, int]] = []
        try:
            self._scan(self.blocks, data, _collect_hits, hits)
        except self.terminated:  # _collect_hits stopped the scan: too many hits
            return None
        return hits


def _ascii_only(expression: bytes) -> bool:
    """Does the trigger consume only ASCII bytes (literals, classes, no "." or negated class)?

    Such a trigger never matches part of a multi-byte character, so it needs no UTF-8 mode. The
    trigger is read with the stdlib's pattern parser (its syntax is the part of Hyperscan's that
    triggers use); anything it cannot read, or does not know, counts as not ASCII-only.
    """
    try:
        return expression.isascii() and _ascii_items(re_parser.parse(expression.decode()))
    except (re.error, ValueError):
        return False


def _ascii_items(items: Any) -> bool:
    """Do the parsed pattern's items consume only ASCII characters?"""
    for op, av in items:
        if op is re_constants.LITERAL:
            ok = av < 128
        elif op is re_constants.IN:
            ok = all(
                (o is re_constants.LITERAL and a < 128) or (o is re_constants.RANGE and a[1] < 128)
                for o, a in av
            )
        elif op is re_constants.BRANCH:
            ok = all(_ascii_items(alternative) for alternative in av[1])
        elif op is re_constants.SUBPATTERN:
            ok = _ascii_items(av[-1])
        elif op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT):
            ok = _ascii_items(av[2])
        else:  # "\b" and "^" consume nothing; ".", "\d", a negated class... may consume more
            ok = op is re_constants.AT
        if not ok:
            return False
    return True


def _collect_ids(pattern_id, start, end, flags, context):
    context.add(pattern_id)


def _collect_all(pattern_id, start, end, flags, context):
    context.append((end, pattern_id))


def _collect_hits(pattern_id, start, end, flags, context):
    context.append((end, pattern_id))
    return len(context) > DENSE_HITS  # True stops the scan


_engine_lock = threading.Lock()
_engine: _Hyperscan | None = None


def _hyperscan() -> _Hyperscan | None:
    """The process's Hyperscan engine (made on first use), or None without the wheel."""
    global _engine
    hs = _hyperscan_module()
    if hs is None:
        return None
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = _Hyperscan(hs)
    return _engine


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
# A candidate finding: (rank, -length, start, end, type); sorting puts the one to keep first.
Candidate = tuple[int, int, int, int, str]


def _find(text: str, recognizers: frozenset[int]) -> list[Finding]:
    candidates: list[Candidate] = []
    gates: dict[str, bool] = {}
    for i in recognizers:
        rec = RECOGNIZERS[i]
        open_ = gates.get(rec.gate)
        if open_ is None:
            open_ = gates[rec.gate] = _GATES[rec.gate].search(text) is not None
        if not open_:
            continue
        validate = rec.validate
        if validate is None:
            for m in _COMPILED[i].finditer(text):
                start, end = m.span("v")
                candidates.append((rec.rank, start - end, start, end, rec.type))
            continue
        # A rejected match must not hide one that starts inside it ("感谢李医生": not 谢李, but 李),
        # so the search goes on from the character after the rejected match's start.
        search = _COMPILED[i].search
        found = search(text)
        while found is not None:
            m = found
            start, end = m.span("v")
            if validate(m.group("v"), text, start):
                candidates.append((rec.rank, start - end, start, end, rec.type))
                found = search(text, m.end() if m.end() > m.start() else m.start() + 1)
            else:
                found = search(text, m.start() + 1)
    return _findings(text, _resolve_overlaps(candidates))


def _findings(text: str, kept: list[Candidate]) -> list[Finding]:
    return [Finding(c[4], c[2], c[3], text[c[2] : c[3]]) for c in kept]


_start_end = itemgetter(2, 3)


def _resolve_overlaps(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates to keep, by start: of overlapping ones, the most specific type, then the
    longest, then the leftmost (and what does not overlap those).

    Candidates are cut into groups that overlap among themselves (sorted by start, a group ends
    where the next candidate starts at or after the end of all before it); groups do not touch, so
    each is settled on its own, and a text of many findings (a joined batch) stays linear.
    """
    if len(candidates) < 2:
        return candidates
    candidates.sort(key=_start_end)
    kept: list[Candidate] = []
    group = [candidates[0]]
    reach = group[0][3]
    for c in candidates[1:]:
        if c[2] < reach:
            group.append(c)
            if c[3] > reach:
                reach = c[3]
            continue
        if len(group) == 1:
            kept.append(group[0])
        else:
            kept.extend(_settle(group))
        group = [c]
        reach = c[3]
    if len(group) == 1:
        kept.append(group[0])
    else:
        kept.extend(_settle(group))
    return kept


def _settle(group: list[Candidate]) -> list[Candidate]:
    """Overlapping candidates: keep them in rank order where they overlap nothing kept."""
    group.sort()
    starts: list[int] = []
    kept: list[Candidate] = []
    for c in group:
        start, end = c[2], c[3]
        at = bisect_right(starts, start)
        if at and kept[at - 1][3] > start:
            continue
        if at < len(starts) and starts[at] < end:
            continue
        starts.insert(at, start)
        kept.insert(at, c)
    return kept


# Characters past a match that a pattern's look-aheads may read ("(?!\\.[0-9])"): a window's end
# is pushed this far beyond the longest match, so truncating the text there changes nothing.
_LOOKAHEAD = 4
# Per recognizer: search, validator, window back and forward, search reach, rank, type.
_NEAR = tuple(
    (
        rx.search,
        rec.validate,
        rec.window[0],
        rec.window[1],
        rec.window[1] + rec.max_width + _LOOKAHEAD,
        rec.rank,
        rec.type,
    )
    for rec, rx in zip(RECOGNIZERS, _COMPILED, strict=True)
)


def _find_near_hits(text: str, hs: _Hyperscan) -> list[Finding]:
    """`_find(text, ALL)`, but each recognizer's `re` runs only in windows around its trigger hits."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8 for Hyperscan
        return _find(text, ALL)
    kept = _search_near_hits(text, data, hs)
    return _find(text, ALL) if kept is None else _findings(text, kept)


def _search_near_hits(text: str, data: bytes, hs: _Hyperscan) -> list[Candidate] | None:
    """The kept candidates of `_find(text, ALL)`, searched near the trigger hits in `data`
    (`text` in UTF-8); None where an escape trigger fired ("\\u" in the text: check everything).

    Every match has a trigger hit that ends within `Recognizer.window` of the match's start (the
    triggers are a superset of the patterns), so a search that starts at the first hit's window
    and is cut off past the longest match a window can hold finds the match that a search from
    the beginning would find next; the validator's rejections and the overlap rules are the same.
    That makes the result equal to `_find`'s, at a cost that grows with the hits, not the text.
    """
    by_recognizer = hs.hits_by_recognizer(data)
    if by_recognizer.pop():
        return None
    if len(data) != len(text):  # byte offsets -> character offsets (a hit ends on a character)
        chars = _char_offsets(data, by_recognizer)
        by_recognizer = [[chars[end] for end in ends] for ends in by_recognizer]
    candidates: list[Candidate] = []
    for i, ends in enumerate(by_recognizer):
        if ends:
            _near(text, i, ends, candidates)
    return _resolve_overlaps(candidates)


def _char_offsets(data: bytes, ends_lists: list[list[int]]) -> dict[int, int]:
    """UTF-8 byte offset -> character offset, for each offset in `ends_lists` (one character's end)."""
    chars: dict[int, int] = {}
    done_bytes = done_chars = 0
    for end in sorted(set().union(*ends_lists)):
        done_chars += len(data[done_bytes:end].decode("utf-8"))
        done_bytes = end
        chars[end] = done_chars
    return chars


def _near(text: str, i: int, ends: list[int], out: list[Candidate]) -> None:
    search, validate, back, forward, reach, rank, type_ = _NEAR[i]
    pos = j = 0
    n = len(ends)
    while True:
        while j < n and ends[j] + forward <= pos:
            j += 1
        if j == n:
            return
        hit = ends[j]
        m = search(text, hit - back if hit - back > pos else pos, hit + reach)
        if m is None:
            pos = hit + forward  # no match starts in this hit's window
            continue
        m_start, m_end = m.span()
        if m_start >= hit + forward:
            pos = hit + forward
            continue
        start, end = m.span("v")
        if validate is None or validate(text[start:end], text, start):
            out.append((rank, start - end, start, end, type_))
            pos = m_end if m_end > m_start else m_start + 1
        else:
            pos = m_start + 1


# Between texts scanned as one: no pattern matches a NUL, and no validator or look-around reads
# further than this, so each text is judged as if alone.
_JOIN = "\x00" * (MAX_CONTEXT + 2)
# Texts are joined into batches of about this many characters, each scanned and searched as one
# text: the cost per scan and per search loop is paid per batch, not per string, while a batch's
# hits (think of a table of digits) stay few enough to hold.
BATCH_CHARS = 256 * 1024


def _texts_findings(texts: list[str], hs: _Hyperscan | None) -> dict[int, list[Finding]]:
    """The findings of each text that has any: index in `texts` -> findings (offsets in the text).

    With Hyperscan the texts (of many rows) are joined with `_JOIN` into batches of about
    `BATCH_CHARS`, and each batch is scanned once and searched near its hits as one text.
    """
    out: dict[int, list[Finding]] = {}
    if hs is None:
        for k, text in enumerate(texts):
            if found := _find(text, ALL):
                out[k] = found
        return out
    sizes = list(accumulate(map(len, texts)))
    lo = 0
    while lo < len(texts):
        hi = bisect_left(sizes, (sizes[lo - 1] if lo else 0) + BATCH_CHARS, lo) + 1
        _batch_findings(texts, range(lo, min(hi, len(texts))), hs, out)
        lo = hi
    return out


def _batch_findings(
    texts: list[str], batch: Sequence[int], hs: _Hyperscan, out: dict[int, list[Finding]]
) -> None:
    """Add the findings of `texts[k] for k in batch`, scanned as one joined text, to `out`.

    A text with a NUL (the joint would not be one) or an escape trigger ("\\u", "\\/": every
    recognizer runs) is checked alone, and the others without it.
    """
    parts = [texts[k] for k in batch]
    joined = _JOIN.join(parts)
    step = len(_JOIN)
    escape = "\\" in joined and ("\\u" in joined or "\\/" in joined)  # "\\" alone: faster
    if escape or joined.count("\x00") != step * (len(parts) - 1):
        rest = []
        for k in batch:
            text = texts[k]
            if "\x00" in text or "\\u" in text or "\\/" in text:
                if found := _find_near_hits(text, hs):
                    out[k] = found
            else:
                rest.append(k)
        if rest:
            _batch_findings(texts, rest, hs, out)
        return
    try:
        kept = _search_near_hits(joined, joined.encode("utf-8"), hs)
    except UnicodeEncodeError:  # a lone surrogate in one of them
        kept = None
    if kept is None:  # one by one, as `_find_near_hits` decides
        for k in batch:
            if found := _find_near_hits(texts[k], hs):
                out[k] = found
        return
    if not kept:
        return
    # Each part's start in `joined`; `kept` is in order, so the part of a finding only moves on.
    starts = list(accumulate((len(p) + step for p in parts[:-1]), initial=0))
    starts.append(len(joined) + step)
    j, base, following = -1, 0, 0
    in_part: list[Finding] = []
    for _rank, _neg_len, start, end, type_ in kept:
        if start >= following:
            j = bisect_right(starts, start, j + 1) - 1
            base, following = starts[j], starts[j + 1]
            in_part = out[batch[j]] = []
        in_part.append(Finding(type_, start - base, end - base, joined[start:end]))


def scan_text(text: str, *, engine: Engine = "auto") -> list[Finding]:
    """Non-overlapping PII findings in `text`, in order; overlaps keep the more specific type."""
    hs = _resolve_engine(engine)
    if hs is None:
        return _find(text, ALL)
    return _find_near_hits(text, hs)


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
    # indexes (in the block, ascending) of the lines that may hold PII; None means every line
    hits: list[int] | None


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
                yield _Block(data, line_no, None if hs is None else _selected_lines(hs, data))
                line_no += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                done += len(data)
                if progress is not None:
                    progress(done, total)
            if not chunk:
                break
    if progress is not None and done == 0:
        progress(0, total)


def _selected_lines(hs: _Hyperscan, data: bytes) -> list[int] | None:
    """The lines of a block to check, or None for all of them.

    Where most lines have hits (PII-dense data), selecting lines costs more than it saves: one
    callback per hit for nothing, as every line is parsed and its strings are scanned anyway. The
    block's first `PROBE_BYTES` tell which case it is.
    """
    cut = data.find(b"\n", PROBE_BYTES)
    if cut > 0:
        head = data[: cut + 1]
        if len(_line_hits(hs, head)) * 2 > head.count(b"\n"):
            return None
    return _line_hits(hs, data)


def _line_hits(hs: _Hyperscan, data: bytes) -> list[int]:
    """Indexes of the lines of `data` with a trigger hit, in order."""
    hits = hs.block_hits(data)
    if hits is None:  # dense: per line, one report per pattern
        return [i for i, line in enumerate(data.split(b"\n")) if line and hs.recognizers_for(line)]
    out: list[int] = []
    index, line_start, line_end = 0, 0, -1
    for end, _pattern_id in sorted(hits):
        if end > line_end:  # the hit is on a later line (no trigger spans a newline)
            start = data.rfind(b"\n", 0, end) + 1
            index += data.count(b"\n", line_start, start)
            line_start = start
            nl = data.find(b"\n", end)
            line_end = len(data) if nl < 0 else nl
            out.append(index)
    return out


def _block_lines(block: _Block) -> list[bytes]:
    lines = block.data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    return lines


def _decoded_lines(block: _Block) -> list[str] | None:
    """The block's lines as text (one decode per block, not per line); None if not UTF-8."""
    text = _decoded(block.data)
    return None if text is None else text.split("\n")


def _decoded(data: bytes) -> str | None:
    """`data` as text, or None where it is not UTF-8: then `_parse` reports the line (or
    `json.loads` accepts it: it lets encoded surrogates through)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_raw_decode = json.JSONDecoder().raw_decode


def _parse(line: bytes, line_no: int, text: str | None = None) -> Any:
    """The JSON value of one line; `text`, the line decoded, takes a faster path to the same value.

    `raw_decode` of a line that is one JSON value and nothing else gives what `json.loads` gives;
    anything else (whitespace around it, a BOM, an error) goes through `json.loads`, whose value
    or message is the one reported.
    """
    if text is not None:
        try:
            value, end = _raw_decode(text)
        except ValueError:
            pass
        else:
            if end == len(text):
                return value
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


def _in_order(texts_found: dict[int, list[Finding]], first: int) -> Callable[[str], list[Finding]]:
    """A finder that hands out precomputed findings, text `first` on, in `_collect_strings` order."""
    index = count(first)
    return lambda _text: texts_found.get(next(index), [])


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
        types = self.types
        seen: set[str] = set()
        for type_, _start, _end, value in findings:
            rep = types.get(type_)
            if rep is None:
                rep = types[type_] = TypeReport()
            rep.count += 1
            if type_ not in seen:
                seen.add(type_)
                rep.rows_total += 1
                if len(rep.rows) < self.rows_kept_per_type:
                    rep.rows.append(row)
            if len(rep.examples) < self.sample_per_type:
                masked = mask(type_, value)
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
        # Decoding all of a block is cheaper than line by line, unless few lines are parsed.
        decoded = _decoded_lines(block) if block.hits is None else None
        row_lines: list[int] = []  # line number of each parsed row ...
        row_ends: list[int] = []  # ... and the index in `texts` where its strings end
        texts: list[str] = []
        for index in range(len(lines)) if block.hits is None else block.hits:
            line = lines[index]
            if not line.strip():
                continue
            line_no = block.first_line + index
            text = _decoded(line) if decoded is None else decoded[index]
            _collect_strings(_parse(line, line_no, text), texts)
            row_lines.append(line_no)
            row_ends.append(len(texts))
        _report_rows(report, _texts_findings(texts, hs), row_lines, row_ends)
    return report


def _report_rows(
    report: PiiReport, found: dict[int, list[Finding]], row_lines: list[int], row_ends: list[int]
) -> None:
    """Add each row's findings to `report`, rows in order and each row's texts in order."""
    row = -1
    findings: list[Finding] = []
    for k in sorted(found):
        at = bisect_right(row_ends, k)  # the row whose texts end after text k
        if at != row:
            if findings:
                report.add_row(row_lines[row], findings)
            row, findings = at, []
        findings.extend(found[k])
    if findings:
        report.add_row(row_lines[row], findings)


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

    def value(self, obj: Any, find: Callable[[str], list[Finding]]) -> Any:
        """`obj` with its strings redacted; `find` is called on them in `_collect_strings` order."""
        if isinstance(obj, str):
            return self.text(obj, find(obj))
        if isinstance(obj, dict):
            return {k: self.value(v, find) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v, find) for v in obj]
        if isinstance(obj, int) and not isinstance(obj, bool):
            as_text = str(obj)
            redacted = self.text(as_text, find(as_text))
            return obj if redacted == as_text else redacted
        return obj


def _redacted_rows(block: _Block, hs: _Hyperscan | None, replacer: _Replacer) -> list[Any]:
    """The rows of one block, parsed, with the PII of their strings replaced."""
    decoded = _decoded_lines(block)
    selected = None if block.hits is None else set(block.hits)
    rows: list[Any] = []
    firsts: list[int | None] = []  # per row: the index of its first string in `texts`, if checked
    texts: list[str] = []
    for index, line in enumerate(_block_lines(block)):
        if not line.strip():
            continue
        rows.append(
            _parse(line, block.first_line + index, None if decoded is None else decoded[index])
        )
        if selected is None or index in selected:
            firsts.append(len(texts))
            _collect_strings(rows[-1], texts)
        else:
            firsts.append(None)
    found = _texts_findings(texts, hs)
    if not found:
        return rows
    return [
        obj if first is None else replacer.value(obj, _in_order(found, first))
        for obj, first in zip(rows, firsts, strict=True)
    ]


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
                for obj in _redacted_rows(block, hs, replacer):
                    writer.write(obj)
            sha256 = writer.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    counts = {t: replacer.counts[t] for t in TYPES if t in replacer.counts}
    return RedactResult(path=out, rows=writer.rows, sha256=sha256, replaced_counts=counts)
