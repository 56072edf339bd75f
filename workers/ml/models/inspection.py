"""Describe a local Hugging Face–layout causal LM folder without reading its weights: what
`inspect_folder` reports (parameters, context, dtype, license, chat template, LoRA targets), after
refusals.py has refused what must never be loaded."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.ml.models.errors import ModelRefused
from workers.ml.models.lora_targets import detect_lora_targets
from workers.ml.models.refusals import (
    read_json_object,
    refuse_custom_code,
    refuse_pickles,
    walk_model_files,
)

__all__ = [
    "ModelInfo",
    "check_safetensors_header",
    "inspect_folder",
    "read_license",
    "read_safetensors_header",
]

TOKENIZER_FILES = (
    ("tokenizer.json",),
    ("tokenizer.model",),
    ("vocab.json", "merges.txt"),
    ("vocab.txt",),
    ("tiktoken.model",),
)
CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
    "max_seq_len",
    "model_max_length",
)
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}

# Bits per element of every safetensors dtype (F4 and F6 pack several elements to a byte).
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
}
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


@dataclass(frozen=True)
class ModelInfo:
    path: str
    architecture: str
    model_type: str
    parameters: int
    context_length: int | None
    dtype: str
    vocab_size: int | None
    hidden_size: int | None
    num_layers: int | None
    has_chat_template: bool
    license: str
    lora_target_modules: tuple[str, ...]
    weight_files: tuple[str, ...] = field(default=())
    weight_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora_target_modules"] = list(self.lora_target_modules)
        data["weight_files"] = list(self.weight_files)
        return data


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map") or {}
        names = sorted(set(weight_map.values()))
        if not names:
            raise ModelRefused(f"{index.name}: empty weight_map")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ModelRefused(f"{index.name}: shard {missing[0]} is missing")
        return [folder / n for n in names]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file())


def _header_refusal(path: Path, what: str) -> ModelRefused:
    return ModelRefused(f"{path.name}: not a valid safetensors file: {what}")


def _n(value: int) -> str:
    if value >= 1 << 32 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return f"{value:,}"


def _check_tensor_entry(path: Path, name: str, entry: Any, data_bytes: int) -> None:
    where = f"tensor `{name[:80]}`"
    if not isinstance(entry, dict):
        raise _header_refusal(path, f"{where}: not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BITS:
        raise _header_refusal(path, f"{where}: unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _header_refusal(path, f"{where}: the shape is not a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _header_refusal(path, f"{where}: data_offsets is not [begin, end]")
    if offsets[1] > data_bytes:
        raise _header_refusal(
            path,
            f"{where}: data ends at byte {_n(offsets[1])} past the end of the data "
            f"({data_bytes:,} bytes)",
        )
    needed = (math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype] + 7) // 8
    if offsets[1] - offsets[0] != needed:
        raise _header_refusal(
            path,
            f"{where}: shape {shape[:8]} of {dtype} needs {needed:,} bytes, "
            f"its data_offsets span {offsets[1] - offsets[0]:,}",
        )


def check_safetensors_header(path: Path) -> None:
    """Refuse a safetensors file whose header is too long, not JSON, of unknown dtypes or with
    data outside the file, saying which tensor; reads the header only (bounded), never weights.

    The safetensors library checks the same before it maps the file, but its messages
    (`HeaderTooLarge`, `InvalidOffset`) do not say what is wrong where.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size < 8:
            raise _header_refusal(path, f"the file has {size} bytes, fewer than the 8 of a header")
        length = int.from_bytes(fh.read(8), "little")
        if length > size - 8:
            raise _header_refusal(
                path, f"header length {_n(length)} is past the end of the file ({size:,} bytes)"
            )
        if length > SAFETENSORS_MAX_HEADER:
            raise _header_refusal(path, f"header length {_n(length)} is over the 100 MiB limit")
        raw = fh.read(length)
    try:
        header = json.loads(raw, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise _header_refusal(path, "the header is not UTF-8 text") from None
    except RecursionError:
        raise _header_refusal(path, "the header's JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _header_refusal(
            path, f"the header is not JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except _DuplicateKey as exc:
        raise _header_refusal(path, f"the key `{str(exc)[:80]}` appears twice") from None
    except ValueError:  # an integer of thousands of digits (Python's int() limit)
        raise _header_refusal(path, "the header holds a number too long to read") from None
    if not isinstance(header, dict):
        raise _header_refusal(path, "the header is not a JSON object")
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _header_refusal(path, "__metadata__ is not a map of strings")
            continue
        _check_tensor_entry(path, name, entry, size - 8 - length)
        spans.append((entry["data_offsets"][0], entry["data_offsets"][1], name))
    _check_layout(path, spans, size - 8 - length)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: two entries for one tensor would load either."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _check_layout(path: Path, spans: list[tuple[int, int, str]], data_bytes: int) -> None:
    """The tensors' data must tile the data area, as the safetensors library requires: no two
    share bytes (one tensor read as another's weights), no gap, none past the last. Said here
    with the tensors' names; the library says only `InvalidOffset`."""
    end, last = 0, ""
    for begin, stop, name in sorted(spans):
        if begin < end:
            raise _header_refusal(
                path,
                f"tensor `{name[:80]}`: data at bytes {begin:,}-{stop:,} overlaps tensor "
                f"`{last[:80]}` (which ends at byte {end:,})",
            )
        if begin > end:
            raise _header_refusal(
                path,
                f"tensor `{name[:80]}`: data starts at byte {begin:,}, leaving bytes "
                f"{end:,}-{begin:,} that no tensor uses",
            )
        end, last = stop, name
    if end != data_bytes:
        raise _header_refusal(
            path,
            f"the tensors' data ends at byte {end:,} but the file holds {data_bytes:,} bytes "
            "of data",
        )


def read_safetensors_header(files: list[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, safetensors dtype)} from the headers only: no weight is read."""
    from safetensors import safe_open

    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    for path in files:
        check_safetensors_header(path)
        try:
            with safe_open(str(path), framework="numpy") as fh:
                for key in fh.keys():
                    piece = fh.get_slice(key)
                    tensors[key] = (tuple(int(d) for d in piece.get_shape()), piece.get_dtype())
        except Exception as exc:  # safetensors raises its own error types
            raise ModelRefused(f"{path.name}: not a valid safetensors file ({exc})") from exc
    return tensors


def _context_length(config: dict) -> int | None:
    for source in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def _config_value(config: dict, *keys: str) -> Any:
    for source in (config, config.get("text_config") or {}):
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)
_LICENSE_NAMES = (
    ("apache license", "apache-2.0"),
    ("mit license", "mit"),
    ("gnu general public license", "gpl"),
    ("gnu lesser general public license", "lgpl"),
    ("creative commons", "cc"),
    ("llama 2 community license", "llama2"),
    ("llama 3", "llama3"),
)


def read_license(folder: Path) -> str:
    """`license:` from README front matter, else a name recognised in a LICENSE file, else ""."""
    readme = folder / "README.md"
    if readme.is_file():
        match = _FRONT_MATTER.match(readme.read_text(encoding="utf-8", errors="replace"))
        if match:
            for line in match.group(1).splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "license" and value.strip():
                    return value.strip().strip("'\"")
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE"):
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            lowered = text[:2000].lower()
            for needle, short in _LICENSE_NAMES:
                if needle in lowered:
                    return short
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            return first[:100]
    return ""


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        return bool(read_json_object(tok_config).get("chat_template"))
    return False


def inspect_folder(path: str | os.PathLike) -> ModelInfo:
    """Validate a local Hugging Face–layout causal LM folder and describe it, reading no weights.

    Raises ModelRefused (naming the file) for pickle-capable weights, custom code, a missing
    config/tokenizer/safetensors weights, or a model type transformers does not know.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelRefused(f"{folder}: not a folder")
    folder = folder.resolve()
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelRefused(f"config.json: missing in {folder}; not a Hugging Face model folder")

    refuse_pickles(folder, walk_model_files(folder))
    config = read_json_object(config_path)
    model_type = refuse_custom_code(folder, config)

    weights = _weight_files(folder)
    if not weights:
        ggufs = sorted(p.name for p in folder.glob("*.gguf"))
        if ggufs:
            raise ModelRefused(
                f"{ggufs[0]}: a GGUF file must be imported (converted to safetensors) first"
            )
        raise ModelRefused(f"{folder.name}: no *.safetensors weights found")
    if not any(all((folder / name).is_file() for name in group) for group in TOKENIZER_FILES):
        raise ModelRefused(
            f"{folder.name}: no tokenizer (tokenizer.json, tokenizer.model or vocab files)"
        )

    tensors = read_safetensors_header(weights)
    parameters = sum(math.prod(shape) for shape, _ in tensors.values())
    dtype = _config_value(config, "dtype", "torch_dtype")
    if not isinstance(dtype, str) or not dtype:
        counts: dict[str, int] = {}
        for shape, st_dtype in tensors.values():
            counts[st_dtype] = counts.get(st_dtype, 0) + math.prod(shape)
        top = max(counts, key=counts.__getitem__) if counts else ""
        dtype = SAFETENSORS_DTYPES.get(top, top.lower())
    architectures = config.get("architectures") or []
    return ModelInfo(
        path=str(folder),
        architecture=str(architectures[0]) if architectures else "",
        model_type=model_type,
        parameters=int(parameters),
        context_length=_context_length(config),
        dtype=str(dtype),
        vocab_size=_config_value(config, "vocab_size"),
        hidden_size=_config_value(config, "hidden_size", "n_embd", "d_model"),
        num_layers=_config_value(config, "num_hidden_layers", "n_layer", "num_layers"),
        has_chat_template=_has_chat_template(folder),
        license=read_license(folder),
        lora_target_modules=tuple(detect_lora_targets(model_type, list(tensors))),
        weight_files=tuple(str(p.relative_to(folder)) for p in weights),
        weight_bytes=sum(p.stat().st_size for p in weights),
    )
