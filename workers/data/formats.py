"""Readers for dataset files, streamed with bounded memory, and `sniff()` to guess how to read one.

Every reader yields `Rec` (one source record as a dict, with its place) or a located
`DatasetError` for a bad record, and raises `DatasetError` for a problem that stops the file
(undecodable bytes, an over-long line, a broken header, a JSON array that cannot be resynchronised).
JSON is read strictly (`limits.STRICT_JSON`): a repeated key, NaN/Infinity, an integer too long to
read or a lone UTF-16 surrogate is a located error for its record, never a crash or a silent pick.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.data.canonical import Mapping, suggest_mapping
from workers.data.errors import DatasetError, DatasetInvalid
from workers.data.images import ARCHIVE_MAGIC, Rec, ZipSource, is_zip
from workers.data.limits import (
    DEFAULT_LIMITS,
    EXPLAIN_JSON,
    STRICT_JSON,
    ImportLimits,
    JsonProblem,
    exceeds_depth,
    find_problem,
    human_bytes,
    may_hold_surrogate,
    show,
)

__all__ = [
    "CONTAINERS",
    "FORMATS",
    "Rec",
    "Sniffed",
    "detect_encoding",
    "open_source",
    "sniff",
]

FORMATS = (
    "csv",
    "tsv",
    "jsonl",
    "json",
    "alpaca",
    "sharegpt",
    "openai_chat",
    "preference",
    "image_zip",
)
CONTAINERS = ("csv", "tsv", "jsonl", "json", "zip")
JSON_FORMATS = ("jsonl", "json", "alpaca", "sharegpt", "openai_chat", "preference")

SAMPLE_BYTES = 64 * 1024
CHUNK_CHARS = 1 << 18  # characters per read of a JSON array: ~0.5-1 MB of text in memory
BOM_UTF8 = codecs.BOM_UTF8
ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "gb18030": "GB18030",
    "gbk": "GBK",
    "utf-16": "UTF-16",
    "utf-32": "UTF-32",
}
_BOM_CODECS = ("utf-16", "utf-32")  # codecs that read their own byte-order mark
MAX_KEY_CHARS = 1_000
"""Characters in one column name (a CSV header cell, a JSON key): names are shown on the mapping
page and in messages, and no real dataset has a 2 MB one."""
# Files people upload by mistake that carry no NUL in their first bytes: named, not read as CSV.
_NOT_TEXT = (
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.xls or .doc)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"SQLite format 3", "an SQLite database"),
)


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DatasetError(f'unknown encoding "{encoding}"', code="bad_encoding") from None


def _display(encoding: str) -> str:
    return ENCODING_NAMES.get(_codec_name(encoding), encoding)


# --------------------------------------------------------------------------- encoding


def _decode_error(data: bytes, encoding: str, final: bool) -> UnicodeDecodeError | None:
    try:
        codecs.getincrementaldecoder(encoding)("strict").decode(data, final)
    except UnicodeDecodeError as exc:
        return exc
    return None


def detect_encoding(head: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK), decided on the first bytes;
    UTF-16 and UTF-32 when a byte-order mark says so (UTF-32's LE mark starts with UTF-16's)."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bom = head.startswith(BOM_UTF8)
    body = head[3:] if bom else head
    nul = body.find(b"\x00")
    if nul >= 0:
        wide = _wide_text(body)
        if wide:
            raise DatasetError(
                f"the file looks like {wide} text without a byte-order mark (a NUL byte beside "
                "every character of line 1); save it as UTF-8",
                code="bad_encoding",
            )
        line = body.count(b"\n", 0, nul) + 1
        raise DatasetError(
            f"the file looks binary (line {line} has a NUL byte, at byte {nul + 3 * bom + 1:,} of "
            "the file); upload CSV, JSON or JSONL text, or save UTF-16 text as UTF-8",
            code="binary",
        )
    # Not final: a character cut at the end of the sample (or of a truncated file) is not a
    # verdict on the encoding; the reader reports a truncated file with its line.
    utf8 = _decode_error(body, "utf-8", False)
    if utf8 is None:
        return "utf-8-sig" if bom else "utf-8"
    line = body.count(b"\n", 0, utf8.start) + 1
    if bom:
        # A BOM says UTF-8: bytes that are not are a broken file, not a hint to guess again.
        raise _bom_not_utf8(line, body[utf8.start])
    if _decode_error(body, "gb18030", False) is None:
        _check_reads_as_chinese(body)
        return "gb18030"
    raise DatasetError(
        f"the file is not UTF-8, GBK or GB18030 text (line {line} has the byte "
        f"0x{body[utf8.start]:02x}); save it as UTF-8 or choose its encoding",
        code="bad_encoding",
    )


# GB18030 decodes almost any bytes: Big5, Shift-JIS or Latin-1 text read as GBK becomes a string
# of real but rare characters. Chinese written in GBK is nearly all GB2312's 7,445 common
# characters and marks (a name's rare character is one in dozens), so a sample whose non-ASCII
# characters are more than GB_RARE_SHARE outside GB2312 is refused instead of imported as garbage
# (Shift-JIS reads as ~100 % rare, Big5 ~60 %, Latin-1 accents before a letter 100 %; EUC-KR
# reads as common characters and is not caught). Traditional Chinese really written in GBK is
# refused too: choosing the encoding imports it.
GB_RARE_SHARE = 0.25
GB_JUDGED_CHARS = 8  # fewer non-ASCII characters in the sample: too few to judge


def _check_reads_as_chinese(body: bytes) -> None:
    """Raise when `body`, read as GB18030, is mostly characters outside GB2312 (see above)."""
    text = codecs.getincrementaldecoder("gb18030")("strict").decode(body, False)
    wide = [ch for ch in text if ord(ch) > 0x7F]
    if len(wide) < GB_JUDGED_CHARS:
        return
    rare = [i for i, ch in enumerate(wide) if not _in_gb2312(ch)]
    if len(rare) <= GB_RARE_SHARE * len(wide):
        return
    first = wide[rare[0]]
    line = text.count("\n", 0, text.index(first)) + 1
    raise DatasetError(
        f"the file is not UTF-8, and read as GBK {len(rare) * 100 // len(wide)} % of the "
        f"{len(wide):,} non-ASCII characters of its first {len(body) // 1024 or 1} KB are rare "
        f"ones, from line {line} on (Chinese text has few): it looks like another encoding (Big5, "
        "Shift-JIS, Latin-1?); save it as UTF-8, or choose its encoding if it really is GBK",
        code="bad_encoding",
    )


def _in_gb2312(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def _wide_text(body: bytes) -> str:
    """`UTF-16` or `UTF-32` when the first bytes are ASCII text in one of them (NULs at every
    other or three of every four bytes), else ""."""
    sample = body[:256]
    sample = sample[: len(sample) // 4 * 4]
    if len(sample) < 8:
        return ""
    for width in (4, 2):
        for first in range(width):  # the offset of the ASCII byte in each unit (LE: 0, BE: last)
            units = [sample[i : i + width] for i in range(0, len(sample), width)]
            if all(
                u[first] != 0 and u[first] < 0x80 and not any(u[:first] + u[first + 1 :])
                for u in units
            ):
                return f"UTF-{width * 8}"
    return ""


def _bom_not_utf8(line: int, byte: int) -> DatasetError:
    return DatasetError(
        f"the file starts with a UTF-8 byte-order mark but line {line} is not UTF-8 "
        f"(byte 0x{byte:02x}); save it as UTF-8, or choose its encoding",
        code="bad_encoding",
    )


class _Text:
    """A decoded text stream over a binary file; a UTF-8 BOM is skipped whatever the encoding."""

    def __init__(self, path: str, encoding: str) -> None:
        codec = _codec_name(encoding)
        self.encoding = encoding
        self.raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115
        if codec not in _BOM_CODECS and self.raw.read(3) != BOM_UTF8:
            self.raw.seek(0)
        if codec == "utf-8-sig":
            codec = "utf-8"
        self.text = io.TextIOWrapper(self.raw, encoding=codec, errors="strict", newline="")

    def close(self) -> None:
        self.text.close()


def _decode_failure(exc: UnicodeDecodeError, encoding: str, line: int) -> DatasetError:
    """`line` is the line the decoder was in when it got the failing bytes; the bad byte may lie
    some lines further into them (text is decoded a chunk ahead of the lines handed out)."""
    line += exc.object.count(b"\n", 0, exc.start)
    if "unexpected end of data" in str(exc.reason) or "incomplete" in str(exc.reason):
        return DatasetError(
            "the file ends in the middle of a character (is it truncated?)",
            line=line,
            code="truncated",
        )
    bad = exc.object[exc.start : exc.start + 1]
    if _codec_name(encoding) == "utf-8-sig":
        return _bom_not_utf8(line, bad[0])
    return DatasetError(
        f"not valid {_display(encoding)} text (byte 0x{bad.hex()}); choose the file's encoding",
        line=line,
        code="bad_encoding",
    )


class _Lines:
    """Physical lines with a length limit; counts them so errors can name the line."""

    def __init__(self, text: _Text, max_chars: int, *, keep: bool = False) -> None:
        self._readline = text.text.readline
        self._text = text
        self._max = max_chars
        self.line = 0
        # With `keep`, the lines handed out since the caller last cleared it (one CSV record),
        # so a refused record can be looked at again.
        self.kept: list[str] | None = [] if keep else None

    def __iter__(self) -> Iterator[str]:
        readline, limit, max_chars = self._readline, self._max + 1, self._max
        kept = self.kept
        while True:
            try:
                line = readline(limit)
            except UnicodeDecodeError as exc:
                raise _decode_failure(exc, self._text.encoding, self.line + 1) from None
            if not line:
                return
            self.line += 1
            if len(line) == limit and line[-1] not in "\r\n":
                raise DatasetError(
                    f"longer than {max_chars:,} characters (the limit)",
                    line=self.line,
                    code="line_too_long",
                )
            if kept is not None:
                kept.append(line)
            yield line


# --------------------------------------------------------------------------- sources


class _TextSource:
    container = "?"
    columns: list[str] | None = None

    def __init__(self, path: str, fmt: str, encoding: str, limits: ImportLimits) -> None:
        self.path = path
        self.format = fmt
        self.encoding = encoding
        self.limits = limits
        self.size = os.path.getsize(path)
        self.warnings: list[str] = []
        self._text = _Text(path, encoding)

    def bytes_read(self) -> int:
        return min(self._text.raw.tell(), self.size)

    def close(self) -> None:
        self._text.close()

    def records(self) -> Iterator[Rec | DatasetError]:  # pragma: no cover - abstract
        raise NotImplementedError


def _long_field(text: str, delimiter: str, max_chars: int) -> int | None:
    """The 0-based index of the first field longer than `max_chars` in a CSV record's text (the
    csv module stops at it without saying which); None if it cannot be told."""
    pos, index, end = 0, 0, len(text.rstrip("\r\n"))
    while pos <= end:
        if text.startswith('"', pos):
            quoted = _QUOTED.match(text, pos)
            stop = quoted.end() if quoted is not None else end
            length = stop - pos - 2 - text.count('""', pos + 1, stop - 1)
            nxt = text.find(delimiter, stop, end)
        else:
            nxt = text.find(delimiter, pos, end)
            length = (end if nxt < 0 else nxt) - pos
        if length > max_chars:
            return index
        if nxt < 0:
            return None
        pos, index = nxt + 1, index + 1
    return None


_QUOTED = re.compile(r'"[^"]*(?:""[^"]*)*"')


def _csv_error(
    exc: csv.Error,
    row: int,
    limits: ImportLimits,
    *,
    column: str | None = None,
    line: int | None = None,
) -> DatasetError:
    msg = str(exc)
    if "field larger than field limit" in msg:
        if column is not None:
            reason = f"is longer than {limits.max_cell_chars:,} characters (the limit)"
        else:
            reason = f"a cell is longer than {limits.max_cell_chars:,} characters (the limit)"
        return DatasetError(reason, row=row, column=column, line=line, code="cell_too_long")
    if "unexpected end of data" in msg:
        return DatasetError(
            "a quoted cell is not closed before the end of the file (is it truncated?)",
            row=row,
            code="truncated",
        )
    if "expected after" in msg:
        return DatasetError(
            'text follows a closing quote (write a quote inside a quoted cell as "")',
            row=row,
            code="bad_quote",
        )
    return DatasetError(f"cannot be read as CSV ({msg})", row=row, code="bad_csv")


class CsvSource(_TextSource):
    """CSV or TSV with a header line; row N is the Nth record after the header."""

    def __init__(self, path: str, fmt: str, encoding: str, limits: ImportLimits) -> None:
        super().__init__(path, fmt, encoding, limits)
        self.container = fmt
        self.delimiter = "\t" if fmt == "tsv" else ","
        if csv.field_size_limit() < limits.max_cell_chars + 1:
            # Process-wide in the csv module: only ever raised, so other readers keep working.
            csv.field_size_limit(limits.max_cell_chars + 1)
        self._lines = _Lines(self._text, limits.max_line_chars, keep=True)
        self._reader = csv.reader(iter(self._lines), delimiter=self.delimiter, strict=True)
        try:
            self.columns = self._header()
        except BaseException:
            self.close()
            raise

    def _header(self) -> list[str]:
        try:
            header = next(self._reader)
        except StopIteration:
            raise DatasetError("the file is empty", code="empty_file") from None
        except csv.Error as exc:
            error = _csv_error(exc, 0, self.limits)
            raise DatasetError(f"the header line: {error.reason}", code=error.code) from None
        limit = self.limits.max_columns
        if len(header) > limit:
            raise DatasetError(
                f"the header has {len(header):,} columns; the limit is {limit:,}",
                code="too_many_columns",
            )
        if not any(h.strip() for h in header):
            raise DatasetError(
                "the first line is empty; it must be the header with the column names",
                code="no_header",
            )
        if len(header) == 1 and ";" in header[0]:
            raise _semicolons(header[0])
        seen: dict[str, int] = {}
        for i, name in enumerate(header, 1):
            if len(name) > MAX_KEY_CHARS:
                raise _key_too_long(name, f"the name of column {i}")
            key = unicodedata.normalize("NFC", name)
            if name and key in seen:
                other = header[seen[key] - 1]
                how = "" if other == name else ", written two ways: Unicode NFC and NFD"
                raise DatasetError(
                    f'the header repeats column "{show(name)}" (columns {seen[key]} and {i}{how})',
                    code="duplicate_column",
                )
            seen[key] = i
        return header

    def records(self) -> Iterator[Rec | DatasetError]:
        header = self.columns
        assert header is not None
        width = len(header)
        reader = self._reader
        kept = self._lines.kept
        assert kept is not None
        row = 0
        blank = 0
        while True:
            kept.clear()
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row += 1
                yield self._refused(exc, row, kept)
                continue
            row += 1
            if not fields or not any(fields):
                blank += 1
                continue
            if len(fields) != width:
                yield DatasetError(
                    f"has {len(fields):,} cells but the header has {width:,} "
                    f"(a {'tab' if self.delimiter == chr(9) else 'comma'} inside a cell that is "
                    "not quoted?)",
                    row=row,
                    code="cell_count",
                )
                continue
            yield Rec(row, None, None, dict(zip(header, fields, strict=True)))
        if blank:
            self.warnings.append(f"skipped {blank:,} blank row(s)")

    def _refused(self, exc: csv.Error, row: int, kept: list[str]) -> DatasetError:
        """The csv module's error for a record, with the column and first line of an over-long
        cell (found again in the record's lines: the module does not say which cell it was)."""
        if "field larger than field limit" not in str(exc) or not kept:
            return _csv_error(exc, row, self.limits)
        assert self.columns is not None
        index = _long_field("".join(kept), self.delimiter, self.limits.max_cell_chars)
        column = self.columns[index] if index is not None and index < len(self.columns) else None
        line = self._lines.line - len(kept) + 1
        return _csv_error(exc, row, self.limits, column=column, line=line)


def _semicolons(first: str) -> DatasetError:
    """A one-column header with semicolons: CSV as Excel writes it where the comma is the decimal
    mark. Read with commas it would reach the mapping step as a single column."""
    if first.lower().startswith("sep="):
        what = f'the first line "{show(first, 12)}" is an Excel delimiter hint, not a header'
    else:
        what = f'the header "{show(first)}" is one column with semicolons in it'
    return DatasetError(
        f"{what}: the file is separated by semicolons; save it as CSV UTF-8 (comma delimited)",
        code="semicolons",
    )


def _key_too_long(name: str, where: str) -> DatasetError:
    return DatasetError(
        f'{where} is {len(name):,} characters long ("{show(name, 24)}"); the limit for a '
        f"column name is {MAX_KEY_CHARS:,}",
        code="key_too_long",
    )


def _json_problem(msg: str, char: int) -> str:
    """json's "Expecting ',' delimiter" / "Unterminated string starting at" + where, as one phrase."""
    where = "char" if msg.endswith(" at") else "at char"
    return f"not valid JSON ({msg} {where} {char})"


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _problem_error(
    problem: JsonProblem, *, row: int | None = None, line: int | None = None
) -> DatasetError:
    column, reason = problem.column_reason()
    return DatasetError(reason, row=row, line=line, column=column, code=problem.code)


def _explain(
    text: str, start: int, *, row: int | None = None, line: int | None = None
) -> DatasetError:
    """The error for a JSON value STRICT_JSON refused: what it holds and where (slow, but only
    for refused values)."""
    try:
        found = find_problem(EXPLAIN_JSON.raw_decode(text, start)[0])
    except json.JSONDecodeError as exc:  # refused before the parser reached a syntax error
        return DatasetError(
            _json_problem(exc.msg, exc.pos), row=row, line=line, code="invalid_json"
        )
    if found is None:  # pragma: no cover - STRICT_JSON refuses only what find_problem finds
        return DatasetError(
            "has a value that cannot be read", row=row, line=line, code="invalid_json"
        )
    return _problem_error(found, row=row, line=line)


def _wrapped(obj: dict[str, Any]) -> str | None:
    """The key of a list of objects inside one object ({"data": [{...}, ...]}), if it has one."""
    for key, value in obj.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value[:10]):
            return key
    return None


def _one_object(obj: dict[str, Any]) -> DatasetError:
    key = _wrapped(obj)
    inside = ""
    if key is not None:
        n = len(obj[key])
        inside = f'; its key "{show(key)}" holds {n:,} record{"s" if n != 1 else ""}'
    return DatasetError(
        f"the file is one JSON object, not a list of records{inside}: upload an array of "
        "objects [{…}, {…}], or one object per line (JSONL)",
        code="not_array",
    )


_SCAN: Any = STRICT_JSON.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__


def _decode_line(line: str) -> Any:
    """STRICT_JSON.decode(line), with json's own messages, minus two regex calls a line: the
    C scanner straight away, whitespace checked only when there is some. A byte-order mark at
    the start of a line is skipped like whitespace: files joined with `cat` carry one at the
    first line of each."""
    start = 0 if line[:1] not in _SPACE else len(line) - len(line.lstrip(" \t\n\r\ufeff"))
    try:
        obj, end = _SCAN(line, start)
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", line, err.value) from None
    if end != len(line):
        rest = line[end:]
        if rest != "\n" and rest.strip(" \t\n\r"):
            stop = len(line) - len(rest.lstrip(" \t\n\r"))
            raise json.JSONDecodeError("Extra data", line, stop)
    return obj


_SPACE = (" ", "\t", "\n", "\r", "\ufeff")


class JsonlSource(_TextSource):
    """One JSON object per line; errors name the line."""

    container = "jsonl"

    def __init__(
        self, path: str, fmt: str, encoding: str, limits: ImportLimits, hint: str = ""
    ) -> None:
        super().__init__(path, fmt, encoding, limits)
        self._hint = hint

    def records(self) -> Iterator[Rec | DatasetError]:
        lines = _Lines(self._text, self.limits.max_line_chars)
        max_depth = self.limits.max_json_depth
        max_columns = self.limits.max_columns
        decode = _decode_line
        first = True
        for line in lines:
            n = lines.line
            if not line or line.isspace():
                continue
            if exceeds_depth(line, max_depth):
                yield DatasetError(
                    f"nested deeper than {max_depth} levels (the limit)", line=n, code="too_deep"
                )
                continue
            try:
                obj = decode(line)
            except json.JSONDecodeError as exc:
                if first and line.lstrip().startswith("{"):
                    whole = self._one_object()
                    if whole is not None:
                        raise whole from None
                first = False
                hint = ""
                if line.lstrip().startswith(("//", "/*", "#")):
                    hint = "; JSON has no comments: delete this line"
                elif line[-1:] not in ("\n", "\r"):
                    hint = "; the file ends here: is it truncated?"
                elif n == 1 and self._hint:
                    hint = self._hint
                yield DatasetError(
                    f"{_json_problem(exc.msg, exc.pos)}{hint}", line=n, code="invalid_json"
                )
                continue
            except RecursionError:
                yield DatasetError(
                    f"nested too deeply ({max_depth} levels is the limit)", line=n, code="too_deep"
                )
                continue
            except ValueError:  # refused by STRICT_JSON, or an integer too long for int()
                first = False
                yield _explain(line, len(line) - len(line.lstrip()), line=n)
                continue
            first = False
            if type(obj) is not dict:
                yield DatasetError(
                    f"expected a JSON object, got {_type_name(obj)}", line=n, code="not_object"
                )
                continue
            if len(obj) > max_columns:
                yield DatasetError(
                    f"has {len(obj):,} keys; the limit is {max_columns:,}",
                    line=n,
                    code="too_many_columns",
                )
                continue
            if "\\u" in line and may_hold_surrogate(line):  # inlined test: most lines have no \u
                problem = find_problem(obj)
                if problem is not None:
                    yield _problem_error(problem, line=n)
                    continue
            yield Rec(None, n, None, obj)

    def _one_object(self) -> DatasetError | None:
        """When the first line is not JSON: the error for a small file that is one JSON object
        written over several lines (a .json file that is not an array), else None."""
        if self.size > self.limits.max_line_chars:
            return None
        text = _Text(self.path, self.encoding)
        try:
            whole = text.text.read()
        except UnicodeDecodeError:
            return None
        finally:
            text.close()
        if exceeds_depth(whole, self.limits.max_json_depth):
            return None
        try:
            obj = STRICT_JSON.decode(whole)
        except (ValueError, RecursionError):
            return None
        return _one_object(obj) if type(obj) is dict else None


class _Chunks:
    """A sliding window of decoded text: consumed text is dropped, its lines and columns counted."""

    def __init__(self, read: Any, encoding: str) -> None:
        self._read = read
        self._encoding = encoding
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line of buf[0]
        self.col_base = 0  # column of buf[0] in that line

    def fill(self) -> None:
        """Drop what was consumed and read the next chunk (sets eof when there is none)."""
        buf, pos = self.buf, self.pos
        newlines = buf.count("\n", 0, pos)
        if newlines:
            self.line_base += newlines
            self.col_base = pos - (buf.rfind("\n", 0, pos) + 1)
        else:
            self.col_base += pos
        try:
            data = self._read(CHUNK_CHARS)
        except UnicodeDecodeError as exc:
            raise _decode_failure(
                exc, self._encoding, self.line_base + buf.count("\n", pos)
            ) from None
        self.buf = buf[pos:] + data
        self.pos = 0
        if not data:
            self.eof = True

    def where(self, pos: int) -> tuple[int, int]:
        """(line, 0-based char in the line) of a position in buf."""
        buf = self.buf
        newlines = buf.count("\n", 0, pos)
        if newlines:
            return self.line_base + newlines, pos - (buf.rfind("\n", 0, pos) + 1)
        return self.line_base, self.col_base + pos

    def peek(self) -> str:
        """Skip whitespace; the next character, or "" at the end of the file."""
        while True:
            buf, pos, n = self.buf, self.pos, len(self.buf)
            while pos < n and buf[pos] in " \t\r\n":
                pos += 1
            self.pos = pos
            if pos < n:
                return buf[pos]
            if self.eof:
                return ""
            self.fill()


class JsonArraySource(_TextSource):
    """A JSON array of objects, parsed element by element over 256K-character chunks."""

    container = "json"

    def _element(self, text: _Chunks, row: int) -> tuple[Any, int, bool]:
        """Decode the element at text.pos, reading more text while it may be cut by the chunk;
        (value, end, whether STRICT_JSON refused it and the value holds the marks of why)."""
        limits = self.limits
        decode, marked = STRICT_JSON.raw_decode, False
        while True:
            buf, pos = text.buf, text.pos
            try:
                obj, end = decode(buf, pos)
                return obj, end, marked
            except json.JSONDecodeError as exc:
                # Before the end of the file an error near the end of the buffer may only mean
                # the element goes on in the next chunk; at the end of the file it is final.
                unterminated = exc.msg.startswith("Unterminated string")
                line, char = text.where(exc.pos)
                if text.eof:
                    if unterminated or exc.pos >= len(buf.rstrip()):
                        raise DatasetError(
                            f"{_json_problem(exc.msg, char)}; the file ends here: is it truncated?",
                            line=line,
                            code="truncated",
                        ) from None
                    raise DatasetError(
                        _json_problem(exc.msg, char), line=line, code="invalid_json"
                    ) from None
                if not unterminated and exc.pos < len(buf) - 64:
                    raise DatasetError(
                        _json_problem(exc.msg, char), line=line, code="invalid_json"
                    ) from None
                if len(buf) - pos > limits.max_line_chars:
                    raise DatasetError(
                        f"element {row} is longer than {limits.max_line_chars:,} characters "
                        "(the limit)",
                        line=text.where(pos)[0],
                        code="line_too_long",
                    ) from None
                text.fill()
            except RecursionError:
                raise DatasetError(
                    f"element {row} is nested too deeply ({limits.max_json_depth} levels is the "
                    "limit)",
                    line=text.where(pos)[0],
                    code="too_deep",
                ) from None
            except ValueError:  # refused by STRICT_JSON: read it again, marking why
                decode, marked = EXPLAIN_JSON.raw_decode, True

    def _check(
        self, obj: Any, text: _Chunks, start: int, end: int, row: int, marked: bool
    ) -> DatasetError | None:
        limits = self.limits
        problem = None
        if marked or may_hold_surrogate(text.buf, start, end):
            problem = find_problem(obj)
        if end - start > limits.max_line_chars:
            reason, code = (
                f"longer than {limits.max_line_chars:,} characters (the limit)",
                "line_too_long",
            )
        elif exceeds_depth(text.buf, limits.max_json_depth, start, end):
            reason, code = (
                f"nested deeper than {limits.max_json_depth} levels (the limit)",
                "too_deep",
            )
        elif problem is not None:
            return _problem_error(problem, row=row, line=text.where(start)[0])
        elif type(obj) is not dict:
            reason, code = f"expected a JSON object, got {_type_name(obj)}", "not_object"
        elif len(obj) > limits.max_columns:
            reason, code = (
                f"has {len(obj):,} keys; the limit is {limits.max_columns:,}",
                "too_many_columns",
            )
        else:
            return None
        return DatasetError(reason, row=row, code=code)

    def records(self) -> Iterator[Rec | DatasetError]:
        text = _Chunks(self._text.text.read, self.encoding)
        if text.peek() != "[":
            raise DatasetError(
                "the file is not a JSON array of objects (it must start with [)", code="not_array"
            )
        text.pos += 1
        row = 0
        if text.peek() == "]":
            text.pos += 1
        else:
            while True:
                if text.peek() == "":
                    raise DatasetError(
                        "the JSON array is not closed: the file ends here (is it truncated?)",
                        line=text.where(text.pos)[0],
                        code="truncated",
                    )
                row += 1
                obj, end, marked = self._element(text, row)
                problem = self._check(obj, text, text.pos, end, row, marked)
                yield problem if problem is not None else Rec(row, None, None, obj)
                text.pos = end
                c = text.peek()
                if c == ",":
                    text.pos += 1
                    continue
                if c == "]":
                    text.pos += 1
                    break
                line, char = text.where(text.pos)
                if c == "":
                    raise DatasetError(
                        "the JSON array is not closed: the file ends here (is it truncated?)",
                        line=line,
                        code="truncated",
                    )
                raise DatasetError(
                    f"not valid JSON (Expecting ',' delimiter at char {char})",
                    line=line,
                    code="invalid_json",
                )
        if text.peek() != "":
            line, char = text.where(text.pos)
            raise DatasetError(
                f"text after the end of the JSON array (at char {char})",
                line=line,
                code="invalid_json",
            )


