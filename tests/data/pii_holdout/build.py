"""Turn the hand-written hold-out records (records.md, inline markup) into records.jsonl.

Markup, so that offsets are never counted by hand:

* ``## kind`` starts a record; its text is every following line up to the next ``## `` line,
  without the blank lines at either end. Lines starting with ``%`` are comments.
* ``[[value|T]]`` is a labeled span; T is a type or one of the short names in `ALIASES`.
* ``{{value}}`` is a decoy: not PII, kept unlabeled in the text and listed under "decoys" so the
  set can count them and the report can say which decoys fooled the detector.
* In a labeled CN_RESIDENT_ID or BANK_CARD value a final ``?`` is replaced by the right check digit
  (GB 11643 / Luhn); in a decoy a final ``!`` is replaced by a wrong one (18 characters: the ID
  checksum, otherwise Luhn), so a decoy never passes a checksum by luck.

Run ``python -m tests.data.pii_holdout.build`` after editing records.md; the test checks that
records.jsonl is up to date.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "records.md"
TARGET = HERE / "records.jsonl"

ALIASES = {
    "P": "PERSON",
    "ID": "CN_RESIDENT_ID",
    "PH": "CN_PHONE",
    "BC": "BANK_CARD",
    "EM": "EMAIL",
    "IP": "IP_ADDRESS",
    "PP": "PASSPORT",
    "UC": "URL_CREDENTIALS",
}
TYPES = frozenset(ALIASES.values())
MARKUP = re.compile(r"\[\[(.+?)\|([A-Z_]+)\]\]|\{\{(.+?)\}\}")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


class MarkupError(ValueError):
    """A record that cannot be built, with the line of records.md it starts on."""


def id_check_digit(first17: str) -> str:
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _check_digit(value: str, kind: str) -> str:
    """The right last character for `value` (its last character is a placeholder)."""
    digits = re.sub(r"[ -]", "", value[:-1])
    if kind == "CN_RESIDENT_ID" or (kind == "decoy" and len(digits) == 17):
        return id_check_digit(digits)
    return luhn_check_digit(digits)


def _fill(value: str, kind: str, line: int) -> str:
    if value.endswith("?"):
        if kind not in ("CN_RESIDENT_ID", "BANK_CARD"):
            raise MarkupError(f"line {line}: '?' check digit on a {kind} span: {value}")
        return value[:-1] + _check_digit(value, kind)
    if value.endswith("!"):
        if kind != "decoy":
            raise MarkupError(f"line {line}: '!' wrong check digit on a labeled span: {value}")
        right = _check_digit(value, kind)
        wrong = "0" if right in "X9" else str(int(right) + 1)
        return value[:-1] + wrong
    return value


def parse_record(kind: str, body: str, line: int) -> dict:
    text, spans, decoys, pos = [], [], [], 0
    length = 0
    for m in MARKUP.finditer(body):
        text.append(body[pos : m.start()])
        length += m.start() - pos
        if m.group(1) is not None:
            label = ALIASES.get(m.group(2), m.group(2))
            if label not in TYPES:
                raise MarkupError(f"line {line}: unknown type {m.group(2)!r}")
            value = _fill(m.group(1), label, line)
            spans.append([length, length + len(value), label])
        else:
            value = _fill(m.group(3), "decoy", line)
            decoys.append(value)
        text.append(value)
        length += len(value)
        pos = m.end()
    text.append(body[pos:])
    joined = "".join(text)
    if "[[" in joined or "]]" in joined or "{{" in joined or "}}" in joined:
        raise MarkupError(f"line {line}: unbalanced markup")
    return {"text": joined, "spans": spans, "kind": kind, "decoys": decoys}


def parse(source: str) -> list[dict]:
    records: list[dict] = []
    kind, start, lines = None, 0, []

    def flush() -> None:
        if kind is not None:
            body = "\n".join(lines).strip("\n")
            if not body.strip():
                raise MarkupError(f"line {start}: empty record")
            records.append(parse_record(kind, body, start))

    for n, raw in enumerate(source.splitlines(), start=1):
        if raw.startswith("## "):
            flush()
            kind, start, lines = raw[3:].strip(), n, []
        elif raw.startswith("%"):
            continue
        elif kind is not None:
            lines.append(raw)
    flush()
    return records


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> int:
    records = parse(SOURCE.read_text(encoding="utf-8"))
    TARGET.write_text(render(records), encoding="utf-8")
    spans = sum(len(r["spans"]) for r in records)
    decoys = sum(len(r["decoys"]) for r in records)
    print(f"{len(records)} records, {spans} spans, {decoys} decoys -> {TARGET.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
