"""The seeded train/validation split, and streaming transforms that write new versions."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from tests.data.import_samples import QA, listing, qa_records, write_csv, write_jsonl
from workers.data import (
    export_csv_lines,
    filter_rows,
    import_file,
    iter_rows,
    iter_split,
    map_rows,
    split_counts,
    split_of,
)
from workers.data.canonical import dump_record


def _many(n: int) -> list[dict]:
    return [{"question": f"问题 {i}", "answer": f"answer {i}"} for i in range(n)]


def _import(tmp_path, records, name="qa.jsonl", **kwargs):
    path = write_jsonl(tmp_path / name, records)
    return import_file(
        path, path.name, out_dir=tmp_path / f"out-{name}-{len(list(tmp_path.iterdir()))}", **kwargs
    )


def test_no_validation_fraction_puts_everything_in_train(tmp_path):
    result = _import(tmp_path, _many(100))
    assert result.split_counts == {"train": 100, "validation": 0}


def test_a_fraction_splits_about_that_share_and_matches_iter_split(tmp_path):
    result = _import(tmp_path, _many(2000), validation_fraction=0.2, seed=7)
    validation = result.split_counts["validation"]
    assert 300 <= validation <= 500
    assert validation + result.split_counts["train"] == 2000
    kw = {"seed": 7, "fraction": 0.2}
    val_rows = list(iter_split(result.canonical_path, "validation", **kw))
    train_rows = list(iter_split(result.canonical_path, "train", **kw))
    assert len(val_rows) == validation and len(train_rows) == 2000 - validation
    assert split_counts(result.canonical_path, **kw) == result.split_counts
    assert {r["question"] for r in val_rows}.isdisjoint(r["question"] for r in train_rows)


def test_the_split_is_the_same_on_every_run_and_for_any_source_order(tmp_path):
    records = _many(500)
    a = _import(tmp_path, records, "a.jsonl", validation_fraction=0.3, seed=1)
    b = _import(tmp_path, list(reversed(records)), "b.jsonl", validation_fraction=0.3, seed=1)
    c = _import(tmp_path, records, "c.jsonl", validation_fraction=0.3, seed=1)

    def val(result):
        rows = iter_split(result.canonical_path, "validation", seed=1, fraction=0.3)
        return {x["question"] for x in rows}

    assert val(a) == val(b) == val(c)
    assert a.split_counts == b.split_counts == c.split_counts


def test_another_seed_gives_another_split(tmp_path):
    result = _import(tmp_path, _many(500))
    sides = [
        {
            r["question"]
            for r in iter_split(result.canonical_path, "validation", seed=s, fraction=0.5)
        }
        for s in (0, 1)
    ]
    assert sides[0] != sides[1]


def test_exact_duplicates_always_land_on_the_same_side():
    line = dump_record({"question": "q", "answer": "a"})
    for seed in range(50):
        assert len({split_of(line, seed, 0.5) for _ in range(3)}) == 1


def test_the_split_does_not_change_the_version_hash(tmp_path):
    a = _import(tmp_path, qa_records(), "a.jsonl", validation_fraction=0.5, seed=3)
    b = _import(tmp_path, qa_records(), "b.jsonl")
    assert a.sha256 == b.sha256


@pytest.mark.parametrize("fraction", [-0.1, 0.51, 1.0, True])
def test_a_fraction_outside_zero_to_a_half_is_refused(tmp_path, fraction):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_records())
    with pytest.raises(ValueError, match="validation_fraction must be between 0 and 0.5"):
        import_file(path, path.name, out_dir=tmp_path / "out", validation_fraction=fraction)
    assert not (tmp_path / "out").exists()


def test_a_split_accepts_the_edges(tmp_path):
    result = _import(tmp_path, _many(200), validation_fraction=0.5)
    assert 60 <= result.split_counts["validation"] <= 140


# --- transforms -----------------------------------------------------------------------------------


def test_filter_rows_writes_a_new_version_with_its_hash(tmp_path):
    result = _import(tmp_path, qa_records())
    seen = []

    def keep(index, record):
        seen.append(index)
        return index % 2 == 0

    out = filter_rows(result.canonical_path, tmp_path / "v2" / "data.jsonl", keep)
    assert seen == [0, 1, 2, 3]
    assert out.rows == 2
    data = Path(out.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == out.sha256
    assert [json.loads(x) for x in data.splitlines()] == [qa_records()[0], qa_records()[2]]
    assert listing(tmp_path / "v2") == ["data.jsonl"]


def test_map_rows_rewrites_records_canonically(tmp_path):
    result = _import(tmp_path, qa_records())
    out = map_rows(
        result.canonical_path,
        tmp_path / "v2.jsonl",
        lambda i, r: {"question": r["question"], "answer": r["answer"].upper() + f" #{i}"},
    )
    first = Path(out.path).read_bytes().split(b"\n")[0] + b"\n"
    assert first == dump_record({"answer": QA[0][1].upper() + " #0", "question": QA[0][0]}) + b"\n"
    assert first.startswith(b'{"answer":')  # keys sorted whatever order fn used
    assert out.rows == len(QA) and out.sha256 != result.sha256
    same = map_rows(result.canonical_path, tmp_path / "v3.jsonl", lambda i, r: r)
    assert same.sha256 == result.sha256


def test_a_failing_transform_leaves_no_file(tmp_path):
    result = _import(tmp_path, qa_records())
    target = tmp_path / "v2"
    target.mkdir()
    with pytest.raises(TypeError, match="map_rows: fn returned str for index 0, not a dict"):
        map_rows(result.canonical_path, target / "data.jsonl", lambda i, r: "oops")
    with pytest.raises(ZeroDivisionError):
        filter_rows(result.canonical_path, target / "data.jsonl", lambda i, r: 1 / 0)
    assert listing(target) == []


def test_transforms_report_progress(tmp_path):
    result = _import(tmp_path, _many(10_000))
    calls = []
    filter_rows(
        result.canonical_path,
        tmp_path / "f.jsonl",
        lambda i, r: True,
        progress=lambda d, t: calls.append((d, t)),
    )
    size = result.bytes
    assert calls[-1] == (size, size) and len(calls) >= 2


def test_csv_export_escapes_formula_cells_and_keeps_role_order(tmp_path):
    records = [
        {"question": "=1+1", "answer": "+SUM(A1)"},
        {"question": "-2 is negative", "answer": "@handle"},
        {"question": "plain, with comma", "answer": 'say "hi"\nnext line'},
    ]
    result = _import(tmp_path, records)
    text = "".join(export_csv_lines(result.canonical_path, "qa"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["question", "answer"],
        ["'=1+1", "'+SUM(A1)"],
        ["'-2 is negative", "'@handle"],
        ["plain, with comma", 'say "hi"\nnext line'],
    ]


def test_csv_export_of_chats_holds_messages_as_json(tmp_path):
    from tests.data.import_samples import openai_chats

    result = _import(tmp_path, openai_chats(), "chat.jsonl")
    rows = list(csv.reader(io.StringIO("".join(export_csv_lines(result.canonical_path, "chat")))))
    assert rows[0] == ["messages"]
    assert json.loads(rows[1][0]) == openai_chats()[0]["messages"]


def test_an_exported_csv_imports_back_to_the_same_version(tmp_path):
    result = _import(tmp_path, qa_records())
    exported = tmp_path / "export.csv"
    exported.write_text("".join(export_csv_lines(result.canonical_path, "qa")), encoding="utf-8")
    again = import_file(exported, exported.name, out_dir=tmp_path / "again")
    assert again.sha256 == result.sha256
    assert list(iter_rows(again.canonical_path)) == qa_records()


def test_write_csv_helper_matches_the_csv_module(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["a"], [("1",)])
    assert path.read_bytes() == b"a\r\n1\r\n"
