"""A parent's PII report carried to a child made of some of its rows, copied byte for byte (a
dedup's "keep one"): the child holds nothing its parent's scan did not see, so a reviewer may
decide on it without scanning it again.

The child's report is the parent's restricted to the kept rows and renumbered. A scan report
keeps counts per type, not per row, so the kept rows that the parent's scan named are scanned
again (only those, usually few) for exact counts and examples; every other kept row had no
finding. When the parent's report does not name every row it found (a type with more rows
than a report lists, a report without row lists) the restriction cannot be exact, and the
child is scanned in full instead."""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from apps.datasets.models import DatasetVersion

Progress = Callable[[int, int], None]


def _named_rows(report: Any) -> set[int] | None:
    """Every row the report found personal data in, or None when it does not name them all."""
    if not isinstance(report, dict):
        return None
    types = report.get("types")
    if not isinstance(types, dict):
        # A report without row lists is complete only when it found nothing at all.
        counts = report.get("counts")
        return set() if isinstance(counts, dict) and not any(counts.values()) else None
    rows: set[int] = set()
    for entry in types.values():
        listed = entry.get("rows") if isinstance(entry, dict) else None
        if not isinstance(listed, list) or entry.get("rows_truncated"):
            return None
        if len(listed) < int(entry.get("rows_total") or 0):
            return None
        rows.update(int(r) for r in listed)
    return rows


def child_row(row: int, dropped_sorted: list[int]) -> int | None:
    """The row number in the child of the parent's `row`, or None if the child dropped it."""
    at = bisect_left(dropped_sorted, row)
    if at < len(dropped_sorted) and dropped_sorted[at] == row:
        return None
    return row - at


def _write_rows(child_path: Path, wanted: list[int], out: Path) -> None:
    """The child's lines numbered `wanted` (sorted, 1-based), in order, into `out`."""
    targets = iter(wanted)
    target = next(targets, None)
    with open(child_path, "rb") as src, open(out, "wb") as dst:
        for number, line in enumerate(src, 1):
            if target is None:
                break
            if number == target:
                dst.write(line if line.endswith(b"\n") else line + b"\n")
                target = next(targets, None)


def _renumbered(report: dict[str, Any], numbers: list[int]) -> dict[str, Any]:
    """A scan report of the rows `numbers` (its row k is the child's row numbers[k - 1])."""
    types = {
        name: {**entry, "rows": [numbers[r - 1] for r in entry["rows"]]}
        for name, entry in report["types"].items()
    }
    return {**report, "types": types}


def carried_pii_report(
    *,
    parent: DatasetVersion,
    child_path: Path,
    dropped: Collection[int],
    workdir: Path,
    progress: Progress | None = None,
) -> dict[str, Any] | None:
    """The PII report of a child of `parent` that is `parent` without the rows `dropped` (the
    others copied unchanged, in order), or None when the parent has not been scanned. Marked
    `carried_from` the parent when restricted from its report; a plain scan report otherwise."""
    from workers.data.pii import scan_jsonl

    if parent.pii_report is None:
        return None
    named = _named_rows(parent.pii_report)
    if named is None:
        return scan_jsonl(child_path, progress=progress).to_dict()
    dropped_sorted = sorted(set(dropped))
    kept = sorted(n for n in (child_row(r, dropped_sorted) for r in named) if n is not None)
    subset = workdir / "carried-pii-rows.jsonl"
    _write_rows(child_path, kept, subset)
    report = _renumbered(scan_jsonl(subset, progress=progress).to_dict(), kept)
    subset.unlink(missing_ok=True)
    scanned_at = parent.pii_scanned_at
    report.update(
        rows_scanned=parent.rows - len(dropped_sorted),
        bytes_scanned=os.path.getsize(child_path),
        carried_from={
            "version_id": parent.pk,
            "version": parent.number,
            "scanned_at": scanned_at.isoformat() if scanned_at else None,
            "rows_rechecked": len(kept),
        },
    )
    return report
