"""Secret keys kept in files: created once with mode 0600, read back on every later start.

`make run` keeps its SECRET_KEY and its pseudonym key this way (in var/), so sessions and
pseudonyms survive restarts without a key ever being typed, committed or shared.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_or_create_key(path: Path, *, nbytes: int = 50) -> str:
    """The key stored in `path`; a new random one (mode 0600) if there is none yet."""
    path = Path(path)
    key = _read(path)
    if key:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # a copied or restored file: keep it private
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL + 0600: the key is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(nbytes) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            # A link never replaces a key that another process created meanwhile.
            os.link(tmp, path)
        except FileExistsError:
            if not _read(path):
                os.replace(tmp, path)  # an empty file left by a crash
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
