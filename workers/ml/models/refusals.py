"""What makes a model folder refused before anything is loaded: too many files, pickle-capable
files (by suffix or content, one policy: workers.common.safety), custom code, unreadable JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from workers.common.safety import NOT_SNIFFED_SUFFIXES, pickle_reason
from workers.ml.models.errors import ModelRefused

__all__ = [
    "MAX_FOLDER_FILES",
    "read_json_object",
    "refuse_custom_code",
    "refuse_pickles",
    "walk_model_files",
]

MAX_FOLDER_FILES = 10_000


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`; ModelRefused naming the file if it is unreadable or not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelRefused(f"{path.name}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelRefused(f"{path.name}: expected a JSON object")
    return data


def walk_model_files(root: Path) -> list[Path]:
    """Every file under root (following links), skipping hidden folders such as .git/.cache."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            files.append(Path(dirpath) / name)
            if len(files) > MAX_FOLDER_FILES:
                raise ModelRefused(
                    f"{root}: more than {MAX_FOLDER_FILES} files; not a model folder"
                )
    return files


def refuse_pickles(folder: Path, files: Iterable[Path]) -> None:
    """ModelRefused naming the first of `files` (under `folder`) that is or may be a pickle."""
    for file in files:
        rel = str(file.relative_to(folder))
        try:
            reason = pickle_reason(file, rel)
            if reason is None and file.suffix.lower() not in NOT_SNIFFED_SUFFIXES:
                file.stat()  # pickle_reason passes over a dangling link: refuse it as unreadable
        except OSError as exc:
            raise ModelRefused(f"{rel}: cannot be read ({exc})") from exc
        if reason:
            raise ModelRefused(reason)


def _asks_for_code(data: Any, depth: int = 0) -> bool:
    if not isinstance(data, dict) or depth > 3:
        return False
    if "auto_map" in data or "custom_pipelines" in data:
        return True
    return any(_asks_for_code(v, depth + 1) for v in data.values() if isinstance(v, dict))


def refuse_custom_code(folder: Path, config: dict) -> str:
    """The config's model_type, once no JSON file asks for custom code (`auto_map`) and the type
    is built into the installed transformers; ModelRefused naming the file otherwise."""
    config_path = folder / "config.json"
    for json_file in sorted(folder.glob("*.json")):
        if json_file.name == "tokenizer.json" or json_file.name.endswith(".index.json"):
            continue
        data = config if json_file == config_path else read_json_object(json_file)
        if _asks_for_code(data):
            raise ModelRefused(
                f"{json_file.name} asks for custom code (auto_map): "
                "trust_remote_code is never enabled"
            )
    custom_code = sorted(p.name for p in folder.glob("*.py"))
    model_type = str(config.get("model_type") or "")
    if not model_type:
        raise ModelRefused("config.json: no model_type; cannot tell which architecture to load")
    known_types: Collection[str]
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        known_types = CONFIG_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is a dependency
        known_types = {model_type}
    if model_type not in known_types:
        extra = f" (the folder ships {', '.join(custom_code)})" if custom_code else ""
        raise ModelRefused(
            f"config.json: model_type {model_type!r} is not built into the installed "
            f"transformers{extra}; custom code is never run"
        )
    return model_type
