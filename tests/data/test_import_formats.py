"""One test per supported format and encoding, and the same content giving the same version hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.data.import_samples import (
    CHAT,
    QA,
    expected_jsonl,
    jpeg,
    listing,
    openai_chats,
    png,
    qa_records,
    sharegpt_chats,
    write_csv,
    write_json,
    write_jsonl,
    write_zip,
)
from workers.data import Mapping, import_file, iter_rows, sniff

QA_HASH = hashlib.sha256(expected_jsonl(qa_records())).hexdigest()


def _import(tmp_path, path, **kwargs):
    return import_file(path, path.name, out_dir=tmp_path / "out", **kwargs)


def _assert_qa(result, tmp_path, *, fmt, encoding):
    assert result.sha256 == QA_HASH
    assert result.rows == len(QA)
    assert result.schema == "qa"
    assert result.format == fmt
    assert result.encoding == encoding
    assert listing(tmp_path / "out") == ["data.jsonl"]
    data = Path(result.canonical_path).read_bytes()
    assert data == expected_jsonl(qa_records())
    assert hashlib.sha256(data).hexdigest() == result.sha256


def test_it_imports_a_utf8_csv_with_chinese_column_names(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["问题", "答案"], QA)
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="csv", encoding="utf-8")
    assert result.mapping == Mapping("qa", {"question": "问题", "answer": "答案"})
    assert result.columns == ["问题", "答案"]


def test_it_imports_a_utf8_csv_with_a_bom(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["问题", "答案"], QA, bom=True)
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="csv", encoding="utf-8-sig")
    assert result.columns == ["问题", "答案"]  # the BOM is not part of the first column name


def test_it_imports_a_gbk_csv_without_a_bom(tmp_path):
    path = write_csv(tmp_path / "medical_qa.csv", ["问题", "回答"], QA, encoding="gbk")
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="csv", encoding="gb18030")  # GBK is a subset of GB18030


def test_a_gbk_csv_behind_a_utf8_bom_imports_once_its_encoding_is_chosen(tmp_path):
    # What some tools write: a UTF-8 BOM in front of GBK bytes (the medical_qa.csv). The
    # BOM claims UTF-8, so guessing is refused (see the bad-input catalogue); choosing GBK works.
    path = write_csv(tmp_path / "medical_qa.csv", ["问题", "答案"], QA, encoding="gbk", bom=True)
    result = _import(tmp_path, path, encoding="gbk")
    _assert_qa(result, tmp_path, fmt="csv", encoding="gbk")
    assert result.columns == ["问题", "答案"]  # the BOM is not part of the first column name


def test_it_imports_a_gb18030_csv_with_characters_outside_gbk(tmp_path):
    rows = [("𠮷野家的“𠮷”怎么读?", "读作 jí;这个字不在 GBK 里。"), *QA]
    path = write_csv(tmp_path / "qa.csv", ["question", "answer"], rows, encoding="gb18030")
    with pytest.raises(UnicodeEncodeError):
        rows[0][0].encode("gbk")
    result = _import(tmp_path, path)
    assert result.encoding == "gb18030"
    first = next(iter_rows(result.canonical_path))
    assert first == {"question": rows[0][0], "answer": rows[0][1]}


def test_it_takes_an_explicit_encoding(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["问题", "答案"], QA, encoding="gbk")
    result = _import(tmp_path, path, encoding="gbk")
    _assert_qa(result, tmp_path, fmt="csv", encoding="gbk")


def test_it_imports_a_tsv(tmp_path):
    path = write_csv(tmp_path / "qa.tsv", ["question", "answer"], QA, delimiter="\t")
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="tsv", encoding="utf-8")


def test_it_detects_tabs_in_a_file_without_a_telling_name(tmp_path):
    path = write_csv(tmp_path / "upload.txt", ["question", "answer"], QA, delimiter="\t")
    assert sniff(path, path.name).format == "tsv"


def test_it_imports_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_records())
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="jsonl", encoding="utf-8")


def test_it_imports_a_json_array(tmp_path):
    path = write_json(tmp_path / "qa.json", qa_records())
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="json", encoding="utf-8")


def test_it_streams_a_json_array_larger_than_its_read_chunk(tmp_path):
    records = [{"question": f"问题 {i} " + "x" * 300, "answer": f"answer {i}"} for i in range(5000)]
    path = write_json(tmp_path / "big.json", records)
    assert path.stat().st_size > 1.5 * 2**20
    result = _import(tmp_path, path)
    assert result.rows == 5000
    assert Path(result.canonical_path).read_bytes() == expected_jsonl(records)


def test_it_imports_alpaca_as_a_json_array_and_as_jsonl(tmp_path):
    records = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    records[1]["input"] = "context: adult"
    array = _import(tmp_path, write_json(tmp_path / "alpaca.json", records))
    assert (array.format, array.schema, array.rows) == ("alpaca", "instruction", len(QA))
    lines = import_file(
        write_jsonl(tmp_path / "alpaca.jsonl", records), "alpaca.jsonl", out_dir=tmp_path / "out2"
    )
    assert lines.format == "alpaca"
    assert lines.sha256 == array.sha256
    assert list(iter_rows(array.canonical_path)) == records


def test_alpaca_records_may_leave_out_the_input(tmp_path):
    records = [{"instruction": q, "output": a} for q, a in QA]
    records[0]["input"] = "上下文"
    result = _import(tmp_path, write_jsonl(tmp_path / "alpaca.jsonl", records))
    rows = list(iter_rows(result.canonical_path))
    assert rows[0]["input"] == "上下文"
    assert rows[1] == {"instruction": QA[1][0], "input": "", "output": QA[1][1]}


def test_it_imports_sharegpt(tmp_path):
    result = _import(tmp_path, write_json(tmp_path / "sharegpt.json", sharegpt_chats()))
    assert (result.format, result.schema, result.rows) == ("sharegpt", "chat", len(CHAT))
    first = next(iter_rows(result.canonical_path))
    assert first["messages"][0] == {"role": "system", "content": "你是一名医生。"}
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]


def test_it_imports_openai_chat_jsonl(tmp_path):
    result = _import(tmp_path, write_jsonl(tmp_path / "chat.jsonl", openai_chats()))
    assert (result.format, result.schema, result.rows) == ("openai_chat", "chat", len(CHAT))
    assert list(iter_rows(result.canonical_path)) == openai_chats()


def test_openai_content_parts_are_joined_as_text(tmp_path):
    chats = openai_chats()
    chats[1]["messages"][0]["content"] = [
        {"type": "text", "text": "Hel"},
        {"type": "text", "text": "lo"},
    ]
    parts = _import(tmp_path, write_jsonl(tmp_path / "chat.jsonl", chats))
    plain = import_file(
        write_jsonl(tmp_path / "plain.jsonl", openai_chats()),
        "plain.jsonl",
        out_dir=tmp_path / "o2",
    )
    assert parts.sha256 == plain.sha256


def test_it_imports_preference_pairs_from_jsonl_and_csv(tmp_path):
    pairs = [("写一句问候", "你好,祝你今天愉快!", "走开"), ("Say hi", "Hello there!", "No.")]
    jsonl = write_jsonl(
        tmp_path / "pairs.jsonl", [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs]
    )
    result = _import(tmp_path, jsonl)
    assert (result.format, result.schema, result.rows) == ("preference", "preference", 2)
    from_csv = import_file(
        write_csv(tmp_path / "pairs.csv", ["prompt", "chosen", "rejected"], pairs),
        "pairs.csv",
        out_dir=tmp_path / "o2",
    )
    assert (from_csv.format, from_csv.schema) == ("csv", "preference")
    assert from_csv.sha256 == result.sha256


def test_legacy_prompt_completion_jsonl_imports_as_qa(tmp_path):
    records = [{"prompt": q, "completion": a} for q, a in QA]
    result = _import(tmp_path, write_jsonl(tmp_path / "legacy.jsonl", records))
    assert result.mapping == Mapping("qa", {"question": "prompt", "answer": "completion"})
    assert result.sha256 == QA_HASH


def _image_pairs():
    return [
        ("images/cat.png", png(color=(255, 0, 0)), "一只红色的猫"),
        ("images/dog.jpg", jpeg(color=(0, 0, 255)), "a blue dog"),
        ("images/sub/bird.png", png(4, 6, color=(0, 255, 0)), "a green bird"),
    ]


def test_it_imports_an_image_zip_with_caption_files(tmp_path):
    entries = []
    for name, data, caption in _image_pairs():
        entries += [(name, data), (name.rsplit(".", 1)[0] + ".txt", caption + "\n")]
    entries += [("__MACOSX/images/._cat.png", b"\x00\x05junk"), ("README.md", b"hello")]
    result = _import(tmp_path, write_zip(tmp_path / "set.zip", entries))
    assert (result.format, result.schema, result.rows, result.encoding) == (
        "image_zip",
        "image_caption",
        3,
        None,
    )
    rows = list(iter_rows(result.canonical_path))
    by_caption = {r["caption"]: r["image"] for r in rows}
    for _name, data, caption in _image_pairs():
        ext = "jpg" if _name.endswith(".jpg") else "png"
        assert by_caption[caption] == f"{hashlib.sha256(data).hexdigest()}.{ext}"
        assert Path(os.path.join(result.images_dir, by_caption[caption])).read_bytes() == data
    assert sorted(listing(tmp_path / "out")) == sorted(
        ["data.jsonl", "images"] + [f"images/{r['image']}" for r in rows]
    )
    assert any("README.md" in w for w in result.warnings)


def test_it_imports_an_image_zip_with_metadata_jsonl(tmp_path):
    metadata = "".join(
        json.dumps({"file_name": name.removeprefix("images/"), "text": caption}, ensure_ascii=False)
        + "\n"
        for name, _data, caption in sorted(_image_pairs())
    )
    entries = [(name, data) for name, data, _ in _image_pairs()] + [
        ("images/metadata.jsonl", metadata)
    ]
    result = _import(tmp_path, write_zip(tmp_path / "meta.zip", entries))
    assert (result.schema, result.rows) == ("image_caption", 3)
    # The same images and captions as caption files, zipped in another order: the same version.
    pairs = []
    for name, data, caption in reversed(_image_pairs()):
        pairs += [(name.rsplit(".", 1)[0] + ".txt", caption), (name, data)]
    other = import_file(
        write_zip(tmp_path / "pairs.zip", pairs), "pairs.zip", out_dir=tmp_path / "o2"
    )
    assert other.sha256 == result.sha256


def test_metadata_may_call_the_caption_caption(tmp_path):
    entries = [
        ("a.png", png()),
        ("metadata.jsonl", json.dumps({"file_name": "a.png", "caption": "red"})),
    ]
    result = _import(tmp_path, write_zip(tmp_path / "m.zip", entries))
    assert result.mapping == Mapping("image_caption", {"image": "file_name", "caption": "caption"})
    assert next(iter_rows(result.canonical_path))["caption"] == "red"


def test_the_same_content_in_every_qa_format_has_one_hash(tmp_path):
    files = [
        write_csv(tmp_path / "a.csv", ["问题", "答案"], QA, encoding="gbk"),
        write_csv(tmp_path / "b.csv", ["Question", "Answer"], QA, bom=True),
        write_csv(tmp_path / "c.tsv", ["q", "a"], QA, delimiter="\t"),
        write_csv(
            tmp_path / "d.csv", ["id", "问题", "回答"], [(str(i), *r) for i, r in enumerate(QA)]
        ),
        write_jsonl(tmp_path / "e.jsonl", qa_records()),
        write_json(tmp_path / "f.json", [{"answer": a, "question": q, "n": 1} for q, a in QA]),
        write_jsonl(
            tmp_path / "g.jsonl", [{"问题": q, "答案": a} for q, a in QA], encoding="gb18030"
        ),
    ]
    hashes = {
        f.name: import_file(f, f.name, out_dir=tmp_path / f"out-{f.name}").sha256 for f in files
    }
    assert set(hashes.values()) == {QA_HASH}, hashes


def test_sharegpt_and_openai_chat_with_the_same_turns_have_one_hash(tmp_path):
    a = _import(tmp_path, write_json(tmp_path / "s.json", sharegpt_chats()))
    b = import_file(
        write_jsonl(tmp_path / "o.jsonl", openai_chats()), "o.jsonl", out_dir=tmp_path / "o"
    )
    assert a.sha256 == b.sha256


def test_windows_line_endings_inside_cells_do_not_change_the_hash(tmp_path):
    rows = [(q, a.replace("\n", "\r\n")) for q, a in QA]
    result = _import(tmp_path, write_csv(tmp_path / "crlf.csv", ["问题", "答案"], rows))
    assert result.sha256 == QA_HASH


def test_progress_is_reported_up_to_the_file_size(tmp_path):
    rows = [(f"问题 {i}", f"answer {i}") for i in range(10_000)]
    path = write_csv(tmp_path / "many.csv", ["问题", "答案"], rows)
    calls = []
    result = _import(tmp_path, path, progress=lambda done, total: calls.append((done, total)))
    assert result.rows == 10_000
    size = path.stat().st_size
    assert len(calls) >= 2
    assert all(total == size and 0 <= done <= size for done, total in calls)
    assert calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_an_exception_from_progress_cancels_and_leaves_nothing(tmp_path):
    rows = [(f"问题 {i}", f"answer {i}") for i in range(10_000)]
    path = write_csv(tmp_path / "many.csv", ["问题", "答案"], rows)
    (tmp_path / "out").mkdir()

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _import(tmp_path, path, progress=cancel)
    assert listing(tmp_path / "out") == []


def test_it_refuses_to_overwrite_an_earlier_import(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_records())
    _import(tmp_path, path)
    with pytest.raises(FileExistsError):
        _import(tmp_path, path)


def test_it_imports_utf16_text_with_a_bom(tmp_path):
    path = write_csv(tmp_path / "excel.csv", ["问题", "答案"], QA, encoding="utf-16")
    result = _import(tmp_path, path)
    _assert_qa(result, tmp_path, fmt="csv", encoding="utf-16")


def test_identical_images_are_stored_once(tmp_path):
    data = png()
    path = write_zip(
        tmp_path / "same.zip",
        [("a.png", data), ("a.txt", "one"), ("b.png", data), ("b.txt", "two")],
    )
    result = _import(tmp_path, path)
    assert result.rows == 2
    assert os.listdir(result.images_dir) == [hashlib.sha256(data).hexdigest() + ".png"]


def test_an_image_with_the_wrong_extension_is_stored_by_its_real_format(tmp_path):
    data = jpeg()
    result = _import(
        tmp_path, write_zip(tmp_path / "x.zip", [("photo.png", data), ("photo.txt", "p")])
    )
    assert (
        next(iter_rows(result.canonical_path))["image"] == hashlib.sha256(data).hexdigest() + ".jpg"
    )


def test_errors_survive_pickling_between_processes(tmp_path):
    import pickle

    from workers.data import DatasetError, DatasetInvalid

    error = DatasetError("is empty", row=17, column="answer", code="empty")
    invalid = DatasetInvalid([error], total=5)
    again = pickle.loads(pickle.dumps(invalid))
    assert again.total == 5
    assert again.messages == ['row 17: column "answer" is empty']
    assert (again.errors[0].row, again.errors[0].code) == (17, "empty")
    assert str(pickle.loads(pickle.dumps(error))) == 'row 17: column "answer" is empty'


def test_the_package_imports_without_django_or_celery():
    import subprocess
    import sys

    probe = (
        "import json, sys, workers.data, workers.data.stats, workers.data.importer;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'celery', 'channels', 'apps', 'webapp'))))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_memory_stays_flat_as_the_file_grows(tmp_path, kind):
    import tracemalloc

    def build(rows: int):
        records = [
            {"question": f"问题 {i} " + "内容" * 20, "answer": f"answer {i} " + "text " * 20}
            for i in range(rows)
        ]
        if kind == "csv":
            return write_csv(
                tmp_path / f"{rows}.csv",
                ["question", "answer"],
                [(r["question"], r["answer"]) for r in records],
            )
        return write_json(tmp_path / f"{rows}.json", records)

    peaks = []
    for rows in (4_000, 32_000):
        path = build(rows)
        tracemalloc.start()
        try:
            result = import_file(path, path.name, out_dir=tmp_path / f"out-{rows}")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert result.rows == rows
    size = path.stat().st_size
    assert size > 7 * 2**20
    assert peaks[1] < peaks[0] * 1.2 + 256 * 1024, peaks  # 8x the rows, about the same peak
    assert peaks[1] < 6 * 2**20 < size, (peaks, size)
