"""`find_duplicates`: one streaming read of a canonical JSONL file groups its rows by exact text
and embeds each distinct text once; then the semantic and lexical passes join near duplicates in
one union-find. Each step below is a function of its own."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.data.dedup.embedder import Embedder, get_default_embedder
from workers.data.dedup.lexical import join_lexical_pairs
from workers.data.dedup.report import (
    DEFAULT_LEXICAL_THRESHOLD,
    DEFAULT_THRESHOLD,
    PAIRS_SAMPLE,
    DedupReport,
)
from workers.data.dedup.semantic import TextEmbeddings, join_similar_embeddings
from workers.data.dedup.text import parse_line, record_text, text_key

__all__ = [
    "MAX_SEMANTIC_ROWS",
    "DistinctTexts",
    "NearFindings",
    "count_and_hash",
    "find_duplicates",
    "find_near_duplicates",
    "near_groups",
    "plan_semantic",
    "read_distinct_texts",
    "unreadable_rows",
    "unreadable_warning",
]

MAX_SEMANTIC_ROWS = 100_000  # 100k x 384 x float32 = 150 MB of embeddings kept in memory

Progress = Callable[[int, int], Any]


@dataclass
class DistinctTexts:
    """A file's rows grouped by compared text: distinct text u first appears on ``first_row[u]``;
    ``members[u]`` lists all its rows, for the texts that repeat only."""

    rows: int = 0
    first_row: list[int] = field(default_factory=list)
    members: dict[int, list[int]] = field(default_factory=dict)

    @property
    def distinct(self) -> int:
        return len(self.first_row)

    def rows_of(self, u: int) -> list[int]:
        return self.members.get(u, [self.first_row[u]])

    def exact_groups(self) -> list[list[int]]:
        return sorted(self.members.values())


@dataclass
class NearFindings:
    """What the semantic and lexical passes found (all zero / empty when they did not run)."""

    near_groups: list[list[int]] = field(default_factory=list)
    semantic_pairs: int = 0
    pairs_sample: list[tuple[int, int, float]] = field(default_factory=list)
    skipped_rows: int = 0
    skipped_sample: list[int] = field(default_factory=list)
    lexical_rows: int = 0
    lexical_pairs: int = 0
    lexical_sample: list[tuple[int, int, float]] = field(default_factory=list)
    warning: str = ""


class _Ticker:
    """Calls ``progress(done, total)`` at most every ``step`` rows, and never with done == total:
    ``(total, total)`` is reported last, after the similarity search."""

    def __init__(self, progress: Progress | None, total: int, step: int) -> None:
        self.progress, self.total, self.step, self.reported = progress, total, step, 0

    def __call__(self, done: int) -> None:
        if self.progress is not None and done - self.reported >= self.step and done < self.total:
            self.reported = done
            self.progress(done, self.total)


def count_and_hash(path: Path) -> tuple[int, str]:
    """(rows, SHA-256) of a JSONL file; a last line without a newline counts."""
    rows, last, digest = 0, b"\n", hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        rows += 1
    return rows, digest.hexdigest()


def plan_semantic(total: int, *, semantic: bool, max_semantic_rows: int) -> tuple[bool, list[str]]:
    """Whether the semantic (and lexical) passes run on a file of ``total`` rows, and the warning
    that says why not when the file is too big for them."""
    if not (semantic and total > 0):
        return False, []
    if total > max_semantic_rows:
        return False, [
            f"{total} rows is more than {max_semantic_rows}: only exact duplicates were checked "
            "(semantic and character search keep every embedding and signature in memory)"
        ]
    return True, []


def read_distinct_texts(
    path: Path, *, embeddings: TextEmbeddings | None, tick: Callable[[int], None]
) -> DistinctTexts:
    """Read the file once: group its rows by :func:`text_key` and hand each distinct text to
    ``embeddings`` (when the semantic pass runs). ``tick(row)`` reports progress."""
    found = DistinctTexts()
    first_row, members = found.first_row, found.members
    seen: dict[bytes, int] = {}
    row = 0
    with path.open("rb") as fh:
        for row, line in enumerate(fh, 1):
            text = record_text(parse_line(line, row))
            key = text_key(text)
            u = seen.get(key)
            if u is not None:
                members.setdefault(u, [first_row[u]]).append(row)
            else:
                u = seen[key] = len(first_row)
                first_row.append(row)
                if embeddings is not None and embeddings.add(u, text):
                    tick(row)
            if embeddings is None:
                tick(row)
        if embeddings is not None:
            embeddings.flush()
    found.rows = row
    return found


def unreadable_rows(texts: DistinctTexts, unreadable: np.ndarray) -> tuple[int, list[int]]:
    """(rows of the distinct texts ``unreadable``, the first ``PAIRS_SAMPLE`` of them sorted)."""
    count = 0
    sample: list[int] = []
    for u in unreadable.tolist():
        group = texts.rows_of(u)
        count += len(group)
        if len(sample) < PAIRS_SAMPLE:
            sample.extend(group[: PAIRS_SAMPLE - len(sample)])
    sample.sort()
    return count, sample


def unreadable_warning(skipped_rows: int, lexical_rows: int, lexical_threshold: float) -> str:
    """What the report says about the rows the embedder could not read ("" if there are none)."""
    if not skipped_rows:
        return ""
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
    return note


def near_groups(parent: np.ndarray, texts: DistinctTexts) -> list[list[int]]:
    """The union-find's components of two or more distinct texts, as sorted lists of rows."""
    roots, counts = np.unique(parent, return_counts=True)
    merged = set(roots[counts > 1].tolist())
    clusters: dict[int, list[int]] = {}
    for u in np.flatnonzero(np.isin(parent, list(merged))).tolist() if merged else []:
        clusters.setdefault(int(parent[u]), []).extend(texts.rows_of(u))
    return sorted(sorted(rows) for rows in clusters.values())