# --------------------------------------------------------------------------- opening


@dataclass
class Sniffed:
    """What `sniff()` found: how to read the file and a guess at its mapping."""

    format: str
    encoding: str | None
    columns: list[str]
    sample_rows: list[dict[str, Any]]
    suggested_mapping: Mapping | None
    container: str = "csv"
    size: int = 0
    sample_errors: list[DatasetError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(SAMPLE_BYTES)


def _check_size(path: str, limits: ImportLimits) -> int:
    size = os.path.getsize(path)
    if size == 0:
        raise DatasetError("the file is empty", code="empty_file")
    if size > limits.max_file_bytes:
        raise DatasetError(
            f"the file is {human_bytes(size)}; the limit is {human_bytes(limits.max_file_bytes)}",
            code="file_too_big",
        )
    return size


def _sample_text(head: bytes, encoding: str, at_eof: bool) -> str:
    body = head[3:] if head.startswith(BOM_UTF8) else head
    codec = "utf-8" if _codec_name(encoding) == "utf-8-sig" else encoding
    return codecs.getincrementaldecoder(codec)("replace").decode(body, at_eof)


def _container(head: bytes, filename: str, encoding: str, at_eof: bool, fmt: str | None) -> str:
    """csv, tsv, jsonl or json: from `fmt` when it names one, else from the first bytes."""
    if fmt in ("csv", "tsv", "jsonl", "json"):
        return fmt
    text = _sample_text(head, encoding, at_eof)
    first = text.lstrip(" \t\r\n\ufeff")[:1]
    if first == "":
        raise DatasetError("the file is empty (only blank lines)", code="empty_file")
    if first == "[":
        return "json"
    if first == "{":
        return "jsonl"
    if fmt in JSON_FORMATS:
        raise DatasetError(
            f'the "{fmt}" format holds JSON objects (one per line, or in an array)',
            code="not_json",
        )
    lower = filename.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        # Named JSON but not starting with [ or {: a bare value, a comment, or not JSON at all.
        # Read as JSONL it is refused with its line ("expected a JSON object, got a string");
        # read as CSV it would reach the mapping step as a one-column table.
        return "jsonl"
    if lower.endswith((".tsv", ".tab")):
        return "tsv"
    first_line = text.split("\n", 1)[0]
    if lower.endswith(".csv"):
        # Tab-separated text saved as .csv (Excel's "Text (Tab delimited)", a database export)
        return "tsv" if "\t" in first_line and "," not in first_line else "csv"
    return "tsv" if first_line.count("\t") > first_line.count(",") else "csv"


def open_source(
    path: str | os.PathLike[str],
    filename: str,
    *,
    fmt: str | None = None,
    encoding: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
) -> CsvSource | JsonlSource | JsonArraySource | ZipSource:
    """Open a dataset file for streaming; raises DatasetError for file-level problems."""
    path = os.fspath(path)
    if fmt is not None and fmt not in FORMATS:
        raise DatasetError(
            f'unknown format "{fmt}" (expected one of {", ".join(FORMATS)})', code="bad_format"
        )
    size = _check_size(path, limits)
    head = _head(path)
    if fmt == "image_zip" or (fmt is None and is_zip(head)):
        if not is_zip(head):
            raise DatasetError("not a zip file", code="bad_zip")
        return ZipSource(path, limits)
    if fmt is None and filename.lower().endswith(".zip"):
        # Read as text it would reach the mapping step looking like a one-column CSV.
        raise DatasetError(
            "the file is named .zip but is not a zip archive (is it damaged, or renamed?)",
            code="bad_zip",
        )
    for magic, what in _NOT_TEXT:
        if head.startswith(magic):
            raise DatasetError(
                f"this is {what}, not a dataset: upload CSV, JSON or JSONL text", code="not_text"
            )
    if head.startswith(ARCHIVE_MAGIC):
        raise DatasetError(
            "compressed files other than a zip of images are not supported: upload the CSV, "
            "JSON or JSONL file itself",
            code="archive",
        )
    at_eof = size <= len(head)
    encoding = encoding or detect_encoding(head)
    container = _container(head, filename, encoding, at_eof, fmt)
    inner = fmt or container
    if container in ("csv", "tsv"):
        return CsvSource(path, inner, encoding, limits)
    if container == "jsonl":
        hint = ""
        if filename.lower().endswith(".json"):
            hint = "; a .json file must hold an array of objects, or one object per line"
        return JsonlSource(path, inner, encoding, limits, hint=hint)
    return JsonArraySource(path, inner, encoding, limits)


def _json_format(keys: dict[str, None], container: str) -> str:
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "openai_chat"
    if "chosen" in keys and "rejected" in keys:  # without a prompt: refused as missing it
        return "preference"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    return container


def sniff(
    path: str | os.PathLike[str],
    filename: str,
    *,
    fmt: str | None = None,
    encoding: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    sample: int = 100,
    keep: int = 10,
    strict: bool = True,
) -> Sniffed:
    """Guess format, encoding, columns and a mapping from the start of the file.

    What it sees: the first 64 KB decide the encoding and how to read the file; then at most
    `sample` records are read, and at most `keep` of their problems kept in `sample_errors`. A JSON
    array is read element by element, so a long one is sniffed from its head and never parsed
    whole; problems further on (a bad line 10,000, an array cut short at its end) are found by the
    import.

    Raises DatasetError when the file cannot be read at all. With `strict` (the upload's first
    step) it also raises, with the place, when the sampled part already shows the file cannot
    import as it is: a problem that stops the reader (a malformed or truncated JSON array, a
    top-level object, undecodable text, an over-long line), text that is not valid Unicode, or a
    JSON file in which no sampled record could be read (DatasetInvalid when there are several).
    Problems of single records (one bad line among good ones) stay in `sample_errors`. The
    importer passes `strict=False` so it can report such problems in file order with the rest.
    """
    source = open_source(path, filename, fmt=fmt, encoding=encoding, limits=limits)
    try:
        rows: list[dict[str, Any]] = []
        errors: list[DatasetError] = []
        keys: dict[str, None] = dict.fromkeys(source.columns or [])
        seen = 0
        stopped: DatasetError | None = None
        ended = False
        try:
            for item in source.records():
                if isinstance(item, DatasetError):
                    errors.append(item)
                    if len(errors) >= keep:
                        break
                    continue
                unicode = _lone_surrogate(item)
                if unicode is not None:  # a safety net: the JSON readers refuse these already
                    errors.append(unicode)
                    continue
                seen += 1
                if len(rows) < keep:
                    rows.append(item.data)
                if source.container in ("jsonl", "json"):
                    _check_keys(item, keys)
                    keys.update(dict.fromkeys(item.data))
                if seen >= sample:
                    break
            else:
                ended = True
        except DatasetError as exc:  # the file cannot be read past this point
            if exc.code in ("key_too_long", "duplicate_column"):  # _check_keys: import neither
                raise
            errors.append(exc)
            stopped = exc
        if strict:
            _refuse_at_sniff(source, filename, errors, stopped, seen, ended, rows)
        columns = list(keys)
        if source.container == "zip":
            fmt = "image_zip"
            mapping = suggest_mapping(columns, schema="image_caption")
        elif source.container in ("jsonl", "json"):
            fmt = (
                fmt if fmt not in (None, "jsonl", "json") else _json_format(keys, source.container)
            )
            mapping = _mapping_for_format(fmt, columns)
        else:
            fmt = source.container
            mapping = suggest_mapping(columns)
        return Sniffed(
            format=fmt,
            encoding=source.encoding,
            columns=columns,
            sample_rows=rows,
            suggested_mapping=mapping,
            container=source.container,
            size=source.size,
            sample_errors=errors,
            warnings=list(source.warnings),
        )
    finally:
        source.close()


def _lone_surrogate(item: Rec) -> DatasetError | None:
    """A lone surrogate in a sampled record: the page that shows sample rows cannot encode it."""
    problem = find_problem(item.data)
    if problem is None or problem.code != "bad_unicode":
        return None
    error = _problem_error(problem, row=item.row, line=item.line)
    error.path = item.path
    return error


def _check_keys(item: Rec, keys: dict[str, None]) -> None:
    """Refuse a sampled record's key that the mapping page could not show or tell apart: one
    longer than MAX_KEY_CHARS, or one that equals a key already seen once both are in Unicode
    NFC ("café" typed with é, or with e and a combining accent) - two columns that look the same.
    Only the sample is checked: it is where the columns to map come from."""
    new = [k for k in item.data if k not in keys]
    if not new:
        return
    normal = {unicodedata.normalize("NFC", k): k for k in keys}
    for key in new:
        if len(key) > MAX_KEY_CHARS:
            error = _key_too_long(key, "a key name")
            error.row, error.line, error.path = item.row, item.line, item.path
            raise error
        twin = normal.setdefault(unicodedata.normalize("NFC", key), key)
        if twin != key:
            raise DatasetError(
                f'keys "{show(twin)}" and "{show(key)}" are the same name written two ways '
                "(Unicode NFC and NFD); rename one",
                row=item.row,
                line=item.line,
                path=item.path,
                code="duplicate_column",
            )


def _refuse_at_sniff(
    source: Any,
    filename: str,
    errors: list[DatasetError],
    stopped: DatasetError | None,
    seen: int,
    ended: bool,
    rows: list[dict[str, Any]],
) -> None:
    """Raise what `sniff(strict=True)` refuses (see there); return when the sample may import."""
    if stopped is not None:
        if len(errors) == 1:
            raise stopped
        raise DatasetInvalid(errors)
    for error in errors:
        if error.code == "bad_unicode":
            raise error
    if source.container not in ("jsonl", "json", "zip"):
        return
    if seen == 0 and errors:  # not one record could be read: the mapping step has nothing
        raise errors[0] if len(errors) == 1 else DatasetInvalid(errors)
    if source.container == "zip":
        return
    # One object on one line in a .json file: a valid JSONL record, but a list of records
    # wrapped in an object ({"data": [...]}) is the usual mistake; say so at the first step.
    if (
        source.container == "jsonl"
        and filename.lower().endswith(".json")
        and seen == 1
        and ended
        and not errors
        and _wrapped(rows[0]) is not None
    ):
        raise _one_object(rows[0])


def _mapping_for_format(fmt: str, columns: list[str]) -> Mapping | None:
    if fmt == "sharegpt":
        return Mapping("chat", {"messages": "conversations"})
    if fmt == "openai_chat":
        return Mapping("chat", {"messages": "messages"})
    if fmt == "preference":
        return Mapping(
            "preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
        )
    if fmt == "alpaca":
        cols = {"instruction": "instruction", "output": "output"}
        if "input" in columns:
            cols["input"] = "input"
        return Mapping("instruction", cols)
    return suggest_mapping(columns)
