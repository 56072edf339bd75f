"""Hostile text uploads (issue 15): what the first step of the upload (`sniff`) refuses with its
place, what it leaves to the import, and the neighbours of the refused classes that must still
import. The import-time refusals themselves are in the bad-input catalogue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.data.import_samples import (
    CHAT,
    QA,
    expected_jsonl,
    openai_chats,
    qa_records,
    write_csv,
    write_json,
    write_jsonl,
)
from workers.data import DatasetError, DatasetInvalid, Mapping, import_file, iter_rows, sniff

QA_LINE = '{"question": "q", "answer": "a"}\n'


@dataclass
class Refused:
    id: str
    name: str
    data: bytes
    message: str  # str() of what sniff raises
    code: str | None  # the (first) error's code


def _lines(*lines: str) -> bytes:
    return "".join(lines).encode()


STEP_ONE = [
    Refused(
        "malformed-json-array",
        "a.json",
        b'[{"question": "q", "answer": "a"},\n {"question": , "answer": "b"}]',
        "line 2: not valid JSON (Expecting value at char 14)",
        "invalid_json",
    ),
    Refused(
        "json-array-cut-short",
        "a.json",
        b'[{"question": "q", "answer": "a"},\n {"question": "q2", "answer": "b"},\n',
        "line 3: the JSON array is not closed: the file ends here (is it truncated?)",
        "truncated",
    ),
    Refused(
        "one-pretty-printed-object",
        "qa.json",
        b'{\n  "question": "q",\n  "answer": "a"\n}\n',
        "the file is one JSON object, not a list of records: upload an array of objects "
        "[{…}, {…}], or one object per line (JSONL)",
        "not_array",
    ),
    Refused(
        "records-wrapped-in-one-object-on-one-line",
        "qa.json",
        json.dumps({"version": 2, "data": qa_records()}).encode(),
        'the file is one JSON object, not a list of records; its key "data" holds 4 records: '
        "upload an array of objects [{…}, {…}], or one object per line (JSONL)",
        "not_array",
    ),
    Refused(
        "text-named-zip",
        "images.zip",
        b"question,answer\nq,a\n",
        "the file is named .zip but is not a zip archive (is it damaged, or renamed?)",
        "bad_zip",
    ),
    Refused(
        "only-line-holds-nan",
        "n.jsonl",
        _lines('{"question": "q", "answer": "a", "score": NaN}\n'),
        'line 1: column "score" is NaN, which JSON does not allow (write a number, or null)',
        "not_finite",
    ),
    Refused(
        "lone-surrogate-among-good-lines",
        "s.jsonl",
        _lines(QA_LINE, '{"question": "bad \\ud800 half", "answer": "a"}\n', QA_LINE),
        'line 2: column "question": a lone UTF-16 surrogate \\ud800 is not valid Unicode',
        "bad_unicode",
    ),
    Refused(
        "utf8-bom-in-front-of-gbk",
        "medical_qa.csv",
        b"\xef\xbb\xbf" + "问题,答案\n头痛怎么办,多休息\n".encode("gbk"),
        "the file starts with a UTF-8 byte-order mark but line 1 is not UTF-8 (byte 0xce); save it "
        "as UTF-8, or choose its encoding",
        "bad_encoding",
    ),
    Refused(
        "every-line-is-python-not-json",
        "py.jsonl",
        _lines("{'question': 'q', 'answer': 'a'}\n", "{'question': 'q2', 'answer': 'b'}\n"),
        "2 problems; the first: line 1: not valid JSON (Expecting property name enclosed in double "
        "quotes at char 1)",
        None,
    ),
]


@pytest.mark.parametrize("case", STEP_ONE, ids=[c.id for c in STEP_ONE])
def test_the_first_step_refuses_a_file_that_cannot_import_and_says_where(
    case: Refused, tmp_path: Path
):
    path = tmp_path / case.name
    path.write_bytes(case.data)
    with pytest.raises((DatasetError, DatasetInvalid)) as caught:
        sniff(path, path.name)
    assert str(caught.value) == case.message
    if case.code is not None:
        assert isinstance(caught.value, DatasetError)
        assert caught.value.code == case.code
    else:
        assert isinstance(caught.value, DatasetInvalid)
        assert [e.code for e in caught.value.errors] == ["invalid_json", "invalid_json"]


def test_one_bad_record_among_good_ones_is_listed_not_raised(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        QA_LINE + '{"question": "q", "answer": "a", "answer": "b"}\n' + QA_LINE, encoding="utf-8"
    )
    sniffed = sniff(path, path.name)
    assert [e.message for e in sniffed.sample_errors] == [
        'line 2: column "answer" appears twice in one object (a key may appear only once)'
    ]
    assert sniffed.sample_rows == [{"question": "q", "answer": "a"}] * 2
    assert sniffed.suggested_mapping == Mapping("qa", {"question": "question", "answer": "answer"})


def test_a_long_json_array_is_sniffed_from_its_head_and_its_cut_end_found_by_the_import(
    tmp_path,
):
    # 100,000 elements, the array never closed: sniff reads the first records only, so it cannot
    # see the end; the import reads everything and refuses the file at its last line.
    path = tmp_path / "long.json"
    element = b'{"question": "q", "answer": "a"},\n'
    path.write_bytes(b"[" + element * 100_000)
    sniffed = sniff(path, path.name)
    assert sniffed.container == "json"
    assert sniffed.columns == ["question", "answer"]
    assert len(sniffed.sample_rows) == 10
    assert sniffed.sample_errors == []
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=tmp_path / "out")
    assert caught.value.messages == [
        "line 100001: the JSON array is not closed: the file ends here (is it truncated?)"
    ]


def test_sample_rows_never_hold_a_lone_surrogate(tmp_path):
    # Not strict (as the importer sniffs): the bad record is an error, never a row to show.
    path = tmp_path / "s.jsonl"
    path.write_text(
        QA_LINE
        + '{"question": "q", "answer": "a", "note": "\\udfff"}\n'
        + '{"question": "q", "answer": "\\ud83d\\ude00"}\n',
        encoding="utf-8",
    )
    sniffed = sniff(path, path.name, strict=False)
    shown = json.dumps(sniffed.sample_rows, ensure_ascii=False).encode("utf-8")  # a page can
    assert "😀".encode() in shown
    assert [e.message for e in sniffed.sample_errors] == [
        'line 2: column "note": a lone UTF-16 surrogate \\udfff is not valid Unicode'
    ]


@pytest.mark.parametrize("container", ["jsonl", "json"])
def test_a_surrogate_pair_written_as_two_escapes_is_one_character_and_imports(container, tmp_path):
    path = tmp_path / f"pair.{container}"
    records = '{"question": "smile \\ud83d\\ude00", "answer": "a", "\\ud83d\\udc4d": "key"}'
    path.write_text(records + "\n" if container == "jsonl" else f"[{records}]", encoding="utf-8")
    sniffed = sniff(path, path.name)
    assert sniffed.columns == ["question", "answer", "👍"]
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    assert list(iter_rows(result.canonical_path)) == [{"question": "smile 😀", "answer": "a"}]


def test_csv_text_that_looks_like_an_escape_stays_text(tmp_path):
    # CSV has no escapes: "\ud800" in a cell is six characters, imported as written.
    path = write_csv(tmp_path / "e.csv", ["question", "answer"], [("what is \\ud800?", "text")])
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    assert list(iter_rows(result.canonical_path)) == [
        {"question": "what is \\ud800?", "answer": "text"}
    ]


def test_either_sharegpt_convention_is_taken_per_message_and_gives_the_openai_hash(tmp_path):
    names = {
        "system": ["system", "system"],
        "user": ["human", "user"],
        "assistant": ["assistant", "gpt"],
    }
    conversations = []
    for chat in CHAT:
        turns = [{"from": names[r][(i // 2) % 2], "value": c} for i, (r, c) in enumerate(chat)]
        conversations.append({"conversations": turns})
    mixed = write_jsonl(tmp_path / "mixed.jsonl", conversations)
    role_key = [
        {
            "messages": [
                {"role": names[r][1 - (i // 2) % 2], "content": c} for i, (r, c) in enumerate(chat)
            ]
        }
        for chat in CHAT
    ]
    other = write_jsonl(tmp_path / "roles.jsonl", role_key)
    openai = write_jsonl(tmp_path / "openai.jsonl", openai_chats())
    hashes = {
        import_file(p, p.name, out_dir=tmp_path / f"out-{p.stem}").sha256
        for p in (mixed, other, openai)
    }
    assert len(hashes) == 1


def test_an_alpaca_record_may_leave_its_optional_input_null(tmp_path):
    path = write_json(
        tmp_path / "a.json", [{"instruction": "Say hi", "input": None, "output": "Hi"}]
    )
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    assert list(iter_rows(result.canonical_path)) == [
        {"instruction": "Say hi", "input": "", "output": "Hi"}
    ]


def test_a_preference_pair_whose_answers_differ_imports(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "Rest.", "rejected": "Rest!"}]
    )
    assert import_file(path, path.name, out_dir=tmp_path / "out").rows == 1


def test_a_float_too_large_in_an_unmapped_column_is_not_read_and_imports(tmp_path):
    # Valid JSON that no role reads (see workers.data.limits): only integers too long to parse
    # are refused wherever they are.
    path = tmp_path / "f.jsonl"
    path.write_text('{"question": "q", "answer": "a", "score": 1e999}\n', encoding="utf-8")
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    assert result.rows == 1


def test_hostile_files_leave_good_qa_untouched(tmp_path):
    # Guard against the strict JSON reader changing what good files give.
    for name, build in (
        ("q.jsonl", lambda p: write_jsonl(p, qa_records())),
        ("q.json", lambda p: write_json(p, qa_records())),
    ):
        path = build(tmp_path / name)
        result = import_file(path, path.name, out_dir=tmp_path / f"out-{name}")
        assert Path(result.canonical_path).read_bytes() == expected_jsonl(qa_records())
        assert result.rows == len(QA)
