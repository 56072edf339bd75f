"""Hugging Face hub ids: used only when one is configured and the network is allowed
(`HF_HUB_OFFLINE` unset or 0); offline, `resolve_hub_id` refuses without touching the network."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from workers.ml.models.errors import ModelRefused
from workers.ml.models.inspection import inspect_folder

__all__ = ["HUB_ALLOW_PATTERNS", "hub_allowed", "resolve_hub_id"]

_TRUE = {"1", "true", "yes", "on"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
HUB_ALLOW_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.jinja",
    "*.md",
    "LICENSE*",
)


def hub_allowed() -> bool:
    """False when the platform runs offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set)."""
    return not any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_hub_id(
    hub_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """A local folder for a hub model id, safetensors and tokenizer files only, then inspected.

    Offline, only an already-cached snapshot is used (no network call); without one this
    refuses clearly. Pickle weights are never downloaded (allow_patterns).
    """
    if not _HUB_ID.match(hub_id or ""):
        raise ModelRefused(f"{hub_id!r}: not a hub model id (expected owner/name)")
    from huggingface_hub import snapshot_download

    online = hub_allowed()
    kwargs: dict[str, Any] = {
        "repo_id": hub_id,
        "revision": revision,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "allow_patterns": list(HUB_ALLOW_PATTERNS),
    }
    try:
        folder = Path(snapshot_download(local_files_only=not online, **kwargs))
    except Exception as exc:
        if not online:
            raise ModelRefused(
                f"{hub_id}: the hub is off for this platform (HF_HUB_OFFLINE=1) and the model "
                "is not in the local cache; register a local folder or a GGUF file instead"
            ) from exc
        raise ModelRefused(f"{hub_id}: download failed ({exc})") from exc
    inspect_folder(folder)
    return folder
