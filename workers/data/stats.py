"""Per-version statistics over canonical JSONL, streamed: rows, exact duplicates, lengths, languages.

Memory: 8 bytes per row for duplicate detection (a sorted array of 64-bit record hashes) and 4 bytes
per row for lengths (numpy arrays, not Python objects); everything else is constant.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from array import array
from collections.abc import Callable
from typing import Any

from workers.data.canonical import SCHEMAS, record_text

__all__ = ["compute", "language_of"]

BATCH = 512  # texts per tokenizer call: fast tokenizers parallelise a batch
_CJK_CHARS = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
)
_LATIN_CHARS = "A-Za-z\u00c0-\u024f"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_LATIN_WORD = re.compile(f"[{_LATIN_CHARS}]+")
_OTHER_WORD = re.compile(f"[^\\W\\d_{_LATIN_CHARS}{_CJK_CHARS}]+")


def _runs(pattern: re.Pattern[str], text: str) -> int:
    return sum(1 for _ in pattern.finditer(text))


def language_of(text: str) -> str:
    """ "cjk", "latin" or "other": the script most of the text is in, by character classes.

    A CJK character counts as much as a word in another script (a run of its letters), so
    "请问 blood pressure 高怎么办" is CJK and "what does 高 mean here" is Latin.
    """
    cjk = len(text) - len(_CJK.sub("", text))
    latin = _runs(_LATIN_WORD, text)
    other = _runs(_OTHER_WORD, text)
    if not (cjk or latin or other):
        return "other"
    if cjk >= latin and cjk >= other:
        return "cjk"
    return "latin" if latin >= other else "other"


def _token_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Lengths in tokens for a batch, from any transformers-like tokenizer (call or encode)."""

    def by_call(texts: list[str]) -> list[int]:
        out = tokenizer(texts, add_special_tokens=False)
        ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
        return [len(x) for x in ids]

    def by_encode(texts: list[str]) -> list[int]:
        return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def by_encode_plain(texts: list[str]) -> list[int]:
        return [len(tokenizer.encode(t)) for t in texts]

    if callable(tokenizer):
        try:
            by_call(["probe"])
            return by_call
        except Exception:  # noqa: BLE001 - not every callable takes a batch and these keywords
            pass
    if hasattr(tokenizer, "encode"):
        try:
            by_encode(["probe"])
            return by_encode
        except TypeError:
            return by_encode_plain
    raise TypeError("tokenizer must be callable or have an encode() method")


def _nice_width(x: float, parts: int) -> int:
    """A round bucket width (1, 2, 2.5, 5 × 10^k) so that `parts` buckets cover [0, x]."""
    raw = max(x / parts, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= raw:
            return max(int(math.ceil(step * magnitude)), 1)
    return int(10 * magnitude)  # pragma: no cover


def _length_stats(lengths: array, buckets: int) -> dict[str, Any]:
    """Mean, min, max, p50, p95 and a histogram whose last bucket holds the long tail (> p99)."""
    import numpy as np

    if not lengths:
        return {"mean": 0, "min": 0, "max": 0, "p50": 0, "p95": 0, "total": 0, "histogram": []}
    arr = np.frombuffer(lengths, dtype=np.uint32)
    p50, p95, p99 = (int(v) for v in np.percentile(arr, [50, 95, 99], method="nearest"))
    longest = int(arr.max())
    shortest = int(arr.min())
    width = _nice_width(max(p99 - shortest, 1), buckets - 1)
    start = shortest // width * width
    index = np.minimum((arr - start) // width, buckets - 1)
    counts = np.bincount(index, minlength=buckets)
    histogram = []
    for i in range(buckets):
        lo, hi = start + i * width, start + (i + 1) * width - 1
        if i == buckets - 1:
            hi = max(hi, longest)
        histogram.append({"min": lo, "max": hi, "count": int(counts[i])})
    while histogram and histogram[-1]["count"] == 0:
        histogram.pop()
    histogram[-1]["max"] = max(histogram[-1]["max"], longest)
    return {
        "mean": round(float(arr.mean()), 2),
        "min": shortest,
        "max": longest,
        "p50": p50,
        "p95": p95,
        "total": int(arr.sum(dtype=np.uint64)),
        "histogram": histogram,
    }


def _duplicates(hashes: array) -> int:
    """Rows that repeat an earlier row exactly."""
    import numpy as np

    if len(hashes) < 2:
        return 0
    arr = np.sort(np.frombuffer(hashes, dtype=np.uint64))
    return int(np.count_nonzero(arr[1:] == arr[:-1]))


def compute(
    canonical_path: str | os.PathLike[str],
    schema: str,
    tokenizer: Any = None,
    *,
    buckets: int = 16,
) -> dict[str, Any]:
    """Rows, exact duplicates, a length histogram (tokens with a tokenizer, else characters),
    language mix (share of rows mostly CJK / Latin / other) and per-field lengths in characters."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}")
    if not 10 <= buckets <= 20:
        raise ValueError("buckets must be between 10 and 20")
    roles = [r for r in SCHEMAS[schema].roles if r != "image"]
    counter = _token_counter(tokenizer) if tokenizer is not None else None
    hashes = array("Q")
    lengths = array("I")
    languages = {"cjk": 0, "latin": 0, "other": 0}
    field_sum = dict.fromkeys(roles, 0)
    field_max = dict.fromkeys(roles, 0)
    turns = 0
    rows = 0
    pending: list[str] = []

    def flush() -> None:
        if pending:
            lengths.extend(counter(pending))  # type: ignore[misc]
            pending.clear()

    with open(canonical_path, "rb") as f:
        for line in f:
            rows += 1
            hashes.append(int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big"))
            record = json.loads(line)
            text = record_text(record)
            languages[language_of(text)] += 1
            for role in roles:
                value = record.get(role)
                if isinstance(value, list):
                    turns += len(value)
                    n = sum(len(m.get("content", "")) for m in value)
                else:
                    n = len(value) if isinstance(value, str) else 0
                field_sum[role] += n
                if n > field_max[role]:
                    field_max[role] = n
            if counter is None:
                lengths.append(len(text))
            else:
                pending.append(text)
                if len(pending) >= BATCH:
                    flush()
    flush()
    stats: dict[str, Any] = {
        "rows": rows,
        "duplicates": _duplicates(hashes),
        "length": {
            "unit": "tokens" if counter is not None else "chars",
            **_length_stats(lengths, buckets),
        },
        "languages": {
            k: {"rows": v, "share": round(v / rows, 4) if rows else 0.0}
            for k, v in languages.items()
        },
        "fields": {
            role: {
                "mean_chars": round(field_sum[role] / rows, 2) if rows else 0,
                "max_chars": field_max[role],
            }
            for role in roles
        },
    }
    if schema == "chat":
        stats["mean_turns"] = round(turns / rows, 2) if rows else 0
    return stats
