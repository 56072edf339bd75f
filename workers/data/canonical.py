"""Canonical records: schemas, column mappings, prompt templates, canonical JSONL + SHA-256,
the seeded train/validation split, and streaming transforms that make new versions.

A dataset version is identified by the SHA-256 of its canonical JSONL: one record per line,
`json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))`, UTF-8, "\\n" after
every line, in source order. The same records give the same hash whatever file they came from.

What a record may hold, decided once for every format:
- A text role takes a string only. A number, true/false, null or an object is refused with the
  column and the type found (a number is not silently turned into text: `0.10` would come
  back as 0.1, `1e999` as inf). An optional role (alpaca `input`) may be missing, null or "".
- Chat messages name their speaker with "role" (OpenAI: text in "content") or "from" (ShareGPT:
  text in "value"). Both keys take the same five values, per message, in any record: "system",
  "user" or "human" (-> user), "assistant" or "gpt" (-> assistant). Anything else is refused with
  that list, so a file mixing the two conventions imports, and no record is read by another rule.
- A preference pair whose chosen and rejected texts are the same (after the newline
  normalisation every text gets, and ignoring surrounding whitespace) is refused: it teaches
  nothing and usually means a column was mapped twice by mistake.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.data.errors import DatasetError, MappingError, TemplateError
from workers.data.limits import STRICT_JSON, exceeds_depth, explain_json, find_problem, show

__all__ = [
    "CANONICAL_NAME",
    "DEFAULT_TEMPLATES",
    "IMAGES_DIR",
    "SCHEMAS",
    "CanonicalWriter",
    "Canonicalizer",
    "Mapping",
    "TransformResult",
    "check_fraction",
    "check_template",
    "dump_record",
    "export_csv_lines",
    "filter_rows",
    "iter_rows",
    "iter_split",
    "map_rows",
    "read_rows",
    "record_text",
    "render_template",
    "split_counts",
    "split_of",
    "suggest_mapping",
    "template_fields",
]

CANONICAL_NAME = "data.jsonl"
IMAGES_DIR = "images"


@dataclass(frozen=True)
class Schema:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def roles(self) -> tuple[str, ...]:
        order = {"instruction": ("instruction", "input", "output")}
        return order.get(self.name, self.required + self.optional)


SCHEMAS: dict[str, Schema] = {
    "qa": Schema("qa", ("question", "answer")),
    "instruction": Schema("instruction", ("instruction", "output"), ("input",)),
    "chat": Schema("chat", ("messages",)),
    "preference": Schema("preference", ("prompt", "chosen", "rejected")),
    "image_caption": Schema("image_caption", ("image", "caption")),
}

DEFAULT_TEMPLATES: dict[str, str] = {
    "qa": "### 问题:{question}\n### 回答:{answer}",
    "instruction": "### 指令:{instruction}\n### 输入:{input}\n### 回答:{output}",
    "chat": "{messages}",
    "preference": "### 问题:{prompt}\n### 回答:{chosen}",
    "image_caption": "{caption}",
}


def _or_list(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class Mapping:
    """Which source column (CSV header, JSON key) feeds each role of a canonical schema."""

    schema: str
    columns: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", dict(self.columns))  # the caller's dict may change
        spec = SCHEMAS.get(self.schema)
        if spec is None:
            raise MappingError(
                f'unknown schema "{self.schema}" (expected {_or_list(SCHEMAS)})', code="bad_mapping"
            )
        unknown = [r for r in self.columns if r not in spec.roles]
        if unknown:
            raise MappingError(
                f"the {self.schema} schema has no role {_quoted(unknown)} "
                f"(its roles: {_quoted(spec.roles)})",
                code="bad_mapping",
            )
        missing = [r for r in spec.required if not self.columns.get(r)]
        if missing:
            raise MappingError(
                f"the {self.schema} mapping needs a column for {_quoted(missing)}",
                code="bad_mapping",
            )
        seen: dict[str, str] = {}
        for role, column in self.columns.items():
            if not isinstance(column, str):
                raise MappingError(
                    f'the column for "{role}" must be a name, not {column!r}', code="bad_mapping"
                )
            if column in seen:
                raise MappingError(
                    f'"{seen[column]}" and "{role}" both map to column "{column}"',
                    code="bad_mapping",
                )
            seen[column] = role

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "columns": dict(self.columns)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mapping:
        return cls(schema=data["schema"], columns=dict(data.get("columns") or {}))


# Names users give columns, most specific first. Matching ignores case, spaces, "_" and "-".
_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "question": (
        "question",
        "questions",
        "q",
        "query",
        "prompt",
        "ask",
        "问题",
        "提问",
        "问",
        "问句",
        "题目",
        "咨询",
        "input",
    ),
    "answer": (
        "answer",
        "answers",
        "a",
        "response",
        "reply",
        "completion",
        "回答",
        "答案",
        "答",
        "回复",
        "解答",
        "output",
    ),
    "instruction": ("instruction", "instructions", "instruct", "task", "指令", "任务", "指示"),
    "input": ("input", "inputs", "context", "输入", "上下文"),
    "output": ("output", "outputs", "response", "target", "completion", "输出", "回答", "答案"),
    "prompt": ("prompt", "question", "query", "instruction", "提示", "问题"),
    "chosen": (
        "chosen",
        "accepted",
        "preferred",
        "better",
        "responsechosen",
        "chosenresponse",
        "选中",
        "优选",
        "更好",
    ),
    "rejected": (
        "rejected",
        "dispreferred",
        "worse",
        "responserejected",
        "rejectedresponse",
        "拒绝",
        "较差",
    ),
    "messages": ("messages", "conversations", "conversation", "dialog", "dialogue", "chat", "对话"),
    "image": ("filename", "image", "imagepath", "file", "path", "图片", "图像"),
    "caption": ("caption", "text", "description", "prompt", "标题", "描述", "说明"),
}
_SUGGEST_ORDER = ("preference", "chat", "instruction", "qa")
# Columns named for another schema's role are not "two anonymous columns": `chosen` and
# `rejected` without a `prompt` are a preference file missing a column, not questions and answers.
_OTHER_SCHEMA_NAMES = frozenset(
    n for role in ("chosen", "rejected", "messages", "image") for n in _ROLE_NAMES[role]
)
_NORMALIZE = re.compile(r"[\s_\-]+")


def _norm(name: str) -> str:
    return _NORMALIZE.sub("", name).lower()


def _match_role(role: str, columns: list[str], taken: set[str]) -> str | None:
    normed = [(c, _norm(c)) for c in columns if c not in taken and c]
    names = _ROLE_NAMES[role]
    for synonym in names:
        for column, n in normed:
            if n == synonym:
                return column
    for synonym in names:  # "患者问题", "question_text": the synonym inside a longer name
        if len(synonym) < (2 if not synonym.isascii() else 4):
            continue
        for column, n in normed:
            if synonym in n:
                return column
    return None


def suggest_mapping(columns: list[str], *, schema: str | None = None) -> Mapping | None:
    """Guess a mapping from column names (question/answer/问题/回答, instruction/input/output, ...)."""
    candidates = (schema,) if schema else _SUGGEST_ORDER
    for name in candidates:
        spec = SCHEMAS[name]
        taken: set[str] = set()
        found: dict[str, str] = {}
        for role in spec.required + spec.optional:
            column = _match_role(role, columns, taken)
            if column is not None:
                found[role] = column
                taken.add(column)
        if all(r in found for r in spec.required):
            return Mapping(name, found)
    named = [c for c in columns if c]
    if (
        schema in (None, "qa")
        and len(named) == 2
        and not any(_norm(c) in _OTHER_SCHEMA_NAMES for c in named)
    ):  # two anonymous columns: a question and its answer
        return Mapping("qa", {"question": named[0], "answer": named[1]})
    return None


# --------------------------------------------------------------------------- canonical records

# One table for "role" and "from" alike (see the module docstring).
_SPEAKERS = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}
_SPEAKER_LIST = _or_list(_SPEAKERS)
MAX_CELL_JSON_DEPTH = 32  # a CSV cell holding chat messages as JSON: as deep as a JSON record

RoleError = tuple[str | None, str, str]  # (column, reason, code)


def _kind(value: Any) -> str:
    """The JSON type of a value, as a message names it."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 in the file
        return "a number too large to hold (it reads as infinity)"
    if isinstance(value, int | float):
        shown = repr(value) if isinstance(value, float) else str(value)
        return f"a number ({show(shown, 24)})"
    return "a value of another kind"  # pragma: no cover - records hold JSON types only


