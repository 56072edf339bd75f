"""Readers for dataset files, streamed with bounded memory, and `sniff()` to guess how to read one.

Every reader yields `Rec` (one source record as a dict, with its place) or a located
`DatasetError` for a bad record, and raises `DatasetError` for a problem that stops the file
(undecodable bytes, an over-long line, a broken header, a JSON array that cannot be resynchronised).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.data.canonical import Mapping, suggest_mapping
from workers.data.errors import DatasetError
from workers.data.images import ARCHIVE_MAGIC, Rec, ZipSource, is_zip
from workers.data.limits import DEFAULT_LIMITS, ImportLimits, exceeds_depth, human_bytes

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
}


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
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK), decided on the first bytes."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bom = head.startswith(BOM_UTF8)
    body = head[3:] if bom else head
    if b"\x00" in body:
        raise DatasetError(
            "the file looks binary (it has NUL bytes); upload CSV, JSON or JSONL text, "
            "or save UTF-16 text as UTF-8",
            code="binary",
        )
    # Not final: a character cut at the end of the sample (or of a truncated file) is not a
    # verdict on the encoding; the reader reports a truncated file with its line.
    utf8 = _decode_error(body, "utf-8", False)
    if utf8 is None:
        return "utf-8-sig" if bom else "utf-8"
    if _decode_error(body, "gb18030", False) is None:
        return "gb18030"
    line = body.count(b"\n", 0, utf8.start) + 1
    raise DatasetError(
        f"the file is not UTF-8, GBK or GB18030 text (line {line} has the byte "
        f"0x{body[utf8.start]:02x}); save it as UTF-8 or choose its encoding",
        code="bad_encoding",
    )


class _Text:
    """A decoded text stream over a binary file; a UTF-8 BOM is skipped whatever the encoding."""

    def __init__(self, path: str, encoding: str) -> None:
        codec = _codec_name(encoding)
        self.encoding = encoding
        self.raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115
        if codec != "utf-16" and self.raw.read(3) != BOM_UTF8:
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
    return DatasetError(
        f"not valid {_display(encoding)} text (byte 0x{bad.hex()}); choose the file's encoding",
        line=line,
        code="bad_encoding",
    )


class _Lines:
    """Physical lines with a length limit; counts them so errors can name the line."""

    def __init__(self, text: _Text, max_chars: int) -> None:
        self._readline = text.text.readline
        self._text = text
        self._max = max_chars
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        readline, limit, max_chars = self._readline, self._max + 1, self._max
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


def _csv_error(exc: csv.Error, row: int, limits: ImportLimits) -> DatasetError:
    msg = str(exc)
    if "field larger than field limit" in msg:
        return DatasetError(
            f"a cell is longer than {limits.max_cell_chars:,} characters (the limit)",
            row=row,
            code="cell_too_long",
        )
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
        self._lines = _Lines(self._text, limits.max_line_chars)
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
        seen: dict[str, int] = {}
        for i, name in enumerate(header, 1):
            if name and name in seen:
                raise DatasetError(
                    f'the header repeats column "{name}" (columns {seen[name]} and {i})',
                    code="duplicate_column",
                )
            seen[name] = i
        return header

    def records(self) -> Iterator[Rec | DatasetError]:
        header = self.columns
        assert header is not None
        width = len(header)
        reader = self._reader
        row = 0
        blank = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row += 1
                yield _csv_error(exc, row, self.limits)
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
        loads = json.loads
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
                obj = loads(line)
            except json.JSONDecodeError as exc:
                hint = ""
                if line[-1:] not in ("\n", "\r"):
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
            yield Rec(None, n, None, obj)


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

    def _element(self, text: _Chunks, row: int) -> tuple[Any, int]:
        """Decode the element at text.pos, reading more text while it may be cut by the chunk."""
        limits = self.limits
        decoder = json.JSONDecoder()
        while True:
            buf, pos = text.buf, text.pos
            try:
                return decoder.raw_decode(buf, pos)
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

    def _check(
        self, obj: Any, text: _Chunks, start: int, end: int, row: int
    ) -> DatasetError | None:
        limits = self.limits
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
                obj, end = self._element(text, row)
                problem = self._check(obj, text, text.pos, end, row)
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
    if lower.endswith((".tsv", ".tab")):
        return "tsv"
    if lower.endswith(".csv"):
        return "csv"
    first_line = text.split("\n", 1)[0]
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
    if all(k in keys for k in ("prompt", "chosen", "rejected")):
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
) -> Sniffed:
    """Guess format, encoding, columns and a mapping from the start of the file.

    Reads at most `sample` records; raises DatasetError when the file cannot be read at all.
    """
    source = open_source(path, filename, fmt=fmt, encoding=encoding, limits=limits)
    try:
        rows: list[dict[str, Any]] = []
        errors: list[DatasetError] = []
        keys: dict[str, None] = dict.fromkeys(source.columns or [])
        seen = 0
        try:
            for item in source.records():
                if isinstance(item, DatasetError):
                    errors.append(item)
                    if len(errors) >= keep:
                        break
                    continue
                seen += 1
                if len(rows) < keep:
                    rows.append(item.data)
                if source.container in ("jsonl", "json"):
                    keys.update(dict.fromkeys(item.data))
                if seen >= sample:
                    break
        except DatasetError as exc:  # the file cannot be read past this point
            errors.append(exc)
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
