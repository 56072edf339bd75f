"""`keep_one`: a new canonical JSONL without the duplicates, keeping the first row of each group
and copying every other row byte for byte, in order."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from workers.data.dedup.report import DedupReport

__all__ = ["keep_one", "rows_to_drop"]


def rows_to_drop(groups: Iterable[Sequence[int]]) -> set[int]:
    """The rows that groups of 1-based rows make redundant: overlapping groups are merged, and
    each merged group keeps its smallest row."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for group in groups:
        rows = [int(r) for r in group]
        if any(r < 1 for r in rows):
            raise ValueError("rows are numbered from 1")
        for r in rows[1:]:
            ra, rb = find(rows[0]), find(r)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the root is the smallest row
        if rows:
            find(rows[0])
    return {r for r in parent if find(r) != r}


def keep_one(
    src: str | os.PathLike,
    out: str | os.PathLike,
    report_or_groups: DedupReport | dict | Iterable[Sequence[int]],
) -> tuple[Path, str, int]:
    """Write ``out``: ``src`` without duplicates, keeping the first row of each group.

    ``report_or_groups`` is a :class:`DedupReport`, a full ``to_dict(limit=None)`` of one, or
    groups of 1-based rows. Overlapping groups are merged first. Kept lines are copied byte for
    byte, in order (a missing final newline is added). With a report, ``src`` must still have the
    SHA-256 it was scanned with. Writes atomically; returns ``(out, sha256 of out, rows in out)``.
    """
    src, out = Path(src), Path(out)
    expected_sha = ""
    expected_rows: int | None = None
    if isinstance(report_or_groups, DedupReport):
        groups: Iterable[Sequence[int]] = report_or_groups.groups()
        expected_sha, expected_rows = report_or_groups.source_sha256, report_or_groups.rows
    elif isinstance(report_or_groups, dict):
        if report_or_groups.get("truncated", True):
            raise ValueError(
                "this report dict is truncated: pass to_dict(limit=None) or the report"
            )
        groups = [*report_or_groups["exact_groups"], *report_or_groups["near_groups"]]
        expected_sha = report_or_groups.get("source_sha256", "")
        expected_rows = report_or_groups.get("rows")
    else:
        groups = report_or_groups
    drop = rows_to_drop(groups)
    if out.resolve() == src.resolve():
        raise ValueError("keep_one writes a new version: out must differ from src")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    src_digest, out_digest = hashlib.sha256(), hashlib.sha256()
    kept = row = 0
    try:
        with open(fd, "wb") as dst, src.open("rb") as fh:
            for row, line in enumerate(fh, 1):
                src_digest.update(line)
                if row in drop:
                    continue
                if not line.endswith(b"\n"):
                    line += b"\n"
                dst.write(line)
                out_digest.update(line)
                kept += 1
            dst.flush()
            os.fsync(dst.fileno())
        if drop and max(drop) > row:
            raise ValueError(f"row {max(drop)} is past the end of {src.name} ({row} rows)")
        if expected_sha and src_digest.hexdigest() != expected_sha:
            raise ValueError(f"{src.name} changed since it was scanned for duplicates")
        if expected_rows is not None and expected_rows != row:
            raise ValueError(f"{src.name} has {row} rows, the report {expected_rows}")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out, out_digest.hexdigest(), kept