def _text(value: Any, max_chars: int) -> tuple[str | None, str | None, str]:
    """(text, None, "") or (None, reason, code)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return None, f"must be text, not {_kind(value)}; put it in quotes", "not_text"
    elif _is_message_list(value):
        return None, "must be text, not a list of messages (write the text itself)", "not_text"
    else:
        return None, f"must be text, not {_kind(value)}", "not_text"
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text or text.isspace():
        return None, "is empty", "empty"
    if "\x00" in text:
        return None, "has a NUL character (is this a binary file?)", "binary"
    if len(text) > max_chars:
        return (
            None,
            f"is {len(text):,} characters long; the limit is {max_chars:,}",
            "cell_too_long",
        )
    return text, None, ""


def _is_message_list(value: Any) -> bool:
    """[{"role": ..., "content": ...}, ...]: a chat where one text was expected (a conversational
    preference file's `chosen`)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and ("role" in m or "from" in m) for m in value)
    )


def _part_text(content: Any) -> Any:
    """OpenAI content may be a list of parts: keep the text parts, refuse the others."""
    if not isinstance(content, list):
        return content
    texts = []
    for part in content:
        if (
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ):
            texts.append(part["text"])
        elif isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            what = "has no" if "text" not in part else f"is {_kind(part['text'])}, not"
            return ValueError(f'has a "text" content part whose "text" {what} text')
        elif isinstance(part, dict) and isinstance(part.get("type"), str):
            return ValueError(f'has a "{show(part["type"])}" content part; only text is supported')
        else:
            return ValueError(f"has a content part that is {_kind(part)}; only text is supported")
    return "".join(texts)


