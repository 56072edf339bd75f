"""Import limits: every one is checked while streaming and has its own error message."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

__all__ = ["DEFAULT_LIMITS", "ImportLimits", "exceeds_depth", "human_bytes"]

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
