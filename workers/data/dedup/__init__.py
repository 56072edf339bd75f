"""Exact and near-duplicate detection over canonical JSONL datasets (pure: no Django).

A dataset version is a canonical JSONL file: one JSON object per line, rows numbered from 1 (the
line number). :func:`find_duplicates` (find.py) streams it and reports

* **exact groups**: rows whose compared text (:func:`record_text`, text.py) is equal after NFKC,
  casefold and whitespace collapsing;
* **near groups**: clusters (one union-find, union_find.py) of rows whose all-MiniLM-L6-v2
  embeddings (embedder.py) have a cosine similarity >= ``threshold`` (semantic.py), and of rows the
  model cannot read (most Chinese) whose 3-character shingle sets have a Jaccard >=
  ``lexical_threshold`` (MinHash + LSH candidates, exact verification: minhash.py, lexical.py).
  Each exact group is compared once; a near group holds every row of the exact groups it joins,
  so exact and near groups may overlap.

``semantic=False`` is exact only, and so is a file over ``max_semantic_rows`` (default 100,000:
the near passes keep every embedding and signature in memory), with a warning in the
:class:`DedupReport` (report.py). :func:`keep_one` (keep.py) writes a new canonical JSONL that keeps
the first row of each (merged) group and copies every other row byte for byte, in order.
What each pass costs in time and memory is measured by ``bench/datasets.py``.
"""

from workers.data.dedup.embedder import MiniLMEmbedder, get_default_embedder, model_dir
from workers.data.dedup.find import MAX_SEMANTIC_ROWS, find_duplicates
from workers.data.dedup.keep import keep_one
from workers.data.dedup.report import DEFAULT_LEXICAL_THRESHOLD, DEFAULT_THRESHOLD, DedupReport
from workers.data.dedup.text import lexical_text, normalize_text, record_text

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
    "model_dir",
    "normalize_text",
    "record_text",
]