def _cell_json(text: str) -> tuple[Any, str | None, str]:
    """A CSV cell holding the messages as JSON, read by the same rules as a JSON file."""
    if exceeds_depth(text, MAX_CELL_JSON_DEPTH):
        return None, f"holds JSON nested deeper than {MAX_CELL_JSON_DEPTH} levels", "too_deep"
    try:
        value = STRICT_JSON.decode(text)
    except json.JSONDecodeError:
        return None, "holds text that is not a valid JSON list of messages", "not_messages"
    except ValueError:  # refused by STRICT_JSON: say what and where
        try:
            problem = explain_json(text, len(text) - len(text.lstrip()))
        except json.JSONDecodeError:  # refused before the parser reached a syntax error
            return None, "holds text that is not a valid JSON list of messages", "not_messages"
        if problem is None:  # pragma: no cover - STRICT_JSON refuses only what this finds
            return None, "holds JSON that cannot be read", "not_messages"
        return None, _in_cell(problem.path, problem.what), problem.code
    problem = find_problem(value)  # a lone surrogate
    if problem is not None:
        return None, _in_cell(problem.path, problem.what), problem.code
    return value, None, ""


def _in_cell(path: tuple[str | int, ...], what: str) -> str:
    """`, message 2, key "content" is NaN, ...`: a problem and its place in a cell's messages."""
    place = "".join(
        (f", message {p + 1}" if i == 0 else f", item {p + 1}")
        if isinstance(p, int)
        else f', key "{show(p)}"'
        for i, p in enumerate(path)
    )
    if not place or what.startswith(":"):
        return place + what
    return f"{place} {what}"


def _unknown_speaker(key: str, name: Any, i: int) -> str:
    shown = f'"{show(name)}"' if isinstance(name, str) else _kind(name)
    label = "role" if key == "role" else '"from" value'
    return f", message {i}: unknown {label} {shown} (expected {_SPEAKER_LIST})"


