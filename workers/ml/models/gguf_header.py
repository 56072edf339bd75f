"""Read a GGUF file's header with every count bounded, before anything else touches the file.

The `gguf` package's reader memory-maps the file and builds numpy arrays from the counts the
header declares, and transformers trusts those counts too: a hostile header (2^60 tensors, a
2^40-byte string) crashes the worker or asks it for terabytes. This reader checks each count
against a cap and against the bytes that remain *before* acting on it, so refusing a file costs
at most its header, and each refusal names the entry (KV 2, tensor 3 `blk.0.attn_q.weight`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from workers.ml.models.errors import ModelRefused

__all__ = ["GGUF_MAGIC", "GGUFHeader", "GGUFTensor", "read_gguf_header"]

GGUF_MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_TENSORS = 100_000
MAX_KVS = 10_000
MAX_KEY_BYTES = 64 * 1024
MAX_STRING_BYTES = 1024 * 1024
MAX_ARRAY_ITEMS = 1 << 24  # vocabularies and merge lists stay far below
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 1 << 40
DEFAULT_ALIGNMENT = 32
# The smallest tensor info: name length (8), dims count (4), one dim (8), type (4), offset (8).
MIN_TENSOR_INFO_BYTES = 32
# The smallest KV: key length (8), a one-byte key, value type (4), a one-byte value.
MIN_KV_BYTES = 14

STRING, ARRAY = 8, 9
# GGUF value types with a fixed size: type id -> struct format (little-endian).
SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensor, ...]
    data_start: int
    file_bytes: int
    array_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


def _n(value: int) -> str:
    """Large powers of two as 2^k (what a hostile header usually declares), others with commas."""
    if value >= 1 << 32 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return f"{value:,}"


def _size(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap >> 10} KiB"


def _shown(name: str) -> str:
    """A key or tensor name fit for a message: printable, and short."""
    clean = "".join(c if c.isprintable() and c != "`" else "?" for c in name)
    return clean if len(clean) <= 80 else clean[:77] + "..."


def _ggml_sizes() -> dict[int, tuple[str, int, int]]:
    """{GGML type id: (name, block size, bytes per block)}, from the gguf package's constants."""
    try:
        from gguf.constants import GGML_QUANT_SIZES
    except ImportError:
        raise ModelRefused("GGUF import needs the `gguf` package, which is not installed") from None
    return {int(t): (t.name, block, size) for t, (block, size) in GGML_QUANT_SIZES.items()}


class _Cursor:
    """Reads forward through the file and refuses, naming the entry, whatever would run past it."""

    def __init__(self, fh: BinaryIO, size: int, name: str) -> None:
        self.fh, self.size, self.name, self.pos = fh, size, name, 0

    def refuse(self, where: str, what: str) -> ModelRefused:
        return ModelRefused(f"{self.name}: {where}: {what}" if where else f"{self.name}: {what}")

    @property
    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, where: str) -> bytes:
        if n > self.left:
            raise self.refuse(
                where, f"the file is cut short: it ends at byte {self.size:,}, inside this entry"
            )
        data = self.fh.read(n)
        self.pos += n
        return data

    def skip(self, n: int, where: str) -> None:
        if n > self.left:
            raise self.refuse(
                where, f"the file is cut short: it ends at byte {self.size:,}, inside this entry"
            )
        self.fh.seek(n, 1)
        self.pos += n

    def unpack(self, fmt: str, where: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), where))[0]

    def string(self, where: str, cap: int, *, keep: bool = True) -> str:
        length = self.unpack("<Q", where)
        if length > self.left:
            raise self.refuse(where, f"string length {_n(length)} is past the end of the file")
        if length > cap:
            raise self.refuse(where, f"string length {_n(length)} is over the {_size(cap)} limit")
        if not keep:
            self.skip(length, where)
            return ""
        return self.take(length, where).decode("utf-8", errors="replace")


def _read_array(cur: _Cursor, where: str) -> int:
    """Check an array value and step over it; returns its length (the values are not kept)."""
    item_type = cur.unpack("<I", where)
    if item_type == ARRAY:
        raise cur.refuse(where, "arrays of arrays are not supported")
    if item_type != STRING and item_type not in SCALARS:
        raise cur.refuse(where, f"unknown array element type {item_type}")
    count = cur.unpack("<Q", where)
    item_bytes = 8 if item_type == STRING else struct.calcsize(SCALARS[item_type])
    if count * item_bytes > cur.left:
        raise cur.refuse(where, f"array of {_n(count)} elements is past the end of the file")
    if count > MAX_ARRAY_ITEMS:
        raise cur.refuse(
            where, f"array of {_n(count)} elements is over the {MAX_ARRAY_ITEMS:,} limit"
        )
    if item_type != STRING:
        cur.skip(count * item_bytes, where)
        return count
    for i in range(count):
        cur.string(f"{where}, element {i:,}", MAX_STRING_BYTES, keep=False)
    return count


