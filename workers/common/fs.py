"""Folders that appear whole or not at all, and inter-process locks: one implementation for
every builder (built-in models, GGUF conversions, the digits demo, prepared model folders)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["file_lock", "publish_folder", "temp_sibling"]


def temp_sibling(target: Path) -> Path:
    """A new empty folder beside `target` (same filesystem, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def publish_folder(
    tmp: Path, target: Path, *, marker: dict[str, Any] | None = None, marker_name: str = ""
) -> None:
    """Rename a finished temp folder into place; with `marker`, write it (as JSON, with
    "complete": true) into the folder first, so readers can tell a whole folder from a torn one.
    An empty or incomplete leftover at `target` (a build that died) is replaced."""
    if marker is not None:
        payload = json.dumps({**marker, "complete": True}, indent=1, sort_keys=True)
        (tmp / marker_name).write_text(payload + "\n")
    if target.is_dir():
        if any(target.iterdir()):
            shutil.rmtree(target)
        else:
            target.rmdir()
    os.rename(tmp, target)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (flock) held while the body runs: one process builds a
    folder, the others wait and then reuse it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
