"""What may be loaded: one pickle policy for every loader (text models, image pipelines, LoRAs,
embeddings, ControlNets, upscalers, admin registration).

A pickle can run arbitrary code when it is loaded, so weights are safetensors (or GGUF for
import) only. A file is refused by its suffix, and by its content where the suffix says nothing
(a pickle renamed to `.weights`, a torch.save zip archive).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

__all__ = [
    "PICKLE_SUFFIXES",
    "is_pickle_suffix",
    "pickle_reason",
    "pickle_files",
]

# Formats that can carry pickled Python objects (arbitrary code on load).
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".dill"}
)
# Read by their own parsers (a safetensors header length may start with the pickle magic bytes).
NOT_SNIFFED_SUFFIXES = frozenset({".safetensors", ".gguf", ".json", ".md", ".txt", ".jinja"})
PICKLE_PROTOCOL_MAGIC = tuple(bytes([0x80, p]) for p in range(2, 6))
ZIP_MAGIC = b"PK\x03\x04"


def is_pickle_suffix(path: str | Path) -> bool:
    """True for a file name whose format can carry a pickle (`.ckpt`, `.bin`, `.pt`, ...)."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def pickle_reason(path: str | Path, rel: str | None = None) -> str | None:
    """Why this file is refused as a pickle-capable weight file, or None.

    `rel`: how to name the file in the message (defaults to its name). An unreadable file raises
    OSError: the caller says which model it belongs to.
    """
    path = Path(path)
    rel = rel or path.name
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return (
            f"{rel}: {suffix} files are Python pickles, which can run code when loaded; "
            "pickle weights are refused: convert to safetensors"
        )
    if suffix in NOT_SNIFFED_SUFFIXES or not path.is_file():
        return None
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] in PICKLE_PROTOCOL_MAGIC:
        return f"{rel}: this file is a Python pickle; pickle files are refused"
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith((".pkl", ".pickle")) for n in zf.namelist()):
                    return f"{rel}: a torch.save archive (pickle inside); pickle files are refused"
        except zipfile.BadZipFile:
            return None
    return None


def pickle_files(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """The pickle-suffixed files of a folder (by name only: cheap, for messages and hints)."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and is_pickle_suffix(p))
