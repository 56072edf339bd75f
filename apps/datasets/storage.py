"""Where dataset files live. Uploads are staged outside MEDIA_ROOT, so a failed import leaves
the media folder untouched; a version's files move into media only after they validated."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

STAGING_TTL_SECONDS = 24 * 3600


def staging_root() -> Path:
    return Path(settings.VAR_DIR) / "staging"


def uploads_root() -> Path:
    return Path(settings.VAR_DIR) / "uploads"


def version_dir(project_id: int, sha256: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "datasets" / str(int(project_id)) / sha256


def version_relpath(project_id: int, sha256: str) -> str:
    return f"datasets/{int(project_id)}/{sha256}/data.jsonl"


def media_path(relpath: str) -> Path:
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relpath).resolve()
    if root not in path.parents:
        raise ValueError("path escapes the media folder")
    return path


def new_staging_dir() -> Path:
    path = staging_root() / secrets.token_hex(12)
    path.mkdir(parents=True)
    return path


@contextmanager
def staging_dir() -> Iterator[Path]:
    """A new staging folder for the block that makes a version's files; it goes afterwards."""
    path = new_staging_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def installed_version(staged_dir: Path, project_id: int, sha256: str) -> Iterator[Path]:
    """Move validated files into media for the block that records their version. Same content,
    same folder: one already there is kept (the staged copy goes); a folder made here goes
    again if the block fails, so a failed import leaves media as it was."""
    target = version_dir(project_id, sha256)
    created = not target.exists()
    if created:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A rename on the same filesystem, a copy otherwise.
        shutil.move(str(staged_dir), str(target))
    else:
        shutil.rmtree(staged_dir, ignore_errors=True)
    try:
        yield target
    except Exception:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise


@dataclass
class StagedUpload:
    token: str
    path: Path
    filename: str
    size: int
    user_id: int
    project_id: int

    @property
    def file(self) -> Path:
        return self.path / "upload"


def stage_upload(*, uploaded_file, user_id: int, project_id: int) -> StagedUpload:
    """Copy an uploaded file (a Django UploadedFile, streamed in chunks) into var/uploads."""
    cleanup_stale_uploads()
    token = secrets.token_urlsafe(16)
    path = uploads_root() / token
    path.mkdir(parents=True)
    size = 0
    with open(path / "upload", "wb") as out:
        for chunk in uploaded_file.chunks():
            out.write(chunk)
            size += len(chunk)
    name = Path(str(uploaded_file.name)).name[:255] or "upload"
    meta = {
        "filename": name,
        "size": size,
        "user_id": user_id,
        "project_id": project_id,
        "created": time.time(),
    }
    (path / "meta.json").write_text(json.dumps(meta))
    return StagedUpload(
        token=token,
        path=path,
        **{k: meta[k] for k in ("filename", "size", "user_id", "project_id")},
    )


def load_upload(token: str, *, user_id: int, project_id: int) -> StagedUpload | None:
    """A staged upload of this user in this project, or None (no guessing other people's tokens)."""
    if not token or "/" in token or token.startswith("."):
        return None
    path = uploads_root() / token
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("user_id") != user_id or meta.get("project_id") != project_id:
        return None
    return StagedUpload(
        token=token,
        path=path,
        **{k: meta[k] for k in ("filename", "size", "user_id", "project_id")},
    )


def discard_upload(upload: StagedUpload) -> None:
    shutil.rmtree(upload.path, ignore_errors=True)


def cleanup_stale_uploads() -> None:
    root = uploads_root()
    if not root.exists():
        return
    cutoff = time.time() - STAGING_TTL_SECONDS
    for entry in root.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass
