"""A catalogue of bad uploads: each is refused with its own error, and the output folder stays empty."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.data.import_samples import (
    QA,
    listing,
    openai_chats,
    png,
    png_header_only,
    qa_records,
    sharegpt_chats,
    symlink_info,
    write_csv,
    write_json,
    write_jsonl,
    write_zip,
)
from workers.data import DatasetInvalid, ImportLimits, Mapping, import_file

MB = 1024 * 1024


@dataclass
class Bad:
    id: str
    build: Callable[[Path], Path]
    message: str  # the first error's text: exact, or a regex when it starts with "re:"
    code: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    row: int | None = None
    line: int | None = None
    column: str | None = None
    path: str | None = None


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return p

    return build


def _csv(name: str, header: list[str], rows: list, **kw: Any) -> Callable[[Path], Path]:
    return lambda tmp: write_csv(tmp / name, header, rows, **kw)


def _jsonl(name: str, records: list, **kw: Any) -> Callable[[Path], Path]:
    return lambda tmp: write_jsonl(tmp / name, records, **kw)


def _lines(name: str, *lines: str) -> Callable[[Path], Path]:
    return _bytes(name, "".join(lines).encode())


def _zip(name: str, entries: list, **kw: Any) -> Callable[[Path], Path]:
    return lambda tmp: write_zip(tmp / name, entries, **kw)


def _chat(messages: list) -> Callable[[Path], Path]:
    return _jsonl("chat.jsonl", [{"messages": messages}])


def _lying_zip(tmp: Path) -> Path:
    """A member whose headers declare fewer bytes than it really unpacks to."""
    p = write_zip(
        tmp / "liar.zip",
        [("a.png", png()), ("a.txt", "red"), ("b.png", b"\x00" * 50_000), ("b.txt", "x")],
    )
    data = bytearray(p.read_bytes())
    local = data.find(b"PK\x03\x04b.png"[:4], data.find(b"b.png") - 30)
    central = data.find(b"PK\x01\x02", data.rfind(b"a.txt"))
    for header, offset in ((local, 22), (central, 24)):
        data[header + offset : header + offset + 4] = (100).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    return p


def _after_sample(bad: bytes) -> Callable[[Path], Path]:
    good = "".join(f"问题 {i},answer {i}\n" for i in range(6000)).encode()
    assert len(good) > 64 * 1024
    return _bytes("late.csv", b"question,answer\n" + good + b"caf" + bad + b",ok\n")


def _encrypted(tmp: Path) -> Path:
    """zipfile cannot write encrypted members: set the "encrypted" flag bit in both headers."""
    p = write_zip(tmp / "enc.zip", [("a.png", png()), ("a.txt", "x"), ("secret.png", png())])
    data = bytearray(p.read_bytes())
    name = data.find(b"secret.png")
    local = data.rfind(b"PK\x03\x04", 0, name)
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"secret.png"))
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    p.write_bytes(bytes(data))
    return p


def _duplicate_members(tmp: Path) -> Path:
    with pytest.warns(UserWarning, match="Duplicate name"):
        return write_zip(tmp / "dup.zip", [("a.png", png()), ("a.txt", "x"), ("a.png", png())])


CHINESE_QA_GBK = "问题,答案\n头痛怎么办,多休息\n".encode("gbk")
QA_LINE = '{"question": "q", "answer": "a"}\n'
BOM = b"\xef\xbb\xbf"

CASES = [
    # --- whole-file problems -------------------------------------------------------------------
    Bad("empty-file", _bytes("e.csv", b""), "the file is empty", "empty_file"),
    Bad(
        "blank-lines-only",
        _bytes("e.jsonl", b"\n \n\t\n"),
        "the file is empty (only blank lines)",
        "empty_file",
    ),
    Bad(
        "header-only",
        _csv("h.csv", ["问题", "答案"], []),
        "the file has a header but no data rows",
        "no_rows",
    ),
    Bad("empty-json-array", _bytes("a.json", b"[ ]"), "the file has no records", "no_rows"),
    Bad(
        "too-big",
        _csv("big.csv", ["q", "a"], QA),
        "re:the file is .* bytes; the limit is 100 bytes",
        "file_too_big",
        kwargs={"limits": ImportLimits(max_file_bytes=100)},
    ),
    Bad(
        "binary-nul",
        _bytes("x.csv", b"q,a\n\x00\x01\x02\x03,b\n"),
        "the file looks binary (line 2 has a NUL byte, at byte 5 of the file); upload CSV, JSON or "
        "JSONL text, or save UTF-16 text as UTF-8",
        "binary",
    ),
    Bad(
        "gzip",
        _bytes("qa.csv.gz", gzip.compress(b"q,a\n1,2\n")),
        "compressed files other than a zip of images are not supported: upload the CSV, JSON or JSONL file itself",
        "archive",
    ),
    Bad(
        "undecodable-latin1",
        _bytes("l.csv", "question,answer\ncafé,latte\n".encode("latin-1")),
        "the file is not UTF-8, GBK or GB18030 text (line 2 has the byte 0xe9); save it as UTF-8 or choose its encoding",
        "bad_encoding",
    ),
    Bad(
        "wrong-explicit-encoding",
        _bytes("g.csv", CHINESE_QA_GBK),
        "line 1: not valid UTF-8 text (byte 0xce); choose the file's encoding",
        "bad_encoding",
        kwargs={"encoding": "utf-8"},
        line=1,
    ),
    Bad(
        "undecodable-after-sample",
        _after_sample(b"\xff"),
        "line 6002: not valid UTF-8 text (byte 0xff); choose the file's encoding",
        "bad_encoding",
        line=6002,
    ),
    Bad(
        "truncated-multibyte",
        _bytes("t.csv", CHINESE_QA_GBK[:-4]),
        "line 2: the file ends in the middle of a character (is it truncated?)",
        "truncated",
        line=2,
    ),
    Bad(
        "unknown-encoding",
        _csv("q.csv", ["q", "a"], QA),
        'unknown encoding "klingon"',
        "bad_encoding",
        kwargs={"encoding": "klingon"},
    ),
    Bad(
        "too-many-rows",
        _csv("q.csv", ["q", "a"], QA),
        "more than 3 rows (the limit)",
        "too_many_rows",
        kwargs={"limits": ImportLimits(max_rows=3)},
    ),
    Bad(
        "no-mapping-guess",
        _csv("x.csv", ["foo", "bar", "baz"], [("1", "2", "3")]),
        'cannot tell which columns hold what: choose a mapping (columns found: "foo", "bar", "baz")',
        "no_mapping",
    ),
    # --- CSV --------------------------------------------------------------------------------------
    Bad(
        "missing-columns",
        _csv("m.csv", ["q", "a"], QA),
        'missing columns "问题", "答案" (found: "q", "a")',
        "missing_columns",
        kwargs={"mapping": Mapping("qa", {"question": "问题", "answer": "答案"})},
    ),
    Bad(
        "missing-one-column",
        _csv("m.csv", ["问题", "回答"], QA),
        'missing column "答案" (found: "问题", "回答")',
        "missing_columns",
        kwargs={"mapping": Mapping("qa", {"question": "问题", "answer": "答案"})},
    ),
    Bad(
        "empty-cell",
        _csv("e.csv", ["问题", "答案"], [QA[0], ("头痛怎么办?", "")]),
        'row 2: column "答案" is empty',
        "empty",
        row=2,
        column="答案",
    ),
    Bad(
        "blank-cell",
        _csv("e.csv", ["question", "answer"], [QA[0], QA[1], ("   ", "a")]),
        'row 3: column "question" is empty',
        "empty",
        row=3,
        column="question",
    ),
    Bad(
        "cell-count",
        _bytes("c.csv", "问题,答案\n头痛,多休息,多喝水\n".encode()),
        "row 1: has 3 cells but the header has 2 (a comma inside a cell that is not quoted?)",
        "cell_count",
        row=1,
    ),
    Bad(
        "duplicate-columns",
        _csv("d.csv", ["question", "answer", "question"], [("a", "b", "c")]),
        'the header repeats column "question" (columns 1 and 3)',
        "duplicate_column",
    ),
    Bad(
        "100k-columns",
        _bytes("wide.csv", (",".join(f"c{i}" for i in range(100_000)) + "\n1,2\n").encode()),
        "the header has 100,000 columns; the limit is 1,000",
        "too_many_columns",
    ),
    Bad(
        "10mb-line-csv",
        _bytes("long.csv", b"question,answer\n" + b"x" * (10 * MB) + b",y\n"),
        "line 2: longer than 4,194,304 characters (the limit)",
        "line_too_long",
        line=2,
    ),
    Bad(
        "huge-cell",
        _bytes("cell.csv", b'question,answer\nq,"' + b"y" * (2 * MB) + b'"\n'),
        'row 1, line 2: column "answer" is longer than 1,048,576 characters (the limit)',
        "cell_too_long",
        row=1,
        line=2,
        column="answer",
    ),
    Bad(
        "unclosed-quote",
        _bytes("t.csv", b'question,answer\nq1,a1\nq2,"a2 is cut\n'),
        "row 2: a quoted cell is not closed before the end of the file (is it truncated?)",
        "truncated",
        row=2,
    ),
    Bad(
        "text-after-quote",
        _bytes("t.csv", b'question,answer\n"q1"x,a1\n'),
        'row 1: text follows a closing quote (write a quote inside a quoted cell as "")',
        "bad_quote",
        row=1,
    ),
    Bad(
        "nul-after-sample",
        _after_sample(b"\x00"),
        'row 6001: column "question" has a NUL character (is this a binary file?)',
        "binary",
        row=6001,
    ),
    Bad(
        "header-line-empty",
        _bytes("n.csv", b"\nq,a\n1,2\n"),
        "the first line is empty; it must be the header with the column names",
        "no_header",
    ),
    # --- JSON Lines -------------------------------------------------------------------------------
    Bad(
        "invalid-json-line",
        _lines(
            "b.jsonl", '{"question": "q", "answer": "a"}\n', '{"question": "q2" "answer": "a2"}\n'
        ),
        "line 2: not valid JSON (Expecting ',' delimiter at char 18)",
        "invalid_json",
        line=2,
    ),
    Bad(
        "truncated-jsonl",
        _lines("t.jsonl", '{"question": "q", "answer": "a"}\n', '{"question": "q2", "answ'),
        "line 2: not valid JSON (Unterminated string starting at char 19); the file ends here: is it truncated?",
        "invalid_json",
        line=2,
    ),
    Bad(
        "10mb-line-jsonl",
        _lines("l.jsonl", '{"question": "' + "x" * (10 * MB) + '", "answer": "a"}\n'),
        "line 1: longer than 4,194,304 characters (the limit)",
        "line_too_long",
        line=1,
    ),
    Bad(
        "deep-nesting-jsonl",
        _lines("d.jsonl", '{"question": "q", "answer": "a", "x": ' + "[" * 40 + "]" * 40 + "}\n"),
        "line 1: nested deeper than 32 levels (the limit)",
        "too_deep",
        line=1,
    ),
    Bad(
        "jsonl-line-is-array",
        _lines("a.jsonl", '{"question": "q", "answer": "a"}\n', '["q", "a"]\n'),
        "line 2: expected a JSON object, got an array",
        "not_object",
        line=2,
    ),
    Bad(
        "missing-key",
        _jsonl("k.jsonl", [qa_records()[0], {"question": "q2"}]),
        'line 2: column "answer" is missing',
        "missing",
        line=2,
        column="answer",
    ),
    Bad(
        "null-value",
        _jsonl("n.jsonl", [{"question": "q", "answer": None}]),
        'line 1: column "answer" must be text, not null',
        "not_text",
        line=1,
        column="answer",
    ),
    Bad(
        "list-value",
        _jsonl("l.jsonl", [{"question": "q", "answer": ["a", "b"]}]),
        'line 1: column "answer" must be text, not a list',
        "not_text",
        line=1,
        column="answer",
    ),
    Bad(
        "bool-value",
        _jsonl("b.jsonl", [{"question": "q", "answer": True}]),
        'line 1: column "answer" must be text, not the boolean true',
        "not_text",
        line=1,
        column="answer",
    ),
    Bad(
        "huge-value",
        _jsonl("h.jsonl", [{"question": "q", "answer": "y" * (2 * MB)}]),
        'line 1: column "answer" is 2,097,152 characters long; the limit is 1,048,576',
        "cell_too_long",
        line=1,
    ),
    Bad(
        "too-many-keys",
        _jsonl("k.jsonl", [{**qa_records()[0], "x": 1, "y": 2}]),
        "line 1: has 4 keys; the limit is 3",
        "too_many_columns",
        line=1,
        kwargs={"limits": ImportLimits(max_columns=3)},
    ),
    Bad(
        "lone-surrogate",
        _lines("s.jsonl", '{"question": "bad \\ud800 half", "answer": "a"}\n'),
        'line 1: column "question": a lone UTF-16 surrogate \\ud800 is not valid Unicode',
        "bad_unicode",
        line=1,
        column="question",
    ),
    Bad(
        "pretty-printed-object",
        _lines("obj.json", '{\n  "question": "q",\n  "answer": "a"\n}\n'),
        "the file is one JSON object, not a list of records: upload an array of objects "
        "[{…}, {…}], or one object per line (JSONL)",
        "not_array",
    ),
    # --- JSON arrays ------------------------------------------------------------------------------
    Bad(
        "array-of-numbers",
        _bytes("n.json", b"[1, 2, 3]"),
        "row 1: expected a JSON object, got a number",
        "not_object",
        row=1,
    ),
    Bad(
        "array-of-strings",
        _bytes("s.json", b'["q", "a"]'),
        "row 1: expected a JSON object, got a string",
        "not_object",
        row=1,
    ),
    Bad(
        "array-missing-comma",
        _bytes(
            "m.json", b'[\n{"question": "q", "answer": "a"}\n{"question": "q2", "answer": "a2"}\n]'
        ),
        "line 3: not valid JSON (Expecting ',' delimiter at char 0)",
        "invalid_json",
        line=3,
    ),
    Bad(
        "array-bad-value",
        _bytes("v.json", b'[{"question": "q", "answer": "a"},\n {"question": tru, "answer": "b"}]'),
        "line 2: not valid JSON (Expecting value at char 14)",
        "invalid_json",
        line=2,
    ),
    Bad(
        "array-truncated",
        _bytes("t.json", b'[{"question": "q", "answer": "a"},\n {"question": "q2", "ans'),
        "line 2: not valid JSON (Unterminated string starting at char 20); the file ends here: is it truncated?",
        "truncated",
        line=2,
    ),
    Bad(
        "array-not-closed",
        _bytes("c.json", b'[{"question": "q", "answer": "a"},\n'),
        "line 2: the JSON array is not closed: the file ends here (is it truncated?)",
        "truncated",
        line=2,
    ),
    Bad(
        "array-trailing-text",
        _bytes("x.json", b'[{"question": "q", "answer": "a"}] extra'),
        "line 1: text after the end of the JSON array (at char 35)",
        "invalid_json",
        line=1,
    ),
    Bad(
        "deep-nesting-array",
        _bytes(
            "d.json", b'[{"question": "q", "answer": "a", "x": ' + b"[" * 40 + b"]" * 40 + b"}]"
        ),
        "row 1: nested deeper than 32 levels (the limit)",
        "too_deep",
        row=1,
    ),
    Bad(
        "very-deep-nesting-array",
        _bytes("d.json", b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]"),
        "line 1: element 1 is nested too deeply (32 levels is the limit)",
        "too_deep",
        line=1,
    ),
    # --- chat, ShareGPT, preference -------------------------------------------------------------------
    Bad(
        "sharegpt-unknown-from",
        lambda t: write_json(
            t / "s.json",
            [
                {
                    "conversations": [
                        {"from": "human", "value": "hi"},
                        {"from": "robot", "value": "beep"},
                    ]
                }
            ],
        ),
        'row 1: column "conversations", message 2: unknown "from" value "robot" '
        "(expected system, user, human, assistant or gpt)",
        "bad_role",
        row=1,
        column="conversations",
    ),
    Bad(
        "chat-no-messages",
        _chat([]),
        'line 1: column "messages" has no messages',
        "empty",
        line=1,
        column="messages",
    ),
    Bad(
        "chat-messages-not-a-list",
        _chat("hello"),
        'line 1: column "messages" must be a list of messages, not a string',
        "not_messages",
        line=1,
    ),
    Bad(
        "chat-unknown-role",
        _chat([{"role": "bot", "content": "x"}]),
        'line 1: column "messages", message 1: unknown role "bot" '
        "(expected system, user, human, assistant or gpt)",
        "bad_role",
        line=1,
    ),
    Bad(
        "chat-message-shape",
        _chat([{"speaker": "user", "text": "x"}]),
        'line 1: column "messages", message 1: has neither "role" nor "from"',
        "bad_message",
        line=1,
    ),
    Bad(
        "chat-empty-content",
        _chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]),
        'line 1: column "messages", message 2: content is empty',
        "empty",
        line=1,
    ),
    Bad(
        "chat-no-assistant",
        _chat([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]),
        'line 1: column "messages" has no assistant message',
        "no_assistant",
        line=1,
    ),
    Bad(
        "chat-image-part",
        _chat(
            [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": "a"},
            ]
        ),
        'line 1: column "messages", message 1: has a "image_url" content part; only text is supported',
        "not_text",
        line=1,
    ),
    Bad(
        "preference-empty-rejected",
        _jsonl("p.jsonl", [{"prompt": "p", "chosen": "c", "rejected": ""}]),
        'line 1: column "rejected" is empty',
        "empty",
        line=1,
        column="rejected",
    ),
    # --- hostile JSON: numbers, repeated keys, invalid Unicode, values of the wrong type -------------
    Bad(
        "jsonl-5000-digit-number",
        _lines("n.jsonl", QA_LINE, '{"question": "q", "answer": "a", "n": ' + "9" * 5000 + "}\n"),
        'line 2: column "n" is a number with 5,000 digits; the limit is 4,300',
        "number_too_big",
        line=2,
        column="n",
    ),
    Bad(
        "json-array-5000-digit-number",
        _bytes("n.json", b'[{"question": "q", "answer": "a"},\n {"n": -' + b"1" * 5000 + b"}]"),
        'row 2, line 2: column "n" is a number with 5,000 digits; the limit is 4,300',
        "number_too_big",
        row=2,
        line=2,
        column="n",
    ),
    Bad(
        "json-array-big-number-in-a-long-array",
        _bytes(
            "n.json",
            b"["
            + b'{"question": "q", "answer": "a"},\n' * 20_000
            + b'{"n": '
            + b"7" * 9000
            + b"}]",
        ),
        'row 20001, line 20001: column "n" is a number with 9,000 digits; the limit is 4,300',
        "number_too_big",
        row=20001,
    ),
    Bad(
        "jsonl-nan",
        _lines("n.jsonl", '{"question": "q", "answer": "a", "score": NaN}\n'),
        'line 1: column "score" is NaN, which JSON does not allow (write a number, or null)',
        "not_finite",
        line=1,
        column="score",
    ),
    Bad(
        "jsonl-infinity-in-a-text-column",
        _lines("n.jsonl", QA_LINE, QA_LINE, '{"question": "q", "answer": Infinity}\n'),
        'line 3: column "answer" is Infinity, which JSON does not allow (write a number, or null)',
        "not_finite",
        line=3,
        column="answer",
    ),
    Bad(
        "json-array-minus-infinity-nested",
        _bytes("n.json", b'[{"question": "q", "answer": "a", "meta": {"s": [1, -Infinity]}}]'),
        'row 1, line 1: column "meta", key "s", item 2 is -Infinity, which JSON does not allow '
        "(write a number, or null)",
        "not_finite",
        row=1,
        column="meta",
    ),
    Bad(
        "huge-exponent-in-a-text-column",
        _lines("e.jsonl", '{"question": "q", "answer": 1e999999}\n'),
        'line 1: column "answer" must be text, not a number too large to hold (it reads as infinity)',
        "not_text",
        line=1,
        column="answer",
    ),
    Bad(
        "number-in-a-text-column",
        _jsonl("n.jsonl", [qa_records()[0], {"question": "6 × 7?", "answer": 42}]),
        'line 2: column "answer" must be text, not a number (42); put it in quotes',
        "not_text",
        line=2,
        column="answer",
    ),
    Bad(
        "float-in-a-text-column",
        _jsonl("n.jsonl", [{"question": "pi?", "answer": 3.14}]),
        'line 1: column "answer" must be text, not a number (3.14); put it in quotes',
        "not_text",
        line=1,
        column="answer",
    ),
    Bad(
        "object-in-a-text-column",
        _jsonl("o.jsonl", [{"question": {"text": "q"}, "answer": "a"}]),
        'line 1: column "question" must be text, not an object',
        "not_text",
        line=1,
        column="question",
    ),
    Bad(
        "false-in-a-text-column",
        lambda t: write_json(t / "f.json", [{"question": "q", "answer": False}]),
        'row 1: column "answer" must be text, not the boolean false',
        "not_text",
        row=1,
        column="answer",
    ),
    Bad(
        "null-in-a-required-column",
        lambda t: write_json(t / "f.json", [{"instruction": None, "input": None, "output": "o"}]),
        'row 1: column "instruction" must be text, not null',
        "not_text",
        row=1,
        column="instruction",
    ),
    Bad(
        "number-as-message-content",
        _chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": 7}]),
        'line 1: column "messages", message 2: content must be text, not a number (7); put it in quotes',
        "not_text",
        line=1,
        column="messages",
    ),
    Bad(
        "jsonl-duplicate-key",
        _lines("d.jsonl", QA_LINE, '{"question": "q", "answer": "first", "answer": "second"}\n'),
        'line 2: column "answer" appears twice in one object (a key may appear only once)',
        "duplicate_key",
        line=2,
        column="answer",
    ),
    Bad(
        "json-array-duplicate-key",
        _bytes("d.json", b'[{"question": "q", "question": "q", "answer": "a"}]'),
        'row 1, line 1: column "question" appears twice in one object (a key may appear only once)',
        "duplicate_key",
        row=1,
        column="question",
    ),
    Bad(
        "duplicate-key-inside-a-message",
        _lines(
            "d.jsonl",
            '{"conversations": [{"from": "human", "value": "hi"}, '
            '{"from": "gpt", "value": "a", "from": "human"}]}\n',
        ),
        'line 1: column "conversations", item 2, key "from" appears twice in one object '
        "(a key may appear only once)",
        "duplicate_key",
        line=1,
        column="conversations",
    ),
    Bad(
        "lone-low-surrogate-in-a-json-array",
        _bytes("s.json", b'[{"question": "q", "answer": "x\\udc00y"}]'),
        'row 1, line 1: column "answer": a lone UTF-16 surrogate \\udc00 is not valid Unicode',
        "bad_unicode",
        row=1,
        column="answer",
    ),
    Bad(
        "surrogate-pair-in-the-wrong-order",
        _lines("s.jsonl", '{"question": "q", "answer": "\\ude00\\ud83d"}\n'),
        'line 1: column "answer": a lone UTF-16 surrogate \\ude00 is not valid Unicode',
        "bad_unicode",
        line=1,
        column="answer",
    ),
    Bad(
        "lone-surrogate-in-a-key",
        _lines("s.jsonl", '{"question": "q", "answer": "a", "note\\ud800": "x"}\n'),
        'line 1: column "note\\ud800": a lone UTF-16 surrogate \\ud800 in the name is not valid '
        "Unicode",
        "bad_unicode",
        line=1,
    ),
    Bad(
        "lone-surrogate-in-a-message",
        _lines(
            "chat.jsonl",
            '{"messages": [{"role": "user", "content": "hi"}, '
            '{"role": "assistant", "content": "\\ud83d"}]}\n',
        ),
        'line 1: column "messages", item 2, key "content": a lone UTF-16 surrogate \\ud83d is not '
        "valid Unicode",
        "bad_unicode",
        line=1,
        column="messages",
    ),
    Bad(
        "csv-messages-cell-with-nan",
        _csv("c.csv", ["messages"], [('[{"role": "user", "content": NaN}]',)]),
        'row 1: column "messages", message 1, key "content" is NaN, which JSON does not allow '
        "(write a number, or null)",
        "not_finite",
        row=1,
        column="messages",
        kwargs={"mapping": Mapping("chat", {"messages": "messages"})},
    ),
    Bad(
        "csv-messages-cell-nested-too-deep",
        _csv("c.csv", ["messages"], [("[" * 50_000,)]),
        'row 1: column "messages" holds JSON nested deeper than 32 levels',
        "too_deep",
        row=1,
        column="messages",
        kwargs={"mapping": Mapping("chat", {"messages": "messages"})},
    ),
    Bad(
        "json-top-level-object-holding-the-records",
        lambda t: write_json(t / "wrapped.json", {"data": qa_records()}),
        'the file is one JSON object, not a list of records; its key "data" holds 4 records: '
        "upload an array of objects [{…}, {…}], or one object per line (JSONL)",
        "not_array",
    ),
    Bad(
        "zip-name-on-a-text-file",
        _csv("data.zip", ["question", "answer"], QA),
        "the file is named .zip but is not a zip archive (is it damaged, or renamed?)",
        "bad_zip",
    ),
    Bad(
        "utf8-bom-in-front-of-gbk",
        _csv("medical_qa.csv", ["问题", "答案"], QA, encoding="gbk", bom=True),
        "the file starts with a UTF-8 byte-order mark but line 1 is not UTF-8 (byte 0xce); save it "
        "as UTF-8, or choose its encoding",
        "bad_encoding",
    ),
    Bad(
        "utf8-bom-in-front-of-gbk-after-the-sample",
        _bytes(
            "late.csv",
            BOM
            + b"question,answer\n"
            + "".join(f"q{i},a{i}\n" for i in range(8000)).encode()
            + "头痛,休息\n".encode("gbk"),
        ),
        "the file starts with a UTF-8 byte-order mark but line 8002 is not UTF-8 (byte 0xd0); save "
        "it as UTF-8, or choose its encoding",
        "bad_encoding",
    ),
    Bad(
        "utf16-lone-surrogate",
        _bytes("u.csv", "question,answer\nq,a\n".encode("utf-16") + b"\x00\xd8a\x00\n\x00"),
        "line 3: not valid UTF-16 text (byte 0x00); choose the file's encoding",
        "bad_encoding",
        line=3,
    ),
    Bad(
        "utf8-encoded-surrogate-in-csv",
        _bytes("s.csv", b"question,answer\ncaf\xed\xa0\x80,ok\n"),
        "the file is not UTF-8, GBK or GB18030 text (line 2 has the byte 0xed); save it as UTF-8 "
        "or choose its encoding",
        "bad_encoding",
    ),
    Bad(
        "nul-on-line-3-of-jsonl",
        _lines("n.jsonl", QA_LINE, QA_LINE, '{"question": "q\x00", "answer": "a"}\n'),
        "the file looks binary (line 3 has a NUL byte, at byte 82 of the file); upload CSV, JSON "
        "or JSONL text, or save UTF-16 text as UTF-8",
        "binary",
    ),
    Bad(
        "huge-cell-in-the-middle-column",
        _bytes("m.csv", b'question,answer,source\nq,a,s\nq,"' + b"y" * (2 * MB) + b'",s\n'),
        'row 2, line 3: column "answer" is longer than 1,048,576 characters (the limit)',
        "cell_too_long",
        row=2,
        line=3,
        column="answer",
    ),
    Bad(
        "huge-unquoted-last-cell",
        _bytes("m.csv", b"question,answer,source\nq,a," + b"y" * (2 * MB) + b"\n"),
        'row 1, line 2: column "source" is longer than 1,048,576 characters (the limit)',
        "cell_too_long",
        row=1,
        column="source",
    ),
    Bad(
        "huge-cell-over-many-lines",
        _bytes("m.csv", b'question,answer\nq1,a1\nq,"' + b"line\n" * 300_000 + b'"\n'),
        'row 2, line 3: column "answer" is longer than 1,048,576 characters (the limit)',
        "cell_too_long",
        row=2,
        line=3,
        column="answer",
    ),
    Bad(
        "preference-chosen-equals-rejected",
        _jsonl("p.jsonl", [{"prompt": "p", "chosen": "Rest.", "rejected": "Rest."}]),
        'line 1: column "rejected" is the same text as column "chosen" (a preference pair needs '
        "two different answers)",
        "same_answers",
        line=1,
        column="rejected",
    ),
    Bad(
        "preference-equal-after-newline-normalisation",
        _csv("p.csv", ["prompt", "chosen", "rejected"], [("p", "a\r\nb\n", " a\nb")]),
        'row 1: column "rejected" is the same text as column "chosen" (a preference pair needs '
        "two different answers)",
        "same_answers",
        row=1,
        column="rejected",
    ),
    Bad(
        "sharegpt-from-bot",
        _jsonl(
            "s.jsonl",
            [{"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "x"}]}],
        ),
        'line 1: column "conversations", message 2: unknown "from" value "bot" '
        "(expected system, user, human, assistant or gpt)",
        "bad_role",
        line=1,
        column="conversations",
    ),
    Bad(
        "sharegpt-from-an-object",
        _jsonl("s.jsonl", [{"conversations": [{"from": {"name": "x"}, "value": "hi"}]}]),
        'line 1: column "conversations", message 1: unknown "from" value an object '
        "(expected system, user, human, assistant or gpt)",
        "bad_role",
        line=1,
    ),
    Bad(
        "chat-message-without-content",
        _chat([{"role": "user"}, {"role": "assistant", "content": "a"}]),
        'line 1: column "messages", message 1: has no "content"',
        "empty",
        line=1,
        column="messages",
    ),
    Bad(
        "chat-role-tool",
        _chat([{"role": "user", "content": "hi"}, {"role": "tool", "content": "{}"}]),
        'line 1: column "messages", message 2: unknown role "tool" '
        "(expected system, user, human, assistant or gpt)",
        "bad_role",
        line=1,
    ),
    # --- image zips -----------------------------------------------------------------------------------
    Bad(
        "zip-slip",
        _zip("slip.zip", [("a.png", png()), ("a.txt", "x"), ("../../evil.png", png())]),
        "../../evil.png: the path leaves the archive (zip slip)",
        "zip_slip",
        path="../../evil.png",
    ),
    Bad(
        "zip-absolute-path",
        _zip("abs.zip", [("a.png", png()), ("a.txt", "x"), ("/etc/evil.png", png())]),
        "/etc/evil.png: the path leaves the archive (zip slip)",
        "zip_slip",
    ),
    Bad(
        "zip-bomb",
        _zip(
            "bomb.zip", [("a.png", png()), ("a.txt", "x"), ("images/bomb.png", b"\x00" * (4 * MB))]
        ),
        r"re:images/bomb\.png: compression ratio [\d,]+:1; the limit is 100:1 \(a zip bomb\?\)",
        "zip_bomb",
        path="images/bomb.png",
    ),
    Bad(
        "zip-too-big-unpacked",
        _zip("big.zip", [("a.png", png()), ("a.txt", "x" * 5000)]),
        "re:the archive would unpack to .*; the limit is 1,000 bytes",
        "too_big_uncompressed",
        kwargs={"limits": ImportLimits(max_uncompressed_bytes=1000)},
    ),
    Bad(
        "zip-lying-header",
        _lying_zip,
        "b.png: is damaged: its contents do not match the checksum stored in the archive",
        "bad_member",
        path="b.png",
    ),
    Bad(
        "zip-too-many-members",
        _zip("many.zip", [(f"{i}.txt", "x") for i in range(10)]),
        "the archive has 10 entries; the limit is 5",
        "too_many_members",
        kwargs={"limits": ImportLimits(max_zip_members=5)},
    ),
    Bad(
        "image-bomb",
        _zip("ib.zip", [("huge.png", png_header_only(100_000, 100_000)), ("huge.txt", "big")]),
        "huge.png: has 10,000,000,000 pixels; the limit is 89,478,485 (a decompression bomb?)",
        "not_image",
        path="huge.png",
    ),
    Bad(
        "image-over-own-limit",
        _zip("il.zip", [("a.png", png(100, 100)), ("a.txt", "x")]),
        "a.png: is 100 × 100 = 10,000 pixels; the limit is 1,000 (a decompression bomb?)",
        "not_image",
        kwargs={"limits": ImportLimits(max_image_pixels=1000)},
    ),
    Bad(
        "not-an-image",
        _zip("fake.zip", [("images/cat.png", b"I am text, not a cat"), ("images/cat.txt", "cat")]),
        'images/cat.png: not an image (it is text: "I am text, not a cat")',
        "not_image",
        path="images/cat.png",
    ),
    Bad(
        "damaged-image",
        _zip("dmg.zip", [("d.png", png(32, 32)[:-30]), ("d.txt", "x")]),
        "re:d\\.png: is a damaged PNG image",
        "not_image",
    ),
    Bad(
        "tiff-image",
        _zip("t.zip", [("t.png", b"II*\x00" + b"\x00" * 64), ("t.txt", "x")]),
        "t.png: TIFF images are not supported (use PNG, JPEG, WEBP, GIF, BMP)",
        "not_image",
    ),
    Bad(
        "zip-symlink",
        _zip(
            "link.zip",
            [("a.png", png()), ("a.txt", "x"), (symlink_info("images/link.png"), "/etc/passwd")],
        ),
        "images/link.png: symbolic links are not allowed",
        "symlink",
        path="images/link.png",
    ),
    Bad(
        "nested-zip",
        _zip(
            "nest.zip",
            [("a.png", png()), ("a.txt", "x"), ("more/inner.zip", b"PK\x05\x06" + b"\x00" * 18)],
        ),
        "more/inner.zip: nested archives are not allowed",
        "nested_archive",
    ),
    Bad(
        "archive-named-as-image",
        _zip("nest2.zip", [("a.png", b"PK\x03\x04" + b"\x00" * 40), ("a.txt", "x")]),
        "a.png: nested archives are not allowed",
        "nested_archive",
    ),
    Bad("encrypted-member", _encrypted, "secret.png: is encrypted", "encrypted"),
    Bad(
        "duplicate-member",
        _duplicate_members,
        "a.png: appears twice in the archive",
        "duplicate_member",
    ),
    Bad(
        "missing-caption",
        _zip(
            "nc.zip", [("images/a.png", png()), ("images/a.txt", "ok"), ("images/dog.png", png())]
        ),
        "images/dog.png: no caption (images/dog.txt is missing)",
        "missing_caption",
    ),
    Bad(
        "empty-caption",
        _zip("ec.zip", [("cat.png", png()), ("cat.txt", " \n")]),
        "cat.txt: the caption is empty",
        "empty",
        path="cat.txt",
    ),
    Bad(
        "metadata-missing-image",
        _zip(
            "mm.zip",
            [
                ("a.png", png()),
                (
                    "metadata.jsonl",
                    '{"file_name": "a.png", "text": "red"}\n{"file_name": "dog.png", "text": "dog"}\n',
                ),
            ],
        ),
        'metadata.jsonl, line 2: image "dog.png" is not in the archive',
        "missing_image",
        line=2,
    ),
    Bad(
        "metadata-escapes",
        _zip(
            "me.zip",
            [("a.png", png()), ("metadata.jsonl", '{"file_name": "../a.png", "text": "x"}\n')],
        ),
        'metadata.jsonl, line 1: image "../a.png" points outside the archive',
        "zip_slip",
    ),
    Bad(
        "metadata-bad-json",
        _zip(
            "mj.zip", [("a.png", png()), ("metadata.jsonl", '{"file_name": "a.png", "text": }\n')]
        ),
        "metadata.jsonl, line 1: not valid JSON (Expecting value at char 31)",
        "invalid_json",
    ),
    Bad(
        "zip-without-images",
        _zip("ni.zip", [("notes.txt", "hello")]),
        "the archive holds no images (PNG, JPEG, WEBP, GIF, BMP); an image set is a zip of images with a .txt "
        "caption beside each, or a metadata.jsonl",
        "no_images",
    ),
    Bad(
        "truncated-zip",
        lambda t: _bytes(
            "cut.zip",
            write_zip(t / "full.zip", [("a.png", png()), ("a.txt", "x")]).read_bytes()[:-30],
        )(t),
        "not a valid zip file (File is not a zip file); is it truncated?",
        "bad_zip",
    ),
    Bad(
        "excel-workbook",
        _zip("book.zip", [("[Content_Types].xml", "<x/>"), ("xl/workbook.xml", "<x/>")]),
        "this is an Excel workbook, not a zip of images: save the sheet as CSV (UTF-8) and upload that",
        "office_file",
    ),
    Bad(
        "image-zip-as-qa",
        _zip("q.zip", [("a.png", png()), ("a.txt", "x")]),
        "an image zip imports as the image_caption schema",
        "bad_mapping",
        kwargs={"mapping": Mapping("qa", {"question": "file_name", "answer": "text"})},
    ),
    Bad(
        "csv-as-image-caption",
        _csv("ic.csv", ["image", "caption"], [("a.png", "x")]),
        "image_caption datasets come from a zip of images",
        "bad_mapping",
        kwargs={"mapping": Mapping("image_caption", {"image": "image", "caption": "caption"})},
    ),
]


def message_matches(expected: str, actual: str) -> bool:
    if expected.startswith("re:"):
        return (
            re.fullmatch(expected[3:], actual) is not None
            or re.match(expected[3:], actual) is not None
        )
    return expected == actual


def test_the_catalogue_is_large_and_its_ids_are_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_gets_its_own_error_and_leaves_nothing(case: Bad, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    path = case.build(src)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=out, **case.kwargs)
    first = caught.value.errors[0]
    assert message_matches(case.message, first.message), f"{case.id}: {caught.value.messages}"
    assert first.code == case.code, f"{case.id}: {first!r}"
    for attr in ("row", "line", "column", "path"):
        if getattr(case, attr) is not None:
            assert getattr(first, attr) == getattr(case, attr), f"{case.id}: {attr} of {first!r}"
    assert listing(out) == [], f"{case.id} left {listing(out)}"


def test_it_reports_every_error_keeps_the_first_hundred_and_counts_the_rest(tmp_path):
    rows = [(f"q{i}", "" if i % 2 else f"a{i}") for i in range(1, 501)]
    path = write_csv(tmp_path / "many.csv", ["question", "answer"], rows)
    out = tmp_path / "out"
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=out)
    invalid = caught.value
    assert invalid.total == 250
    assert len(invalid.errors) == 100
    assert invalid.messages[:2] == [
        'row 1: column "answer" is empty',
        'row 3: column "answer" is empty',
    ]
    assert str(invalid) == '250 problems; the first: row 1: column "answer" is empty'
    assert invalid.to_list()[0]["row"] == 1
    assert listing(out) == []


def test_errors_of_different_kinds_in_one_file_are_all_reported(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"question": "q1", "answer": "a1"}\n'
        '{"question": "q2", "answer": ""}\n'
        "not json\n"
        "[1]\n"
        '{"answer": "a5"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=tmp_path / "out")
    assert caught.value.messages == [
        'line 2: column "answer" is empty',
        "line 3: not valid JSON (Expecting value at char 0)",
        "line 4: expected a JSON object, got an array",
        'line 5: column "question" is missing',
    ]


def test_a_fatal_error_comes_after_the_row_errors_before_it(tmp_path):
    path = tmp_path / "late.csv"
    path.write_bytes(b"question,answer\nq1,\n" + b"x" * (5 * MB) + b"\n")
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=tmp_path / "out")
    assert caught.value.messages == [
        'row 1: column "answer" is empty',
        "line 3: longer than 4,194,304 characters (the limit)",
    ]


def test_the_zip_lists_every_refused_member(tmp_path):
    entries = [
        ("a.png", png()),
        ("a.txt", "ok"),
        ("../x.png", png()),
        (symlink_info("l.png"), "/etc/passwd"),
        ("n.zip", b"PK\x05\x06" + b"\x00" * 18),
        ("fake.png", b"text"),
        ("fake.txt", "caption"),
    ]
    path = write_zip(tmp_path / "z.zip", entries)
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=tmp_path / "out")
    assert caught.value.messages == [
        "../x.png: the path leaves the archive (zip slip)",
        "l.png: symbolic links are not allowed",
        "n.zip: nested archives are not allowed",
        'fake.png: not an image (it is text: "text")',
    ]
    assert listing(tmp_path / "out") == []


def test_a_missing_output_folder_is_created_and_left_empty_on_failure(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": ""}])
    out = tmp_path / "new" / "out"
    with pytest.raises(DatasetInvalid):
        import_file(path, path.name, out_dir=out)
    assert listing(out) == []


def test_a_bad_mapping_is_refused_when_it_is_built():
    from workers.data import MappingError

    with pytest.raises(MappingError, match='"question" and "answer" both map to column "q"'):
        Mapping("qa", {"question": "q", "answer": "q"})
    with pytest.raises(MappingError, match='the qa mapping needs a column for "answer"'):
        Mapping("qa", {"question": "q"})
    with pytest.raises(MappingError, match='unknown schema "poem"'):
        Mapping("poem", {})
    with pytest.raises(MappingError, match='the qa schema has no role "output"'):
        Mapping("qa", {"question": "q", "answer": "a", "output": "o"})


def test_unicode_json_files_and_chats_that_are_fine_still_import(tmp_path):
    # Guard against the catalogue passing because everything fails.
    for name, records in (
        ("c.jsonl", openai_chats()),
        ("s.jsonl", sharegpt_chats()),
        ("q.jsonl", qa_records()),
    ):
        result = import_file(
            write_jsonl(tmp_path / name, records), name, out_dir=tmp_path / f"o-{name}"
        )
        assert result.rows == len(records)
    assert json.loads(json.dumps(QA))
