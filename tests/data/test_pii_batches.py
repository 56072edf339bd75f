"""The Hyperscan engine's batches: many rows scanned as one text still report what `re` reports.

The fast path joins the strings of many rows into one text per batch, skips the line selection
on PII-dense blocks and parses lines from a block decoded once; each test forces one of those
paths onto small data and compares the report (or the redacted file) with the `re` engine's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.pii_eval.generate import generate
from workers.data import pii
from workers.data.errors import DatasetError
from workers.data.pii import redact_jsonl, scan_jsonl

pytestmark = pytest.mark.skipif(
    "hyperscan" not in pii.available_engines(), reason="no hyperscan wheel"
)

# Strings that must be checked on their own, or that sit at the edge of their neighbours.
AWKWARD = [
    "护照",  # the context word in one string ...
    "E12345678",  # ... does not make the next string's number a passport
    "version",
    "1.2.3.4 and 13812345678",
    "nul \x00 inside: 13912345678 and 护照 E7654321",
    "an escape written out: \\u0041 and \\/ beside zhang@example.com",
    "邮箱 li.lei@example.com 末尾",
    "",
    "Dear Zhang Wei,",
]


def documents(n: int) -> list[str]:
    return [rec.text for rec in generate("dev", n)]


def write_rows(path: Path, rows: list, *, ensure_ascii: bool = False, end: str = "\n") -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=ensure_ascii) + end for r in rows), encoding="utf-8"
    )
    return path


def reports(path: Path) -> tuple[dict, dict]:
    fast = scan_jsonl(path, engine="hyperscan").to_dict()
    slow = scan_jsonl(path, engine="re").to_dict()
    assert fast.pop("engine") == "hyperscan" and slow.pop("engine") == "re"
    return fast, slow


def mixed_rows() -> list:
    docs = documents(240)
    rows: list = [{"text": d} for d in docs[:80]]
    rows += [
        {"question": a, "answer": b, "n": i}
        for i, (a, b) in enumerate(zip(AWKWARD, docs, strict=False))
    ]
    rows += [
        {"messages": [{"role": "user", "content": d}, {"role": "x", "content": AWKWARD[i % 9]}]}
        for i, d in enumerate(docs[80:])
    ]
    return rows


@pytest.mark.parametrize("batch_chars", [1, 300, 1 << 20])
@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_rows_scanned_in_batches_of_any_size_give_the_re_engines_report(
    tmp_path, monkeypatch, batch_chars, ensure_ascii
):
    path = write_rows(tmp_path / "rows.jsonl", mixed_rows(), ensure_ascii=ensure_ascii)
    monkeypatch.setattr(pii, "BATCH_CHARS", batch_chars)
    fast, slow = reports(path)
    assert fast == slow
    assert fast["rows_with_pii"] > 200


def test_a_context_word_never_reaches_into_the_next_string_of_a_batch(tmp_path):
    rows = [{"a": "护照", "b": "E12345678"}, {"a": "version", "b": "1.2.3.4"}]
    rows += [{"t": "护照 E12345678"}, {"t": "登录IP 10.1.2.3"}]
    fast, slow = reports(write_rows(tmp_path / "rows.jsonl", rows))
    assert fast == slow
    assert fast["counts"] == {"PASSPORT": 1, "IP_ADDRESS": 2}
    assert fast["types"]["PASSPORT"]["rows"] == [3]
    assert fast["types"]["IP_ADDRESS"]["rows"] == [2, 4]


@pytest.mark.parametrize("chunk_bytes", [4096, 1 << 22])
def test_pii_dense_blocks_skip_the_line_selection_with_the_same_report(
    tmp_path, monkeypatch, chunk_bytes
):
    # Dense rows first (the probe skips the selection), then plain ones (it selects again).
    rows = [{"text": d} for d in documents(300)] + [{"text": "多休息，必要时就医。"}] * 300
    rows += [{"text": d} for d in documents(40)]
    path = write_rows(tmp_path / "rows.jsonl", rows)
    monkeypatch.setattr(pii, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(pii, "PROBE_BYTES", 1024)
    fast, slow = reports(path)
    assert fast == slow
    assert fast["rows_scanned"] == 640 and fast["rows_with_pii"] > 300


def test_lines_with_whitespace_around_them_are_read_as_before(tmp_path):
    rows = [{"text": d} for d in documents(30)]
    path = write_rows(tmp_path / "rows.jsonl", rows, end=" \r\n")
    path.write_bytes(b"  " + path.read_bytes())  # leading spaces on the first line
    fast, slow = reports(path)
    assert fast == slow
    assert fast["rows_scanned"] == 30 and fast["rows_with_pii"] > 20


def test_a_bad_line_in_a_batch_is_reported_by_its_number(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"t":"13812345678"}\n{"t":"ok"}\n{"t": "13812345678" \xff}\n')
    for engine in ("hyperscan", "re"):
        with pytest.raises(DatasetError) as err:
            scan_jsonl(path, engine=engine)
        assert err.value.line == 3


def test_a_lone_surrogate_in_one_string_leaves_the_rest_of_the_batch_alone(tmp_path):
    rows = [{"text": d} for d in documents(40)]
    rows.insert(20, {"text": "broken \ud800 13812345678"})
    rows.insert(21, {"text": json.loads('"broken \\ud800 13812345678"')})
    fast, slow = reports(write_rows(tmp_path / "rows.jsonl", rows, ensure_ascii=True))
    assert fast == slow
    assert 21 in fast["types"]["CN_PHONE"]["rows"] and 22 in fast["types"]["CN_PHONE"]["rows"]


@pytest.mark.parametrize("mode", ["mask", "pseudonym"])
def test_redacting_in_batches_writes_the_re_engines_file(tmp_path, monkeypatch, mode):
    src = write_rows(tmp_path / "rows.jsonl", mixed_rows())
    monkeypatch.setattr(pii, "BATCH_CHARS", 500)
    fast = redact_jsonl(src, tmp_path / "fast.jsonl", mode, b"key", engine="hyperscan")
    slow = redact_jsonl(src, tmp_path / "slow.jsonl", mode, b"key", engine="re")
    assert fast.sha256 == slow.sha256
    assert fast.replaced_counts == slow.replaced_counts and sum(fast.replaced_counts.values()) > 200
