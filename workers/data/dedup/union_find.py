"""Union-find over distinct texts as one numpy parent array, merged edge arrays at a time: a big
cluster of near-identical texts yields millions of edges per similarity tile."""

from __future__ import annotations

import numpy as np

__all__ = ["compress_parents", "merge_edges"]


def compress_parents(parent: np.ndarray) -> None:
    """Point every node straight at its root (pointer jumping; parents only ever point lower)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return
        parent[:] = grand


def merge_edges(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
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
        compress_parents(parent)
