"""Import limits: every one is checked while streaming and has its own error message.

Also the strict reading of JSON that the limits imply: `STRICT_JSON` parses at C speed and raises
on what a dataset cannot hold (duplicate keys, NaN/Infinity, integers too long to read);
`explain_json()` then re-reads that one record slowly to say what and where.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "EXPLAIN_JSON",
    "MAX_NUMBER_DIGITS",
    "STRICT_JSON",
    "ImportLimits",
    "JsonProblem",
    "JsonRefused",
    "exceeds_depth",
    "explain_json",
    "find_problem",
    "human_bytes",
    "json_type_name",
    "may_hold_surrogate",
    "show",
]

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class ImportLimits:
    """Upper bounds for one import; defaults suit a team's training data on one worker."""

    max_file_bytes: int = 2 * GiB
    """Size of the uploaded file (a zip counts as its compressed size)."""
    max_rows: int = 5_000_000
    """Data records in the file."""
    max_columns: int = 1_000
    """Columns in a CSV header, or keys in one JSON record."""
    max_line_chars: int = 4 * MiB
    """Characters in one physical line (and in one JSON array element)."""
    max_cell_chars: int = 1 * MiB
    """Characters in one mapped cell (one text value of a record)."""
    max_json_depth: int = 32
    """Nesting of arrays and objects in one JSON record."""
    max_zip_members: int = 100_000
    """Entries in a zip archive, folders included."""
    max_uncompressed_bytes: int = 4 * GiB
    """Total size of a zip's contents once decompressed (counted while reading, not trusted)."""
    max_member_bytes: int = 64 * MiB
    """Size of one decompressed zip member (one image or caption file)."""
    max_compression_ratio: float = 100.0
    """Uncompressed / compressed size of one zip member."""
    max_image_pixels: int = 89_478_485
    """Width x height of one image (Pillow's own default MAX_IMAGE_PIXELS)."""
    max_errors: int = 100
    """Errors kept for the report; the rest are only counted."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ImportLimits.{f.name} must be a positive number, not {value!r}")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (binary multiples, short units users read)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            if unit == "bytes":
                return f"{int(n):,} bytes"
            return f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def exceeds_depth(text: str, max_depth: int, start: int = 0, end: int | None = None) -> bool:
    """Whether a JSON text nests arrays/objects deeper than `max_depth` (checked without parsing).

    Counting brackets is C-speed and settles almost every record; only texts with more brackets
    than the limit are walked, strings removed first.
    """
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= max_depth:
        return False
    depth = 0
    for m in _BRACKETS.finditer(_JSON_STRING.sub("", text[start:end])):
        if m.group(0) in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


DEFAULT_LIMITS = ImportLimits()


# --------------------------------------------------------------------------- strict JSON

MAX_NUMBER_DIGITS = 4300
"""Digits in one JSON integer: Python's own default limit, refused with a message, not a crash."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSHOWN = re.compile("[\ud800-\udfff\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class JsonRefused(ValueError):
    """Raised by `STRICT_JSON` for valid-looking JSON a dataset cannot hold; `explain_json` says why."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise JsonRefused("duplicate key")
    return obj


def _constant(name: str) -> Any:
    raise JsonRefused(name)


# The pairs hook costs a few percent of a JSONL import; the C scanner calls parse_constant only
# for NaN and Infinity, and over-long integers already raise ValueError in it (int()). There is no
# parse_float hook: one Python call per float slows a file of embeddings by a third, and a float
# too large (1e999 reads as inf) is valid JSON that no text role accepts anyway (see _text).
STRICT_JSON = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


class _Bad:
    """A value the explaining decoder met and the strict one refuses: what is wrong with it."""

    __slots__ = ("code", "what")

    def __init__(self, what: str, code: str) -> None:
        self.what = what
        self.code = code


class _Duplicated(dict[str, Any]):
    """An object with a repeated key (`key`, the first one), as the explaining decoder read it."""

    key: str = ""


def _mark_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    marked = _Duplicated(pairs)
    for key, _ in pairs:  # the first repeated key, in document order
        if key in seen:
            marked.key = key
            break
        seen.add(key)
    return marked


def _mark_constant(name: str) -> _Bad:
    return _Bad(f"is {name}, which JSON does not allow (write a number, or null)", "not_finite")


def _mark_int(text: str) -> int | _Bad:
    digits = len(text.lstrip("-"))
    if digits <= MAX_NUMBER_DIGITS:
        try:
            return int(text)
        except ValueError:  # the process runs with a lower int limit
            pass
    return _Bad(
        f"is a number with {digits:,} digits; the limit is {MAX_NUMBER_DIGITS:,}",
        "number_too_big",
    )


# Reads what STRICT_JSON refuses, marking it in place so `find_problem` can say where it is.
EXPLAIN_JSON = json.JSONDecoder(
    object_pairs_hook=_mark_pairs,
    parse_constant=_mark_constant,
    parse_int=_mark_int,
)


def _clip(text: str, n: int = 24) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def show(text: str, n: int = 60) -> str:
    """A key or value as a message may quote it: lone surrogates and control characters escaped
    (the first cannot be encoded for a page, the others garble it or a terminal), long text cut."""
    text = _clip(text, n)
    return _UNSHOWN.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


@dataclass(frozen=True)
class JsonProblem:
    """What is wrong inside one JSON record and where: `path` holds its keys and 0-based indexes."""

    path: tuple[str | int, ...]
    what: str  # a predicate ("is NaN, ...") or, starting with ":", a statement
    code: str

    def column_reason(self) -> tuple[str | None, str]:
        """(the record's top-level key, the rest of the place and what): for DatasetError."""
        if self.path and isinstance(self.path[0], str):
            return show(self.path[0]), self.reason(1)
        reason = self.reason(0)
        return None, reason[2:] if reason.startswith((", ", ": ")) else reason

    def reason(self, skip: int) -> str:
        """What, after the place inside the record past its first `skip` steps."""
        tail = "".join(
            f", item {p + 1}" if isinstance(p, int) else f', key "{show(p)}"'
            for p in self.path[skip:]
        )
        if not tail or self.what.startswith(":"):
            return tail + self.what
        return f"{tail} {self.what}"


def json_type_name(value: Any) -> str:
    """`an array`, `a string`, `a number`, `null`: a parsed JSON value's kind as a message names
    it (never a Python class name such as `list`)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def may_hold_surrogate(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether JSON text has a \\uD800-\\uDFFF escape: only then can a parsed string hold a lone
    surrogate (a pair written as two escapes is joined by the parser, and is fine)."""
    end = len(text) if end is None else end
    if text.find("\\u", start, end) < 0:
        return False
    return _SURROGATE_ESCAPE.search(text, start, end) is not None


def _surrogate_what(text: str) -> str:
    bad = _SURROGATE.search(text)
    assert bad is not None
    return f": a lone UTF-16 surrogate \\u{ord(bad.group(0)):04x} is not valid Unicode"


def find_problem(value: Any) -> JsonProblem | None:
    """The first problem in a parsed record, in document order: a value the explaining decoder
    marked, a repeated key, or a lone surrogate in a string or a key. Walks without recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return JsonProblem(path, _surrogate_what(item), "bad_unicode")
        elif isinstance(item, dict):
            if isinstance(item, _Duplicated):
                return JsonProblem(
                    (*path, item.key),
                    "appears twice in one object (a key may appear only once)",
                    "duplicate_key",
                )
            for key in item:
                if _SURROGATE.search(key):
                    what = _surrogate_what(key).replace(" is not", " in the name is not", 1)
                    return JsonProblem((*path, key), what, "bad_unicode")
            stack.extend((v, (*path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, _Bad):
            return JsonProblem(path, item.what, item.code)
    return None


def explain_json(text: str, start: int = 0) -> JsonProblem | None:
    """Why `STRICT_JSON` refused the JSON value at `start` (None if it did not; raises
    JSONDecodeError for text that is not JSON at all)."""
    value, _ = EXPLAIN_JSON.raw_decode(text, start)
    return find_problem(value)
