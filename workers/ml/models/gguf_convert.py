"""GGUF files: import one as a safetensors folder (`convert_gguf`, in a memory-capped child
process), and write the tiny Llama as GGUF (`export_llama_gguf`) for tests and import demos."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

from workers.common.fs import publish_folder, temp_sibling
from workers.ml.models.errors import ModelRefused
from workers.ml.models.gguf_child import MEMORY_EXIT, REFUSED_EXIT
from workers.ml.models.gguf_header import GGUF_MAGIC, read_gguf_header
from workers.ml.models.inspection import inspect_folder
from workers.ml.models.markers import read_marker, write_marker
from workers.ml.models.refusals import read_json_object

__all__ = [
    "GGUF_MAGIC",
    "convert_gguf",
    "convert_into",
    "default_memory_limit",
    "export_llama_gguf",
]

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]  # the checkout: the child imports `workers` from it

# Below this the interpreter, torch and transformers alone do not fit (about 1.3 GB of address
# space on a small CPU box); hostile files are held to a multiple of their own size.
MIN_MEMORY_LIMIT = 4 << 30
MEMORY_LIMIT_PER_FILE_BYTE = 4
CHILD_MODULE = "workers.ml.models.gguf_child"


def default_memory_limit(file_bytes: int) -> int:
    """The conversion child's address-space cap when none is configured: max(4 GiB, 4 × file)."""
    return max(MIN_MEMORY_LIMIT, MEMORY_LIMIT_PER_FILE_BYTE * file_bytes)


def _gib(limit: int) -> str:
    return f"{limit / (1 << 30):.1f}".removesuffix(".0")


def convert_gguf(
    gguf_file: str | os.PathLike, out_dir: str | os.PathLike, *, memory_limit: int | None = None
) -> Path:
    """Convert a GGUF file into a float safetensors folder (model, tokenizer, chat template).

    The header is validated first (bounded reader: workers.ml.models.gguf_header); the
    conversion itself runs in a child process whose address space is capped at `memory_limit`
    bytes (default: `default_memory_limit`), so a file that asks for too much memory fails this
    call with a clear ModelRefused instead of taking the worker down. Dequantizes through
    transformers (needs the `gguf` package), validates the result with inspect_folder, and
    publishes it atomically. If `out_dir` already holds a conversion of this file (same name and
    size) it is returned as is; any other non-empty `out_dir` raises FileExistsError.
    """
    source = Path(gguf_file).expanduser().resolve()
    target = Path(out_dir).expanduser().resolve()
    if not source.is_file():
        raise ModelRefused(f"{source}: no such GGUF file")
    header = read_gguf_header(source)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        marker = read_marker(target) or {}
        if (marker.get("kind"), marker.get("source"), marker.get("source_bytes")) == (
            "gguf",
            source.name,
            source.stat().st_size,
        ):
            return target  # converted from this file before
        raise FileExistsError(f"{target} already exists")

    limit = memory_limit or default_memory_limit(header.file_bytes)
    tmp = temp_sibling(target)
    try:
        _run_child(source, tmp, limit)
        inspect_folder(tmp)
        publish_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _run_child(source: Path, tmp: Path, limit: int) -> None:
    """Run `convert_into` in a fresh interpreter (no fork: the worker has threads) under `limit`."""
    env = dict(os.environ)
    # glibc reserves an arena of address space per thread: few arenas keep the cap about memory
    env.setdefault("MALLOC_ARENA_MAX", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, str(source), str(tmp), str(limit)],
        env=env,
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if done.returncode == 0:
        return
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    if done.returncode == REFUSED_EXIT and lines:
        reason = lines[-1]
        raise ModelRefused(
            reason if reason.startswith(f"{source.name}:") else f"{source.name}: {reason}"
        )
    if done.returncode == MEMORY_EXIT or done.returncode < 0:
        # killed by a signal: a C allocation that failed under the cap, or the OOM killer
        raise ModelRefused(
            f"{source.name}: conversion needed more than {_gib(limit)} GiB of memory (the limit "
            "for converting this file)"
        )
    log.warning("GGUF conversion child exited %s: %s", done.returncode, done.stderr[-2000:])
    raise ModelRefused(
        f"{source.name}: conversion failed (the converter exited with status {done.returncode})"
    )


def convert_into(source: Path, tmp: Path) -> None:
    """The conversion proper, into the empty folder `tmp` (runs in the capped child)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = read_gguf_header(source).metadata
    load = {"gguf_file": source.name, "local_files_only": True, "trust_remote_code": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), **load)
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), **load)
    # STACK-NOTES: a GGUF-loaded model refuses save_pretrained until the quantizer is gone.
    # nn.Module.__getattr__ types an undeclared attribute as Tensor | Module.
    model.hf_quantizer = None  # type: ignore[assignment]
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
    # no "complete" key: ensure_smollm2 marks its folder complete once it adds the version
    write_marker(tmp, kind="gguf", source=source.name, source_bytes=source.stat().st_size)


def _permute_for_gguf(weights, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's q/k row order (the inverse of transformers' reverse permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _bpe_vocab(tok_json: dict) -> tuple[list[str], list[Any], list[str]]:
    """(tokens by id, GGUF token types, merges) of a byte-level BPE tokenizer.json."""
    import gguf

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
    return tokens, types, merges


def _add_llama_tensors(writer, files: list[Path], n_layers: int, n_head: int, n_kv: int) -> None:
    """Every tensor of the safetensors `files`, as float32 under its llama.cpp name."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    tensors = {}
    for path in files:
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


def export_llama_gguf(folder: str | os.PathLike, gguf_file: str | os.PathLike) -> Path:
    """Write a float32 GGUF of a Llama safetensors folder with a byte-level BPE tokenizer.

    Enough of llama.cpp's conversion for the tiny Llama (tests, GGUF import demos); not a
    general converter.
    """
    import gguf

    src = Path(folder).expanduser().resolve()
    out = Path(gguf_file).expanduser().resolve()
    info = inspect_folder(src)
    if info.model_type != "llama":
        raise ValueError(f"export_llama_gguf handles llama only, not {info.model_type}")
    config = read_json_object(src / "config.json")
    tok_json = read_json_object(src / "tokenizer.json")
    if tok_json.get("model", {}).get("type") != "BPE":
        raise ValueError("export_llama_gguf needs a byte-level BPE tokenizer.json")
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    n_layers = config["num_hidden_layers"]
    hidden = config["hidden_size"]
    rope = config.get("rope_parameters") or {}
    rope_theta = float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)

    tokens, types, merges = _bpe_vocab(tok_json)
    size = len(tokens)
    tok_config = read_json_object(src / "tokenizer_config.json")
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
        _add_llama_tensors(writer, [src / f for f in info.weight_files], n_layers, n_head, n_kv)
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
