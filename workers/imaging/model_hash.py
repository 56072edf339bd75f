"""The infotext's ``Model hash``: A1111's short hash of the checkpoint, computed once per file.

A1111 writes the first 10 hex digits of the SHA-256 of the whole checkpoint file (its
``shorthash``, the "AutoV2" hash model sites list), and looks a pasted ``Model hash`` up among
its own checkpoints by it. For a single ``.safetensors`` checkpoint this module gives exactly
that. A diffusers folder has no A1111 counterpart (A1111 loads single files only, and any
conversion to one changes the bytes): its hash is the SHA-256 of its ``.safetensors`` files
concatenated in path order, the rule the platform already uses for image assets
(:func:`workers.imaging.assets.file_sha256`). It is stable for the folder, and reproducible with
``cat $(find FOLDER -name '*.safetensors' | LC_ALL=C sort) | sha256sum``, but no A1111 install
will match it.

Hashing a 2-7 GB checkpoint reads it whole (seconds), so a result is kept per file signature
(path, size, modification time): in memory for the process, and in an optional JSON cache file
shared by the workers of one machine, as A1111 keeps its ``cache.json``. A file that changes
gets a new signature and is hashed again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from workers.common.fs import file_lock
from workers.imaging.assets import file_sha256

__all__ = ["SHORT_HASH_LENGTH", "model_hash", "model_sha256"]

SHORT_HASH_LENGTH = 10  # A1111's shorthash
_memo: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def _hashed_files(source: Path) -> list[Path]:
    return [source] if source.is_file() else sorted(source.rglob("*.safetensors"))


def _signature(source: Path) -> tuple:
    """What identifies the bytes without reading them: each hashed file's path, size, mtime."""
    files = _hashed_files(source)
    if not files:
        raise FileNotFoundError(f"{source}: no .safetensors file to hash")
    return tuple((str(f), st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),))


def _read_cache(cache_file: Path) -> dict:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached(cache_file: Path | None, key: str, signature: tuple) -> str | None:
    if cache_file is None:
        return None
    entry = _read_cache(cache_file).get(key)
    if isinstance(entry, dict) and entry.get("signature") == json.loads(json.dumps(signature)):
        sha = entry.get("sha256")
        return sha if isinstance(sha, str) and len(sha) == 64 else None
    return None


def _remember(cache_file: Path, key: str, signature: tuple, sha: str) -> None:
    # Several workers of one machine share the file: read-modify-write under a lock, and
    # replace the file whole so a reader never sees half of it.
    with file_lock(cache_file.with_name(f".{cache_file.name}.lock")):
        data = _read_cache(cache_file)
        data[key] = {"signature": signature, "sha256": sha}
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, cache_file)


def model_sha256(
    path: str | os.PathLike[str], *, cache_file: str | os.PathLike[str] | None = None
) -> str:
    """The full SHA-256 behind :func:`model_hash`, read once per file signature (see module doc)."""
    source = Path(path).resolve()
    signature = _signature(source)
    with _memo_lock:
        found = _memo.get(signature)
    if found is not None:
        return found
    cache = Path(cache_file) if cache_file is not None else None
    key = str(source)
    sha = _cached(cache, key, signature)
    if sha is None:
        sha = file_sha256(source)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            _remember(cache, key, signature, sha)
    with _memo_lock:
        _memo[signature] = sha
    return sha


def model_hash(
    path: str | os.PathLike[str], *, cache_file: str | os.PathLike[str] | None = None
) -> str:
    """The ``Model hash`` A1111 writes for the checkpoint at ``path``: 10 hex digits."""
    return model_sha256(path, cache_file=cache_file)[:SHORT_HASH_LENGTH]
