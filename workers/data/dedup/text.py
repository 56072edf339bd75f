"""The text a dataset row is compared on, and its normalized forms (exact and lexical passes)."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import PurePosixPath
from typing import Any

__all__ = [
    "LEXICAL_CHARS",
    "lexical_text",
    "normalize_text",
    "parse_line",
    "record_text",
    "text_key",
]

LEXICAL_CHARS = 4_000  # normalized characters shingled per text

# Content fields of the canonical schemas, in reading order. Other keys (ids, metadata) of these
# schemas are not compared; a record of no known schema is compared on all its string values.
_SCHEMAS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("prompt", "chosen", "rejected"), ("prompt", "chosen", "rejected")),
    (("instruction", "output"), ("instruction", "input", "output")),
    (("question", "answer"), ("question", "answer")),
)


def _strings(value: Any, out: list[str]) -> None:
    """Collect the string leaves of a JSON value, depth first, dict keys sorted."""
    if isinstance(value, str):
        if value:
            out.append(value)
    elif isinstance(value, dict):
        for key in sorted(value):
            _strings(value[key], out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def record_text(record: dict) -> str:
    """The text a record is compared on.

    * chat ``{messages: [{role, content}]}``: the contents in order (a content that is a list of
      parts contributes the parts' ``text``);
    * image_caption ``{image, caption}``: the caption, then the image's file name;
    * preference / instruction / qa: their content fields in reading order
      (prompt, chosen, rejected / instruction, input, output / question, answer);
    * anything else: every string value, keys sorted, nested values depth first.

    Parts are joined with a newline; empty strings are skipped.
    """
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    parts: list[str] = []
    messages = record.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else message
            if isinstance(content, list):  # OpenAI content parts: their "text" only
                for part in content:
                    _strings(part.get("text") if isinstance(part, dict) else part, parts)
            else:
                _strings(content, parts)
        return "\n".join(parts)
    if "image" in record and "caption" in record:
        _strings(record.get("caption"), parts)
        image = record.get("image")
        if isinstance(image, str) and image:
            parts.append(PurePosixPath(image.replace("\\", "/")).name)
        return "\n".join(parts)
    for required, fields in _SCHEMAS:
        if all(key in record for key in required):
            for key in fields:
                _strings(record.get(key), parts)
            return "\n".join(parts)
    _strings(record, parts)
    return "\n".join(parts)


def normalize_text(text: str) -> str:
    """NFKC, casefold, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str) -> bytes:
    """The exact pass's key: 16 bytes of BLAKE2b over :func:`normalize_text`."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


class _DropTable(dict):
    """``str.translate`` table deleting whitespace, punctuation (Unicode P*), separators (Z*) and
    control / format characters (Cc, Cf: zero-width spaces); filled lazily, one lookup per
    distinct character. Symbols (S*: ``<``, ``%``, ``℃``) and letters/digits stay."""

    def __missing__(self, code: int) -> int | None:
        char = chr(code)
        category = unicodedata.category(char)
        value = None if char.isspace() or category[0] in "PZ" or category in ("Cc", "Cf") else code
        self[code] = value
        return value


_DROP = _DropTable()


def lexical_text(text: str) -> str:
    """The text the lexical (character) pass compares: :func:`normalize_text`, then whitespace and
    punctuation removed, cut to ``LEXICAL_CHARS`` characters."""
    return normalize_text(text).translate(_DROP)[:LEXICAL_CHARS]


def parse_line(line: bytes, row: int) -> dict:
    """One canonical JSONL line as a JSON object; ``ValueError("line N: ...")`` otherwise."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"line {row}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {row}: expected a JSON object, got {type(record).__name__}")
    return record
