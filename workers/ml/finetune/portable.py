"""Adapters that load on any machine: the base model named portably in ``adapter_config.json``.

peft's ``save_pretrained`` writes ``base_model_name_or_path`` as whatever the base was loaded
from: here the absolute path of the worker's model folder (``/srv/atelier/models/...``).
``AutoPeftModelForCausalLM.from_pretrained(adapter)`` and the Hub's model pages read that field,
so a downloaded adapter would point at a folder of the machine that trained it. Published
adapters name their base instead by its portable name: a Hub-style id when the platform knows one
(``card_info["base_model_id"]``), else the model's name in the platform, never a path. A user
who keeps the base under that name (a Hub id, or a folder of that name beside their script)
loads the adapter without editing it; the model card says which base to pass otherwise.

The platform itself always passes the base model explicitly (``PeftModel.from_pretrained(base,
adapter_dir)``), so the field never decides what it loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from workers.ml.finetune.files import write_json

__all__ = ["ADAPTER_CONFIG", "make_adapter_portable", "portable_base_name"]

ADAPTER_CONFIG = "adapter_config.json"


def _is_path(name: str) -> bool:
    return (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or name.startswith(("~", "./", "../"))
        or "\\" in name
    )


def _portable(name: Any) -> str:
    """``name`` without any machine's folders: a path keeps only its last part."""
    text = str(name or "").strip()
    if _is_path(text):
        text = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return text


def portable_base_name(
    card_info: Mapping[str, Any], base_model_dir: str | os.PathLike[str] | None = None
) -> str:
    """The base model's portable name: ``card_info``'s ``base_model_id`` (a Hub-style id),
    else its ``base_model`` (the platform's name for it), else the folder's name."""
    for candidate in (card_info.get("base_model_id"), card_info.get("base_model")):
        name = _portable(candidate)
        if name:
            return name
    if base_model_dir is None:
        raise ValueError("no name for the base model: pass card_info['base_model']")
    return Path(base_model_dir).name


def make_adapter_portable(adapter_dir: str | os.PathLike[str], base_name: str) -> dict[str, Any]:
    """Rewrite the adapter's ``base_model_name_or_path`` to ``base_name``; return the config.

    Only that field changes; the rest of peft's config is kept as written."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    write_json(path, config)
    return config
