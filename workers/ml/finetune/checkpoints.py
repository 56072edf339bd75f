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

__all__ = [
    "complete_checkpoints",
    "copy_checkpoint",
    "mark_complete",
    "newest_marked_step",
    "sweep_checkpoints",
]

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


def newest_marked_step(root: str | os.PathLike[str]) -> int | None:
    """The step of the newest `root/checkpoint-N` whose marker names its step, without hashing
    its files (cheap enough for a page; complete_checkpoints is the check before a resume)."""
    root = Path(root)
    if not root.is_dir():
        return None
    steps = []
    for entry in root.iterdir():
        match = _CHECKPOINT_DIR.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            marker = json.loads((entry / MARKER_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(marker, dict) and marker.get("step") == int(match.group(1)):
            steps.append(int(match.group(1)))
    return max(steps, default=None)


@timed("finetune.copy_checkpoint")
def copy_checkpoint(cp: Checkpoint, root: Path) -> Path:
    """Put the complete checkpoint `cp` (another run folder's) into `root` as checkpoint-N.

    Files are hard-linked where the file system allows (checkpoints are never written again once
    complete, and deleting either side leaves the other whole), copied otherwise. The folder is
    built under a tmp- name and renamed, so a crash leaves nothing a resume would take (the next
    sweep removes it).
    """
    root.mkdir(parents=True, exist_ok=True)
    target = root / cp.path.name
    tmp = root / f"tmp-{cp.path.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cp.path, tmp, copy_function=_link_or_copy)
    if target.exists():
        shutil.rmtree(target)
    os.rename(tmp, target)
    return target


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


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