def find_near_duplicates(
    path: Path,
    source_sha: str,
    texts: DistinctTexts,
    embeddings: TextEmbeddings,
    parent: np.ndarray,
    *,
    threshold: float,
    lexical_threshold: float,
) -> NearFindings:
    """The semantic pass over the readable texts, then the lexical pass over the unreadable ones
    that have a signature; both join near duplicates in ``parent``."""
    found = NearFindings()
    emb = embeddings.take_vectors(texts.distinct)
    if emb is None:
        return found
    norms = np.linalg.norm(emb, axis=1)
    live = np.flatnonzero(norms > 1e-6)
    found.skipped_rows, found.skipped_sample = unreadable_rows(texts, np.flatnonzero(norms <= 1e-6))
    vectors = emb[live] / norms[live, None]
    del emb  # only the unit vectors of the readable texts stay in memory for the search
    found.semantic_pairs, found.pairs_sample = join_similar_embeddings(
        vectors, live, parent, threshold, texts.first_row
    )
    del vectors
    signed = embeddings.take_signatures()
    if signed is not None:
        ids, sigs = signed
        found.lexical_rows = sum(len(texts.rows_of(u)) for u in ids.tolist())
        found.lexical_pairs, found.lexical_sample = join_lexical_pairs(
            path,
            source_sha,
            ids,
            sigs,
            np.asarray(texts.first_row, dtype=np.int64),
            parent,
            lexical_threshold,
        )
    found.warning = unreadable_warning(found.skipped_rows, found.lexical_rows, lexical_threshold)
    found.near_groups = near_groups(parent, texts)
    return found


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
    total, source_sha = count_and_hash(path)
    run_semantic, warnings = plan_semantic(
        total, semantic=semantic, max_semantic_rows=max_semantic_rows
    )
    embeddings: TextEmbeddings | None = None
    if run_semantic:
        if embedder is None:
            embedder = get_default_embedder()
        embeddings = TextEmbeddings(embedder, total)
    tick = _Ticker(progress, total, step=1 if run_semantic else max(1_000, total // 100))
    texts = read_distinct_texts(path, embeddings=embeddings, tick=tick)

    parent = np.arange(texts.distinct, dtype=np.int64)  # union-find over distinct texts
    near = NearFindings()
    if embeddings is not None:
        near = find_near_duplicates(
            path,
            source_sha,
            texts,
            embeddings,
            parent,
            threshold=threshold,
            lexical_threshold=lexical_threshold,
        )
    if near.warning:
        warnings.append(near.warning)
    components = int(np.count_nonzero(parent == np.arange(texts.distinct)))
    if progress is not None:
        progress(texts.rows, texts.rows)
    return DedupReport(
        rows=texts.rows,
        exact_groups=texts.exact_groups(),
        near_groups=near.near_groups,
        pairs_sample=near.pairs_sample,
        duplicates_to_drop=texts.rows - components,
        semantic=run_semantic,
        threshold=threshold,
        model=getattr(embedder, "name", None) if run_semantic else None,
        near_pairs=near.semantic_pairs + near.lexical_pairs,
        semantic_skipped_rows=near.skipped_rows,
        semantic_skipped_sample=near.skipped_sample,
        semantic_pairs=near.semantic_pairs,
        lexical_threshold=lexical_threshold,
        lexical_rows=near.lexical_rows,
        lexical_pairs=near.lexical_pairs,
        lexical_pairs_sample=near.lexical_sample,
        warnings=warnings,
        source_sha256=source_sha,
    )
