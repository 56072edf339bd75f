"""A version's rows through the project's moderation rules, once, as the version is made.

The report counts; it decides nothing. A version with flagged rows in a project that requires
approval stays pending like any other, and its reviewers see the counts when they decide.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from apps.moderation.services import scan_rows

# Canonical fields that hold no text to check: a file name inside the version's images folder.
NOT_TEXT = frozenset({"image"})


def scan_columns(record: dict[str, Any]) -> dict[str, str]:
    """A canonical record as column -> text for the rules: one column per text field, and per
    chat message ("messages[2] assistant"), so an example says where the hit is."""
    columns: dict[str, str] = {}
    for key, value in record.items():
        if key in NOT_TEXT:
            continue
        if isinstance(value, str):
            columns[key] = value
        elif isinstance(value, list):
            for index, message in enumerate(value, start=1):
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    role = str(message.get("role") or "")
                    columns[f"{key}[{index}] {role}".rstrip()] = message["content"]
    return columns


def _records(canonical_path: str | os.PathLike[str]) -> Iterator[dict[str, str]]:
    from workers.data.canonical import iter_rows

    for record in iter_rows(canonical_path):
        yield scan_columns(record)


def moderation_report(*, project_id: int, canonical_path: str | os.PathLike[str]) -> dict:
    """scan_rows' report over every row of a canonical file (row numbers 1-based, as on the
    version page): rule-set version, rows flagged, by category and severity, first examples."""
    return scan_rows(project_id=project_id, rows=_records(canonical_path))
