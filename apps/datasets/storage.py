"""Where dataset files live. Uploads are staged outside MEDIA_ROOT, so a failed import leaves
the media folder untouched; a version's files move into media only after they validated."""

from __future__ import annotations

import json
import secrets
import shutil
import time
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
