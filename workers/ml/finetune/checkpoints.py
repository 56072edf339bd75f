"""Trainer's checkpoint folders `checkpoint-N`: counted only once their COMPLETE marker is there.

Trainer writes the folder; CheckpointMarker (callbacks.py) then writes the marker (hashes of every
file, fsynced) last, and a sweep keeps the newest complete ones. The marker format is the one of
`workers.ml.checkpoints`, so the same verification applies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from workers.common.timing import timed
from workers.ml.checkpoints import MARKER_NAME, Checkpoint, hash_and_sync_files, is_complete

__all__ = ["complete_checkpoints", "mark_complete", "sweep_checkpoints"]

_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(root: str | os.PathLike[str]) -> list[Checkpoint]:
    """Trainer checkpoint folders `root/checkpoint-N` with a verified marker, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _CHECKPOINT_DIR.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            cp = Checkpoint(step=int(match.group(1)), path=entry)
            if is_complete(cp):
                found.append(cp)
    return sorted(found, key=lambda cp: cp.step, reverse=True)


@timed("finetune.checkpoint_marker")
def mark_complete(folder: Path, step: int) -> None:
    """Write the COMPLETE marker (hashes of every file, fsynced) last into a finished checkpoint."""
    marker = folder / MARKER_NAME
    if marker.exists():
        marker.unlink()
    files = hash_and_sync_files(folder)
    tmp = folder / f".{MARKER_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": files}, f, sort_keys=True, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_checkpoints(root: Path, keep: int) -> None:
    """Keep the `keep` newest complete checkpoints; delete older ones and every incomplete one."""
    complete = complete_checkpoints(root)
    kept = {cp.path.name for cp in complete[:keep]}
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry.name not in kept:
            if _CHECKPOINT_DIR.match(entry.name) or entry.name.startswith("tmp-checkpoint-"):
                shutil.rmtree(entry, ignore_errors=True)
