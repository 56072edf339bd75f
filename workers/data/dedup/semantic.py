"""The semantic pass: embed each distinct text once, then join every pair whose cosine similarity
reaches the threshold, searched a tile of the similarity matrix at a time.

The embeddings of the distinct texts stay in memory as float32 (384 x 4 bytes each with MiniLM);
a tile is ``TILE`` x ``TILE`` float32. Texts the embedder returns a zero vector for are never
compared here: they get a MinHash signature for the lexical pass instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from workers.data.dedup.embedder import Embedder
from workers.data.dedup.minhash import MINHASH_PERMS, minhash_signatures, shingle_hashes
from workers.data.dedup.report import PAIRS_SAMPLE
from workers.data.dedup.text import lexical_text
from workers.data.dedup.union_find import merge_edges

__all__ = ["TextEmbeddings", "join_similar_embeddings", "similar_pairs"]

EMBED_CHARS = 2_000  # characters handed to the embedder; it truncates to 128 tokens anyway
FLUSH_TEXTS = 512  # distinct texts buffered before embedding (sorted by length inside)
TILE = 2_048  # rows per side of a similarity tile: 2048 x 2048 float32 = 16 MB


class TextEmbeddings:
    """The embeddings of a file's distinct texts, computed ``FLUSH_TEXTS`` texts at a time.

    ``vectors[u]`` is distinct text u's embedding (``capacity`` rows: the file's row count bounds
    the distinct texts). A text embedded as a zero vector (unreadable for the model) with at least
    one shingle also gets a MinHash signature: ``lexical_ids[k]`` has ``lexical_sigs[k]``.
    """

    def __init__(self, embedder: Embedder, capacity: int) -> None:
        self.embedder = embedder
        self.capacity = capacity
        self.vectors: np.ndarray | None = None
        self.lexical_ids: list[int] = []  # distinct texts with a MinHash signature, in order
        self.lexical_sigs: np.ndarray | None = None  # their signatures, rows 0 .. len - 1
        self._ids: list[int] = []
        self._texts: list[str] = []  # cut to EMBED_CHARS, for the embedder
        self._full: list[str] = []  # the whole texts, for the lexical pass of unreadable ones

    def add(self, u: int, text: str) -> bool:
        """Queue distinct text ``u``; embed the queue once it is full. True when it was."""
        self._ids.append(u)
        self._texts.append(text[:EMBED_CHARS])
        self._full.append(text)
        if len(self._texts) >= FLUSH_TEXTS:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Embed the queued texts (and sign the unreadable ones)."""
        if not self._texts:
            return
        vectors = np.asarray(self.embedder(self._texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self._texts):
            raise ValueError(
                f"embedder returned shape {vectors.shape} for {len(self._texts)} texts"
            )
        if self.vectors is None:
            self.vectors = np.zeros((self.capacity, vectors.shape[1]), dtype=np.float32)
        self.vectors[self._ids] = vectors
        unreadable = np.flatnonzero(np.linalg.norm(vectors, axis=1) <= 1e-6).tolist()
        shingled = [(self._ids[i], shingle_hashes(lexical_text(self._full[i]))) for i in unreadable]
        shingled = [(u, sh) for u, sh in shingled if sh.size]  # empty / punctuation only: none
        if shingled:
            if self.lexical_sigs is None:  # zeros: pages never written take no memory
                self.lexical_sigs = np.zeros((self.capacity, MINHASH_PERMS), dtype=np.uint32)
            done = len(self.lexical_ids)
            self.lexical_sigs[done : done + len(shingled)] = minhash_signatures(
                [sh for _, sh in shingled]
            )
            self.lexical_ids.extend(u for u, _ in shingled)
        self._ids.clear()
        self._texts.clear()
        self._full.clear()

    def take_vectors(self, distinct: int) -> np.ndarray | None:
        """The embeddings of the ``distinct`` texts, handed over: this object keeps no reference,
        so the caller can free them before the search."""
        vectors, self.vectors = self.vectors, None
        return None if vectors is None else vectors[:distinct]

    def take_signatures(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(distinct text ids, their MinHash signatures), handed over; None if no text has one."""
        sigs, self.lexical_sigs = self.lexical_sigs, None
        if sigs is None:
            return None
        return np.array(self.lexical_ids, dtype=np.int64), sigs[: len(self.lexical_ids)]


def similar_pairs(
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


def join_similar_embeddings(
    vectors: np.ndarray,
    live: np.ndarray,
    parent: np.ndarray,
    threshold: float,
    first_row: list[int],
) -> tuple[int, list[tuple[int, int, float]]]:
    """Join (in ``parent``) the distinct texts ``live[k]`` whose unit ``vectors[k]`` have a cosine
    >= ``threshold``, one tile of pairs at a time.
    Returns (pairs found, a sample of them as (row, row, cosine), sorted)."""
    found = 0
    sample: list[tuple[int, int, float]] = []
    for ii, jj, scores in similar_pairs(vectors, threshold, TILE):
        found += int(ii.size)
        ua, ub = live[ii], live[jj]
        merge_edges(parent, ua, ub)
        room = PAIRS_SAMPLE - len(sample)
        for a, b, score in zip(
            ua[:room].tolist(), ub[:room].tolist(), scores[:room].tolist(), strict=True
        ):
            ra, rb = sorted((first_row[a], first_row[b]))
            sample.append((ra, rb, min(1.0, round(score, 4))))
    sample.sort()
    return found, sample
