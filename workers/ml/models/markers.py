"""The completion marker that builders and converters write into the folders they publish."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "read_marker", "write_marker"]

MARKER = "atelier-model.json"


def write_marker(folder: Path, **info: Any) -> None:
    """Write `info` as the folder's marker (sorted JSON): what was built, from what."""
    (folder / MARKER).write_text(json.dumps(info, sort_keys=True, indent=1) + "\n")


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The folder's marker, or None when it has none (or an unreadable one)."""
    path = Path(folder) / MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