def _read_kvs(cur: _Cursor, count: int) -> tuple[dict[str, Any], dict[str, int]]:
    metadata: dict[str, Any] = {}
    arrays: dict[str, int] = {}
    for i in range(count):
        where = f"KV {i}"
        key = cur.string(where, MAX_KEY_BYTES)
        where = f"KV {i} (`{_shown(key)}`)"
        if key in metadata or key in arrays:
            raise cur.refuse(where, "the key appears twice")
        value_type = cur.unpack("<I", where)
        if value_type == STRING:
            metadata[key] = cur.string(where, MAX_STRING_BYTES)
        elif value_type == ARRAY:
            arrays[key] = _read_array(cur, where)
        elif value_type in SCALARS:
            metadata[key] = cur.unpack(SCALARS[value_type], where)
        else:
            raise cur.refuse(where, f"unknown value type {value_type}")
    return metadata, arrays


def _read_tensor_info(cur: _Cursor, i: int, sizes: dict[int, tuple[str, int, int]]) -> GGUFTensor:
    where = f"tensor {i}"
    name = cur.string(where, MAX_KEY_BYTES)
    where = f"tensor {i} (`{_shown(name)}`)"
    n_dims = cur.unpack("<I", where)
    if n_dims > MAX_DIMS:
        raise cur.refuse(where, f"{n_dims:,} dimensions; GGML allows at most {MAX_DIMS}")
    if n_dims == 0:
        raise cur.refuse(where, "no dimensions")
    shape = tuple(cur.unpack("<Q", where) for _ in range(n_dims))
    elements = 1
    for axis, dim in enumerate(shape):
        if dim == 0:
            raise cur.refuse(where, f"dimension {axis} is 0")
        elements *= dim
        if elements > MAX_ELEMENTS:
            raise cur.refuse(
                where, f"shape {list(shape)} is over the limit of {_n(MAX_ELEMENTS)} elements"
            )
    ggml_type = cur.unpack("<I", where)
    if ggml_type not in sizes:
        raise cur.refuse(where, f"unknown GGML tensor type {ggml_type}")
    type_name, block, block_bytes = sizes[ggml_type]
    if shape[0] % block:
        raise cur.refuse(
            where,
            f"first dimension {shape[0]:,} is not a multiple of the {type_name} block {block}",
        )
    offset = cur.unpack("<Q", where)
    return GGUFTensor(name, shape, ggml_type, offset, elements // block * block_bytes)


def _alignment(cur: _Cursor, metadata: dict[str, Any]) -> int:
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value & (value - 1):
        raise cur.refuse("general.alignment", f"{value!s:.40} is not a power of two")
    return value


def _check_counts(cur: _Cursor, tensors: int, kvs: int) -> None:
    for count, cap, least, what in (
        (tensors, MAX_TENSORS, MIN_TENSOR_INFO_BYTES, "tensors"),
        (kvs, MAX_KVS, MIN_KV_BYTES, "KVs"),
    ):
        if count > cap:
            raise cur.refuse("header", f"declares {_n(count)} {what}; at most {cap:,} are accepted")
        if count * least > cur.left:
            raise cur.refuse(
                "header",
                f"declares {_n(count)} {what}, more than a file of {cur.size:,} bytes can "
                f"describe (each needs at least {least} bytes)",
            )


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Validate a GGUF file's header and tensor table (no tensor data is read) and return them.

    Raises ModelRefused, naming the file and the entry, for anything a loader would trip on:
    a bad magic or version, counts past their caps or past the file's size, unknown types,
    strings or arrays past the end, more than four dimensions, tensor data outside the file,
    or no `general.architecture`.
    """
    file = Path(path)
    sizes = _ggml_sizes()
    with file.open("rb") as fh:
        cur = _Cursor(fh, file.stat().st_size, file.name)
        if cur.left < 4 or cur.take(4, "header") != GGUF_MAGIC:
            raise cur.refuse("", "not a GGUF file (bad magic bytes)")
        version = cur.unpack("<I", "header")
        if version not in VERSIONS:
            raise cur.refuse("", f"GGUF version {version:,} is not supported (only 2 and 3)")
        tensor_count = cur.unpack("<Q", "header")
        kv_count = cur.unpack("<Q", "header")
        _check_counts(cur, tensor_count, kv_count)
        metadata, arrays = _read_kvs(cur, kv_count)
        infos = [_read_tensor_info(cur, i, sizes) for i in range(tensor_count)]
    alignment = _alignment(cur, metadata)
    data_start = -(-cur.pos // alignment) * alignment
    seen: set[str] = set()
    for i, tensor in enumerate(infos):
        where = f"tensor {i} (`{_shown(tensor.name)}`)"
        if tensor.name in seen:
            raise cur.refuse(where, "the name appears twice")
        seen.add(tensor.name)
        if tensor.offset % alignment:
            raise cur.refuse(
                where, f"offset {_n(tensor.offset)} is not a multiple of the alignment {alignment}"
            )
        end = data_start + tensor.offset + tensor.nbytes
        if end > cur.size:
            raise cur.refuse(where, f"data ends at byte {_n(end)} past the file's end {cur.size:,}")
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise cur.refuse("", "no general.architecture key: not a model transformers can import")
    return GGUFHeader(version, metadata, tuple(infos), data_start, cur.size, arrays)
