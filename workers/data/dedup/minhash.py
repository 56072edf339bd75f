"""MinHash for the lexical pass: stable 64-bit hashes of 3-character shingles, 128-value
signatures, LSH band keys, and the two tuning rules (values per band, signature agreement).

Everything is a fixed function of the text (no salted ``hash()``, no numpy RNG stream): the same
input gives the same signatures on every process and machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MINHASH_PERMS",
    "SHINGLE",
    "U64",
    "band_keys",
    "min_agreement",
    "minhash_signatures",
    "rows_per_band",
    "shingle_hashes",
    "splitmix64",
]

SHINGLE = 3  # characters per shingle: 3 x 21-bit code points pack into 63 bits, collision-free
MINHASH_PERMS = 128  # signature values per text (uint32): 512 bytes, 51 MB at 100k texts
MINHASH_CHUNK = 32_768  # shingles hashed at once: 32,768 x 128 x 8 bytes = 32 MB
LSH_MISS = 1e-6  # bands are chosen so a pair at the threshold is missed at most this often
PREFILTER_MISS = 1e-7  # chance that the prefilter drops a pair at exactly the threshold

U64 = np.uint64
_PAD = 0x1F_FFFF  # above the last code point (0x10FFFF): a short text's missing characters


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on uint64 (a bijection; arithmetic wraps mod 2**64)."""
    x = x + U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> U64(27))) * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


# multiply-add-shift hash family h(x) = (a*x + b mod 2**64) >> 32, a odd; fixed constants derived
# with splitmix64 (not numpy's RNG, whose streams may change between versions)
_MH_A = splitmix64(np.arange(MINHASH_PERMS, dtype=U64) * U64(2) + U64(0x5EED)) | U64(1)
_MH_B = splitmix64(np.arange(MINHASH_PERMS, dtype=U64) * U64(2) + U64(0x5EEE))


def shingle_hashes(text: str) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the ``SHINGLE``-character shingles of a
    :func:`lexical_text` (a shorter non-empty text is one padded shingle; "" has none).

    The code points of a shingle are packed 21 bits each (63 bits: injective) and mixed with
    splitmix64 (a bijection), so distinct shingles never share a hash: the Jaccard of two hash
    sets is exactly that of the shingle sets. Stable across processes and machines."""
    if not text:
        return np.empty(0, dtype=U64)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(U64)
    if cp.size < SHINGLE:
        cp = np.concatenate([cp, np.full(SHINGLE - cp.size, _PAD, dtype=U64)])
    n = cp.size - SHINGLE + 1
    packed = cp[:n].copy()
    for k in range(1, SHINGLE):
        packed = (packed << U64(21)) | cp[k : k + n]
    return np.unique(splitmix64(packed))


def minhash_signatures(shingles: Sequence[np.ndarray]) -> np.ndarray:
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
        h >>= U64(32)
        starts = np.concatenate([[0], np.cumsum(sizes[i : j - 1])])
        out[i:j] = np.minimum.reduceat(h, starts, axis=0)  # < 2**32: fits the uint32 out
        i = j
    return out


def rows_per_band(threshold: float) -> int:
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


def min_agreement(threshold: float) -> int:
    """How many of the 128 signature values, compared on their low 8 bits (b-bit MinHash), a
    candidate pair must share before its exact Jaccard is computed.

    Equal values have equal low bits, so each agrees with probability >= the Jaccard, and a pair
    at the threshold agrees on fewer with probability <= ``PREFILTER_MISS`` (binomial tail): 77 of
    128 at 0.8 (miss 8e-8), which drops all but ~1e-10 of the candidates with Jaccard 0.32 and
    98.5 % of those with 0.5 (boilerplate shared by many rows makes millions of such candidates),
    and it costs far less than the exact Jaccard."""
    n, need, tail = MINHASH_PERMS, 0, 0.0
    for k in range(n + 1):  # tail = P(X < k), X ~ Binomial(n, threshold)
        if tail > PREFILTER_MISS:
            break
        need = k
        tail += math.comb(n, k) * threshold**k * (1.0 - threshold) ** (n - k)
    return need


def band_keys(sig: np.ndarray, r: int) -> np.ndarray:
    """(n, MINHASH_PERMS // r) uint64: one key per band of ``r`` signature values (exact for r <= 2,
    else hashed; a key collision only adds a candidate, which the exact Jaccard then rejects)."""
    keys = np.zeros((sig.shape[0], MINHASH_PERMS // r), dtype=U64)
    for band in range(keys.shape[1]):  # one band at a time: no uint64 copy of all signatures
        values = sig[:, band * r : (band + 1) * r].astype(U64)
        if r == 1:
            keys[:, band] = values[:, 0]
        elif r == 2:
            keys[:, band] = (values[:, 0] << U64(32)) | values[:, 1]
        else:
            key = np.zeros(sig.shape[0], dtype=U64)
            for k in range(r):
                key = splitmix64(key ^ values[:, k])
            keys[:, band] = key
    return keys
