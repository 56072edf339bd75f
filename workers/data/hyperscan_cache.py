"""Compiled Hyperscan databases kept on disk: a process loads in a millisecond what takes seconds
to compile (the PII triggers: 5-7 s of CPU on the machines here, paid by every worker process
and, before this, by every thread that scanned).

A database is stored under a name derived from everything that decides its bytes: the
hyperscan version, the mode, the expressions, their ids and flags, and the CPU's feature flags
(Hyperscan compiles for the host CPU). A file is written beside its final name and renamed, and
carries the SHA-256 of its payload; one that is truncated, altered, or refused by Hyperscan (a
version or platform mismatch) is compiled again and replaced. Where the folder cannot be written
(a read-only home), the database is compiled as before and nothing else changes.

Every change to the patterns makes a new file (7.5 MB for the PII triggers). Loading a file
touches it; storing one deletes the files of the same name not touched for `STALE_DAYS` (other
versions of the patterns; another CPU sharing the folder keeps its own by using it).

The folder is `ATELIER_CACHE_DIR`, else `cache/` under `ATELIER_VAR_DIR` (the deployment's shared
state folder), else `$XDG_CACHE_HOME/atelier` (`~/.cache/atelier`). Pure: no Django.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"atelier-hsdb-1\n"
STALE_DAYS = 14


def cache_dir() -> Path:
    if explicit := os.environ.get("ATELIER_CACHE_DIR"):
        return Path(explicit)
    if var := os.environ.get("ATELIER_VAR_DIR"):
        return Path(var) / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "atelier"


def _cpu_features() -> str:
    """The CPU's feature flags (Linux), else the processor's name: part of a database's key."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def database_key(hs: Any, mode: int, expressions: list[bytes], flags: list[int]) -> str:
    material = json.dumps(
        [
            getattr(hs, "__version__", "?"),
            mode,
            [e.hex() for e in expressions],
            list(flags),
            _cpu_features(),
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()


def block_database(hs: Any, name: str, expressions: list[bytes], flags: list[int]) -> Any:
    """A block-mode database of `expressions` (ids 0..n-1, `flags` each): read from the cache,
    or compiled and stored there. Use it with a `hs.Scratch` per thread."""
    mode = hs.HS_MODE_BLOCK
    path = cache_dir() / f"{name}-{database_key(hs, mode, expressions, flags)[:40]}.hsdb"
    db = _load(hs, path, mode)
    if db is not None:
        return db
    db = hs.Database(mode=mode)
    db.compile(
        expressions=expressions,
        ids=list(range(len(expressions))),
        elements=len(expressions),
        flags=flags,
    )
    _store(hs, path, db)
    return db


def _load(hs: Any, path: Path, mode: int) -> Any | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.info("compiled pattern cache %s unreadable (%s): compiling", path, exc)
        return None
    head = len(MAGIC) + 32
    payload = data[head:]
    if data[: len(MAGIC)] != MAGIC or data[len(MAGIC) : head] != hashlib.sha256(payload).digest():
        log.warning("compiled pattern cache %s is damaged: compiling it again", path)
        return None
    try:
        db = hs.loadb(payload, mode)
    except hs.error as exc:  # another hyperscan build or CPU: compile for this one
        log.info("compiled pattern cache %s refused by hyperscan (%r): compiling", path, exc)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # in use: not stale
    return db


def _store(hs: Any, path: Path, db: Any) -> None:
    payload = hs.dumpb(db)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("compiled pattern cache %s not written (%s)", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return
    _prune(path)


def _prune(path: Path) -> None:
    """Delete the other files of `path`'s name (`<name>-<key>.hsdb`) unused for STALE_DAYS."""
    name = path.name.rsplit("-", 1)[0]
    cutoff = time.time() - STALE_DAYS * 86400
    for other in path.parent.glob(f"{name}-*.hsdb"):
        if other == path or other.name.rsplit("-", 1)[0] != name:
            continue  # this file, or another name's ("pii-x-<key>" is not a version of "pii")
        with contextlib.suppress(OSError):
            if other.stat().st_mtime < cutoff:
                other.unlink()
