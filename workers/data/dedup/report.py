"""What a duplicate search found (:class:`DedupReport`), and its JSON form for the version's
stored report."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_LEXICAL_THRESHOLD", "DEFAULT_THRESHOLD", "PAIRS_SAMPLE", "DedupReport"]

DEFAULT_THRESHOLD = 0.92  # cosine of two MiniLM embeddings
DEFAULT_LEXICAL_THRESHOLD = 0.8  # exact Jaccard of the 3-character shingle sets
PAIRS_SAMPLE = 200  # pairs (and skipped rows) kept in the report; to_dict caps further


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