def _messages(value: Any, max_chars: int) -> tuple[list | None, str | None, str]:
    if isinstance(value, str) and value.lstrip().startswith("["):
        value, reason, code = _cell_json(value)
        if reason is not None:
            return None, reason, code
    if value is None or value == "":
        return None, "has no messages", "empty"
    if not isinstance(value, list):
        return None, f"must be a list of messages, not {_kind(value)}", "not_messages"
    if not value:
        return None, "has no messages", "empty"
    out = []
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            return None, f", message {i}: must be an object, not {_kind(m)}", "bad_message"
        if "role" in m:
            key, name, content = "role", m["role"], m.get("content")
        elif "from" in m:
            key, name, content = "from", m["from"], m.get("value")
        else:
            return None, f', message {i}: has neither "role" nor "from"', "bad_message"
        role = _SPEAKERS.get(name) if type(name) is str else None
        if role is None:
            return None, _unknown_speaker(key, name, i), "bad_role"
        if content is None and key == "role" and ("tool_calls" in m or "function_call" in m):
            return (
                None,
                f", message {i}: is a tool call; tool calls are not supported (leave such "
                "messages out)",
                "not_text",
            )
        if content is None and ("content" if key == "role" else "value") not in m:
            return (
                None,
                f', message {i}: has no "{"content" if key == "role" else "value"}"',
                "empty",
            )
        if type(content) is list:  # the test inlined: a call per message costs ~3% of an import
            content = _part_text(content)
        if isinstance(content, ValueError):
            return None, f", message {i}: {content}", "not_text"
        text, reason, code = _text(content, max_chars)
        if reason is not None:
            return None, f", message {i}: content {reason}", code
        out.append({"content": text, "role": role})
    roles = {m["role"] for m in out}
    for needed in ("user", "assistant"):
        if needed not in roles:
            return None, f"has no {needed} message", "no_" + needed
    return out, None, ""


class Canonicalizer:
    """Turns one source record (a dict of column -> value) into a canonical record, or errors."""

    def __init__(
        self,
        mapping: Mapping,
        *,
        max_cell_chars: int,
        resolve_image: Callable[[str], tuple[str | None, DatasetError | None]] | None = None,
    ) -> None:
        self.mapping = mapping
        spec = SCHEMAS[mapping.schema]
        self._required = [(r, mapping.columns[r]) for r in spec.required]
        self._optional = [(r, mapping.columns.get(r)) for r in spec.optional]
        self._max = max_cell_chars
        self._resolve_image = resolve_image
        self._pair = (
            (mapping.columns["chosen"], mapping.columns["rejected"])
            if mapping.schema == "preference"
            else None
        )
        if mapping.schema == "image_caption" and resolve_image is None:
            raise MappingError(
                "image_caption records come only from an image zip", code="bad_mapping"
            )

    def __call__(
        self, data: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[RoleError | DatasetError]]:
        """(record, []) or (None, errors); an error is (column, reason, code) or a located one."""
        record: dict[str, Any] = {}
        errors: list[RoleError | DatasetError] = []
        out: str | list[Any] | None
        for role, column in self._required:
            if column not in data:
                errors.append((column, "is missing", "missing"))
                continue
            value = data[column]
            if role == "messages":
                out, reason, code = _messages(value, self._max)
            elif role == "image":
                if not isinstance(value, str) or not value.strip():
                    out, reason, code = None, "must name an image file", "not_text"
                else:
                    out, located = self._resolve_image(value)  # type: ignore[misc]
                    if located is not None:
                        errors.append(located)
                        continue
                    reason, code = None, ""
            else:
                out, reason, code = _text(value, self._max)
            if reason is not None:
                errors.append((column, reason, code))
            else:
                record[role] = out
        for role, optional_column in self._optional:
            value = data.get(optional_column) if optional_column else None
            if value is None or value == "":
                record[role] = ""
                continue
            out, reason, code = _text(value, self._max)
            if reason is not None and code != "empty":
                errors.append((optional_column, reason, code))
            else:
                record[role] = out or ""
        if self._pair is not None and not errors and _same(record["chosen"], record["rejected"]):
            chosen, rejected = self._pair
            errors.append(
                (
                    rejected,
                    f'is the same text as column "{chosen}" (a preference pair needs two '
                    "different answers)",
                    "same_answers",
                )
            )
        return (None if errors else record), errors


