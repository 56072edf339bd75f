"""The lexical pass: near duplicates among the texts the embedder cannot read (Chinese, for
all-MiniLM-L6-v2), by characters.

A text is normalized (:func:`~workers.data.dedup.text.lexical_text`: NFKC, casefold, spaces and
punctuation removed) and cut into 3-character shingles; each distinct text has a 128-value MinHash
signature (minhash.py). LSH banding (32 bands of 4 values at the default 0.8) proposes candidate
pairs, a b-bit signature comparison drops the hopeless ones, and the rest are verified with the
exact Jaccard of the two shingle sets: no false positives, and a pair exactly at the threshold is
missed with probability ~1.3e-7 (higher Jaccard: less). Verified pairs join the same union-find
as the semantic ones, so near groups mix both. Memory: 128 x 4 bytes of signature + 32 x 8 bytes
of band keys per text; the shingle sets of the candidate texts only are rebuilt from a second
read of the file.

Short texts: one inserted character changes up to 3 shingles, so "高血压患者应该注意什么?" and
"高血压患者应该注意些什么?" alone have a Jaccard of 7/12 = 0.58 (not grouped at 0.8); followed by
the same answer (a QA row) they reach 21/26 = 0.81.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from workers.data.dedup.minhash import (
    U64,
    band_keys,
    min_agreement,
    rows_per_band,
    shingle_hashes,
)
from workers.data.dedup.report import PAIRS_SAMPLE
from workers.data.dedup.text import lexical_text, parse_line, record_text
from workers.data.dedup.union_find import merge_edges

__all__ = ["ShingleSets", "join_lexical_pairs", "read_shingles", "signatures_agree"]

VERIFY_CHUNK = 1 << 20  # shingle look-ups per Jaccard batch
BATCH_PAIRS = 262_144  # bucket pairs gathered per batch before they are checked
PREFILTER_CHUNK = 65_536  # candidate pairs compared at once: 65,536 x 128 x 2 bytes = 16 MB


class ShingleSets:
    """The shingle sets of some texts, for exact Jaccard on many pairs at once (vectorized).

    Shingle hashes become dense ids; ``keys`` = text * n_ids + id is then sorted (texts in order,
    each set sorted), so "is shingle s of text x in text y" is one ``searchsorted``."""

    def __init__(self, sets: Sequence[np.ndarray]) -> None:
        self.sizes = np.array([s.size for s in sets], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        values = np.concatenate(sets) if sets else np.empty(0, dtype=U64)
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


def read_shingles(path: Path, wanted_rows: np.ndarray, source_sha: str) -> list[np.ndarray]:
    """Shingle sets of the given rows (ascending), from a second read of the file, which must
    still have the SHA-256 of the first read."""
    index = np.full(int(wanted_rows[-1]) + 1, -1, dtype=np.int64)
    index[wanted_rows] = np.arange(wanted_rows.size)
    sets: list[np.ndarray] = [np.empty(0, dtype=U64)] * wanted_rows.size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for row, line in enumerate(fh, 1):
            digest.update(line)
            if row < index.size and index[row] >= 0:
                text = lexical_text(record_text(parse_line(line, row)))
                sets[int(index[row])] = shingle_hashes(text)
    if digest.hexdigest() != source_sha:
        raise ValueError(f"{path.name} changed while it was scanned for duplicates")
    return sets


def signatures_agree(low: np.ndarray, a: np.ndarray, b: np.ndarray, need: int) -> np.ndarray:
    """Which candidate pairs (a[k], b[k]) share at least ``need`` of their 128 signature values,
    compared on the low 8 bits ``low`` (n, 128) uint8 (:func:`min_agreement`): the cheap
    prefilter before the exact Jaccard."""
    if not need:
        return np.ones(a.size, dtype=bool)
    keep = np.empty(a.size, dtype=bool)
    for i in range(0, a.size, PREFILTER_CHUNK):
        same = low[a[i : i + PREFILTER_CHUNK]] == low[b[i : i + PREFILTER_CHUNK]]
        # count the 128 one-byte booleans as 16 words: per-byte sums stay <= 16, and the
        # multiply adds a word's 8 bytes into its top byte
        words = same.view(np.uint64).sum(1, dtype=np.uint64)
        keep[i : i + PREFILTER_CHUNK] = (words * U64(0x0101010101010101)) >> U64(56) >= need
    return keep


def join_lexical_pairs(
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
    (:func:`signatures_agree`: the low 8 bits of its 128 values), then by exact Jaccard.
    Returns (pairs verified similar, a sample of them as (row, row, jaccard))."""
    r = rows_per_band(threshold)
    need = min_agreement(threshold)
    keys = band_keys(sigs, r)
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
    sets = ShingleSets(read_shingles(path, rows, source_sha))

    found = 0
    sample: list[tuple[int, int, float]] = []
    for band in range(keys.shape[1]):
        order, bucket, size = _buckets(keys[:, band])
        for a, b in _pairs_at_offsets(order, bucket, size, parent, texts):
            open_ = parent[texts[a]] != parent[texts[b]]
            a, b = a[open_], b[open_]
            keep = signatures_agree(low, a, b, need)
            a, b = a[keep], b[keep]
            if not a.size:
                continue
            jac = sets.jaccard(a, b)
            hit = jac >= threshold
            a, b, jac = a[hit], b[hit], jac[hit]
            found += int(a.size)
            merge_edges(parent, texts[a], texts[b])
            room = PAIRS_SAMPLE - len(sample)
            for ra, rb, score in zip(
                rows[a[:room]].tolist(), rows[b[:room]].tolist(), jac[:room].tolist(), strict=True
            ):
                sample.append((min(ra, rb), max(ra, rb), round(score, 4)))
    sample.sort()
    return found, sample


def _buckets(band: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One band's texts sorted into buckets by key, members in file order, the buckets of one
    text left out: (order: text positions, bucket: the bucket of each, size: of every bucket)."""
    order = np.argsort(band, kind="stable")
    sorted_keys = band[order]
    bucket = np.cumsum(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])) - 1
    size = np.bincount(bucket)
    multi = size[bucket] > 1
    return order[multi], bucket[multi], size


def _pairs_at_offsets(
    order: np.ndarray, bucket: np.ndarray, size: np.ndarray, parent: np.ndarray, texts: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One band's candidate pairs (a, b), text positions, in batches: each bucket member with the
    one ``offset`` places after it, offsets 1, 2, ... in batches of doubling width (at most about
    BATCH_PAIRS pairs). Lazy on purpose: each batch reads ``parent`` as the caller left it after
    joining the batch before, and drops the buckets that became one group."""
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
        alive[ids] = (np.minimum.reduceat(roots, starts) != np.maximum.reduceat(roots, starts)) & (
            size[ids] > offset
        )
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
        yield order[np.concatenate(firsts)], order[np.concatenate(seconds)]
