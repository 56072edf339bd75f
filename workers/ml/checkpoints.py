"""Resumable-work checkpoints: temp folder, completion marker last, atomic rename; RNG state."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER_NAME",
    "Checkpoint",
    "CheckpointStore",
    "hash_and_sync_files",
    "is_complete",
    "read_rng_state",
    "restore_rng_state",
    "rng_state",
    "write_rng_state",
]

MARKER_NAME = "COMPLETE"
STATE_NAME = "state.json"
RNG_JSON_NAME = "rng.json"
RNG_TENSORS_NAME = "rng.safetensors"

# Everything that is not a finished checkpoint starts with this prefix, so latest() never sees
# it and prune() can sweep it: folders being written and folders being replaced.
_TEMP_PREFIX = ".tmp-"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Checkpoint:
    """A complete, verified checkpoint folder."""

    step: int
    path: Path


class CheckpointStore:
    """Checkpoint folders `root/step-00000042`, each complete only with a verified COMPLETE marker.

    One writer per store (the job's lease holder); readers may run at any time.
    `before_complete` runs after the files are written and before the marker: the job runtime
    passes its reporter's flush, so a checkpoint is complete only once every event reported up
    to its step is kept (a resumed attempt never re-reports those steps).
    """

    def __init__(
        self, root: Path | str, *, before_complete: Callable[[], None] | None = None
    ) -> None:
        self.root = Path(root)
        self.before_complete = before_complete

    def path_for(self, step: int) -> Path:
        """The folder a complete checkpoint of `step` lives in."""
        return self.root / f"step-{step:08d}"

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write a checkpoint with `write(folder)`, mark it complete and publish it atomically."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}step-{step:08d}-", dir=self.root))
        try:
            write(tmp)
            if (tmp / MARKER_NAME).exists():
                raise ValueError(f"write() must not create {MARKER_NAME}: it is written last")
            files = hash_and_sync_files(tmp)
            if self.before_complete is not None:
                self.before_complete()
            marker = {"step": step, "files": files}
            with open(tmp / MARKER_NAME, "w", encoding="utf-8") as f:
                json.dump(marker, f, sort_keys=True, indent=1)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(tmp)
            final = self.path_for(step)
            if final.exists():
                # A retry of a step whose earlier attempt was already published. rename() cannot
                # replace a non-empty folder, so move the old one aside first; a crash between the
                # two renames loses only this step, and latest() falls back to the previous one.
                old = Path(
                    tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}replaced-{step:08d}-", dir=self.root)
                )
                os.rename(final, old / "old")
                os.rename(tmp, final)
                _fsync_dir(self.root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
                _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def checkpoints(self) -> list[Checkpoint]:
        """Every complete, verified checkpoint, newest first."""
        return [cp for cp in self._step_dirs() if is_complete(cp)]

    def latest(self) -> Checkpoint | None:
        """The newest complete, verified checkpoint, or None."""
        for cp in self._step_dirs():
            if is_complete(cp):
                return cp
        return None

    def prune(self, keep: int = 2) -> None:
        """Keep the `keep` newest complete checkpoints; remove older ones, invalid ones and temp folders."""
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if not self.root.is_dir():
            return
        kept = 0
        for cp in self._step_dirs():
            if kept < keep and is_complete(cp):
                kept += 1
                continue
            shutil.rmtree(cp.path, ignore_errors=True)
        for entry in self.root.iterdir():
            if entry.name.startswith(_TEMP_PREFIX) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)

    def save_json_state(self, step: int, state: dict[str, Any]) -> Path:
        """Save a small JSON-serializable state as the checkpoint of `step`."""
        payload = json.dumps(state, sort_keys=True)

        def write(folder: Path) -> None:
            (folder / STATE_NAME).write_text(payload, encoding="utf-8")

        return self.save(step, write)

    def load_json_state(self) -> tuple[int, dict[str, Any]] | None:
        """The (step, state) of the newest complete checkpoint holding a JSON state, or None."""
        for cp in self.checkpoints():
            path = cp.path / STATE_NAME
            if path.is_file():
                return cp.step, json.loads(path.read_text(encoding="utf-8"))
        return None

    def _step_dirs(self) -> list[Checkpoint]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _STEP_DIR.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink():
                found.append(Checkpoint(step=int(match.group(1)), path=entry))
        return sorted(found, key=lambda cp: cp.step, reverse=True)


def _relative_files(folder: Path) -> list[tuple[str, Path]]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ValueError(f"checkpoints hold regular files only, found a link: {path}")
        for name in filenames:
            path = Path(dirpath) / name
            files.append((path.relative_to(folder).as_posix(), path))
    return sorted(files)


def hash_and_sync_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder` (relative POSIX path -> hex), each file and folder
    fsynced: what a completion marker lists."""
    hashes = {}
    for rel, path in _relative_files(folder):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
            os.fsync(f.fileno())
        hashes[rel] = digest.hexdigest()
    for dirpath, _, _ in os.walk(folder):
        _fsync_dir(Path(dirpath))
    return hashes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(cp: Checkpoint) -> bool:
    """True when the marker is readable, names this step, and every listed file matches its hash."""
    try:
        marker = json.loads((cp.path / MARKER_NAME).read_text(encoding="utf-8"))
        if not isinstance(marker, dict) or marker.get("step") != cp.step:
            return False
        files = marker.get("files")
        if not isinstance(files, dict):
            return False
        for rel, expected in files.items():
            path = cp.path / rel
            # Reject names that would leave the folder (a corrupt or hostile marker).
            if ".." in Path(rel).parts or Path(rel).is_absolute() or rel == MARKER_NAME:
                return False
            if not path.is_file() or _sha256(path) != expected:
                return False
        return True
    except (OSError, ValueError):
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- RNG state ---------------------------------------------------------------------------------
# Stored as JSON (python, numpy) and safetensors (torch), never pickle, so that loading a
# checkpoint cannot execute code.


def rng_state() -> dict[str, Any]:
    """Capture python `random`, numpy's global RNG (if importable) and torch CPU/CUDA RNG states."""
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss_next]}
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
        state["numpy"] = {
            "bit_generator": name,
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        }
    try:
        import torch
    except ImportError:
        pass
    else:
        state["torch_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            state["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by rng_state() (or read by read_rng_state())."""
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
    if "numpy" in state:
        import numpy as np

        saved = state["numpy"]
        np.random.set_state(
            (
                saved["bit_generator"],
                np.asarray(saved["keys"], dtype=np.uint32),
                saved["pos"],
                saved["has_gauss"],
                saved["cached_gaussian"],
            )
        )
    if "torch_cpu" in state or "torch_cuda" in state:
        import torch

        if "torch_cpu" in state:
            torch.set_rng_state(state["torch_cpu"])
        if state.get("torch_cuda") and torch.cuda.is_available():
            # A job resumed on a machine with fewer GPUs restores the devices it has.
            for index, device_state in enumerate(state["torch_cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(device_state, index)


def write_rng_state(folder: Path | str, state: dict[str, Any] | None = None) -> None:
    """Write an RNG state (default: the current one) into a checkpoint folder as JSON + safetensors."""
    folder = Path(folder)
    state = rng_state() if state is None else state
    plain = {key: state[key] for key in ("python", "numpy") if key in state}
    (folder / RNG_JSON_NAME).write_text(json.dumps(plain), encoding="utf-8")
    tensors = {}
    if "torch_cpu" in state:
        tensors["torch_cpu"] = state["torch_cpu"]
    for index, device_state in enumerate(state.get("torch_cuda") or []):
        tensors[f"torch_cuda.{index}"] = device_state.cpu()
    if tensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / RNG_TENSORS_NAME))


def read_rng_state(folder: Path | str) -> dict[str, Any]:
    """Read an RNG state written by write_rng_state(), for restore_rng_state()."""
    folder = Path(folder)
    state: dict[str, Any] = json.loads((folder / RNG_JSON_NAME).read_text(encoding="utf-8"))
    tensors_path = folder / RNG_TENSORS_NAME
    if tensors_path.is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(tensors_path))
        if "torch_cpu" in tensors:
            state["torch_cpu"] = tensors["torch_cpu"]
        cuda = sorted(
            (int(key.split(".", 1)[1]), value)
            for key, value in tensors.items()
            if key.startswith("torch_cuda.")
        )
        if cuda:
            state["torch_cuda"] = [value for _, value in cuda]
    return state