def _same(chosen: str, rejected: str) -> bool:
    return chosen == rejected or chosen.strip() == rejected.strip()


# --------------------------------------------------------------------------- JSONL + SHA-256

_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def dump_record(record: dict[str, Any]) -> bytes:
    """The canonical bytes of one record (no newline). Raises UnicodeEncodeError on lone surrogates."""
    return _ENCODER.encode(record).encode("utf-8")


class CanonicalWriter:
    """Writes canonical JSONL and hashes it on the way."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115
        self._sha = hashlib.sha256()
        self.rows = 0

    def write_line(self, line: bytes) -> None:
        data = line + b"\n"
        self._sha.update(data)
        self._file.write(data)
        self.rows += 1

    def write(self, record: dict[str, Any]) -> bytes:
        line = dump_record(record)
        self.write_line(line)
        return line

    def close(self) -> str:
        """Flush, fsync and return the SHA-256 (hex) of everything written."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self._sha.hexdigest()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> CanonicalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def iter_rows(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the records of a canonical JSONL file."""
    with open(path, "rb") as f:
        for line in f:
            yield json.loads(line)


def read_rows(
    path: str | os.PathLike[str], offset: int = 0, limit: int = 20
) -> list[dict[str, Any]]:
    """One page of records (0-based `offset`), for previews with paging."""
    out = []
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(json.loads(line))
    return out


# --------------------------------------------------------------------------- split


def check_fraction(fraction: float) -> float:
    if (
        not isinstance(fraction, int | float)
        or isinstance(fraction, bool)
        or not 0 <= fraction <= 0.5
    ):
        raise ValueError(f"validation_fraction must be between 0 and 0.5, not {fraction!r}")
    return float(fraction)


def split_of(line: bytes, seed: int, fraction: float) -> str:
    """ "train" or "validation" for one canonical record (its bytes, no newline).

    A hash of the seed and the record decides, so the split never depends on order, and exact
    duplicates always land on the same side (no leakage between train and validation).
    """
    if fraction <= 0:
        return "train"
    digest = hashlib.sha256(b"%d\n" % seed + line).digest()
    return "validation" if int.from_bytes(digest[:8], "big") < fraction * 2**64 else "train"


def iter_split(
    path: str | os.PathLike[str], split: str, *, seed: int, fraction: float
) -> Iterator[dict[str, Any]]:
    """Stream the records of one side ("train" or "validation") of a canonical file."""
    if split not in ("train", "validation"):
        raise ValueError(f'split must be "train" or "validation", not {split!r}')
    check_fraction(fraction)
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if split_of(line, seed, fraction) == split:
                yield json.loads(line)


def split_counts(path: str | os.PathLike[str], *, seed: int, fraction: float) -> dict[str, int]:
    check_fraction(fraction)
    counts = {"train": 0, "validation": 0}
    with open(path, "rb") as f:
        for line in f:
            counts[split_of(line.rstrip(b"\n"), seed, fraction)] += 1
    return counts


# --------------------------------------------------------------------------- templates

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD = re.compile(r"^\w+$")


