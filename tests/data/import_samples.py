"""Builders for dataset-import tests: small files in every supported format, real and fake images."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

QA = [
    ("什么是高血压?", "血压持续高于 140/90 mmHg。"),
    ("How do I sleep better?", 'Keep a regular schedule, avoid "screens", and rest.'),
    ("糖尿病患者可以吃水果吗?", "可以,但要选择低糖水果,\n并控制分量。"),
    ("Is 37.5 °C a fever?", "A mild one; drink water and rest."),
]

CHAT = [
    [("system", "你是一名医生。"), ("user", "头痛怎么办?"), ("assistant", "多休息,必要时就医。")],
    [
        ("user", "Hello"),
        ("assistant", "Hi! How can I help?"),
        ("user", "Thanks"),
        ("assistant", "Bye"),
    ],
]
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def write_csv(
    path: Path,
    header: list[str],
    rows: list[tuple[str, ...]],
    *,
    encoding: str = "utf-8",
    bom: bool = False,
    delimiter: str = ",",
) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def write_jsonl(path: Path, records: list, *, encoding: str = "utf-8") -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(text.encode(encoding))
    return path


def write_json(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def qa_records() -> list[dict]:
    return [{"question": q, "answer": a} for q, a in QA]


def expected_jsonl(records: list[dict]) -> bytes:
    return b"".join(
        json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for r in records
    )


def openai_chats() -> list[dict]:
    return [{"messages": [{"role": r, "content": c} for r, c in chat]} for chat in CHAT]


def sharegpt_chats() -> list[dict]:
    return [
        {"id": i, "conversations": [{"from": SHAREGPT_FROM[r], "value": c} for r, c in chat]}
        for i, chat in enumerate(CHAT)
    ]


def png(width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(width: int = 8, height: int = 8, color: tuple[int, int, int] = (30, 30, 200)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds no pixel data: a decompression-bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def write_zip(path: Path, entries: list, *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """entries: (name, bytes) or a ready zipfile.ZipInfo with its bytes."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for entry in entries:
            name, data = entry
            if isinstance(name, zipfile.ZipInfo):
                zf.writestr(name, data)
            else:
                zf.writestr(name, data)
    return path


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def listing(folder: Path) -> list[str]:
    """Everything under a folder (relative paths), hidden entries included."""
    out = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            out.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(out)