@functools.lru_cache(maxsize=256)
def _parse_template(template: str) -> tuple[tuple[str, bool], ...]:
    """[(text, is_field)]; raises TemplateError for unbalanced braces or odd placeholders."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            parts.append((template[pos : m.start()], False))
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append((token[0], False))
        elif token in ("{", "}"):
            raise TemplateError(
                f'unmatched "{token}" at character {m.start() + 1} '
                f"(write {token}{token} for a literal brace)",
                code="bad_template",
            )
        else:
            name = m.group(1).strip()
            if not _FIELD.match(name):
                raise TemplateError(
                    f"{token} is not a placeholder (use a field name such as {{question}}, "
                    "and {{ }} for literal braces)",
                    code="bad_template",
                )
            parts.append((name, True))
        pos = m.end()
    if pos < len(template):
        parts.append((template[pos:], False))
    return tuple(parts)


def template_fields(template: str) -> list[str]:
    """The placeholder names a template uses, in order, without repeats."""
    seen: dict[str, None] = {}
    for text, is_field in _parse_template(template):
        if is_field:
            seen[text] = None
    return list(seen)


def _unknown(names: list[str], available: Iterable[str]) -> TemplateError:
    available = sorted(available)
    noun = "placeholder" if len(names) == 1 else "placeholders"
    listed = ", ".join("{" + n + "}" for n in names)
    return TemplateError(
        f"unknown {noun} {listed} (available: {', '.join('{' + a + '}' for a in available)})",
        code="unknown_placeholder",
    )


def check_template(template: str, schema: str) -> None:
    """Raise TemplateError if the template does not fit records of `schema`."""
    if schema not in SCHEMAS:
        raise MappingError(f'unknown schema "{schema}"', code="bad_mapping")
    roles = SCHEMAS[schema].roles
    unknown = [n for n in template_fields(template) if n not in roles]
    if unknown:
        raise _unknown(unknown, roles)


def _field_text(value: Any) -> str:
    if isinstance(value, list):  # chat messages: one "role: content" line each
        return "\n".join(f"{m['role']}: {m['content']}" for m in value)
    return "" if value is None else str(value)


def render_template(template: str, record: dict[str, Any]) -> str:
    """Fill `{field}` placeholders from a canonical record; `{{` and `}}` are literal braces."""
    parts = _parse_template(template)
    unknown = [t for t, is_field in parts if is_field and t not in record]
    if unknown:
        raise _unknown(list(dict.fromkeys(unknown)), record)
    return "".join(_field_text(record[t]) if is_field else t for t, is_field in parts)


def record_text(record: dict[str, Any]) -> str:
    """All the text of a record (for lengths, language mix and scans), fields joined by newlines."""
    texts: list[str] = []
    for key in sorted(record):
        value = record[key]
        if key == "image":
            continue
        if isinstance(value, list):
            texts.extend(m.get("content", "") for m in value if isinstance(m, dict))
        elif isinstance(value, str) and value:
            texts.append(value)
    return "\n".join(texts)


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class TransformResult:
    path: str
    sha256: str
    rows: int


def _transform(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    step: Callable[[int, dict[str, Any]], dict[str, Any] | None],
    progress: Callable[[int, int], None] | None,
) -> TransformResult:
    out = os.fspath(out)
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".transform-", suffix=".jsonl", dir=folder)
    os.close(fd)
    total = os.path.getsize(src)
    try:
        with open(src, "rb") as f, CanonicalWriter(tmp) as writer:
            done = 0
            for index, line in enumerate(f):
                done += len(line)
                record = step(index, json.loads(line))
                if record is not None:
                    writer.write(record)
                if progress is not None and index % 4096 == 4095:
                    progress(done, total)
            sha = writer.close()
        if progress is not None:
            progress(total, total)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return TransformResult(out, sha, writer.rows)


def filter_rows(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    keep: Callable[[int, dict[str, Any]], bool],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> TransformResult:
    """Write the records for which `keep(index, record)` is true (index is 0-based) to `out`."""
    return _transform(src, out, lambda i, r: r if keep(i, r) else None, progress)


def map_rows(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fn: Callable[[int, dict[str, Any]], dict[str, Any]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> TransformResult:
    """Write `fn(index, record)` for every record (index is 0-based) to `out`, canonically."""

    def step(i: int, r: dict[str, Any]) -> dict[str, Any]:
        new = fn(i, r)
        if not isinstance(new, dict):
            raise TypeError(f"map_rows: fn returned {type(new).__name__} for index {i}, not a dict")
        return new

    return _transform(src, out, step, progress)


# --------------------------------------------------------------------------- CSV export

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)
    # Spreadsheets run cells that start like a formula: prefix them so they stay text.
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_csv_lines(path: str | os.PathLike[str], schema: str) -> Iterator[str]:
    """Stream a canonical file as CSV text (header first), with formula-like cells escaped."""
    roles = list(SCHEMAS[schema].roles)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def emit(row: list[str]) -> str:
        buf.seek(0)
        buf.truncate()
        writer.writerow(row)
        return buf.getvalue()

    yield emit(roles)
    for record in iter_rows(path):
        yield emit([_csv_cell(record.get(r, "")) for r in roles])
