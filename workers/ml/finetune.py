"""LoRA supervised fine-tuning of causal language models: transformers `Trainer` + peft.

`train_lora()` takes a config, a base model folder, canonical rows and a template, and leaves in
`output_dir`:

    checkpoints/checkpoint-N/   Trainer's own checkpoints (adapter, optimizer, scheduler, RNG,
                                trainer state), each counted only once its COMPLETE marker
                                (file hashes, written last) is there
    adapter/                    the final adapter in PEFT format + README.md model card
    adapter.zip                 the same folder, zipped, for download
    result.json                 what train_lora() returned (a finished run is not trained again)

It reports live loss, learning rate, grad norm and tokens/s through a Reporter, eval loss and
perplexity before and after training, resumes from the newest complete checkpoint after a crash
(same data order, RNG, optimizer and scheduler: on CPU an interrupted run ends with the same adapter
as an uninterrupted one), stops at the next optimizer step when the Reporter asks (saving a
checkpoint first), and trains on N devices in N processes (DDP) when `num_gpus > 1`.

Loss masking: when the template ends with a placeholder (`### 回答:{answer}`), the loss is on that
last field (and the EOS token) only; the prompt part is masked. Otherwise, or with
`loss_on="all"`, the loss is on the whole text. An EOS token is appended to every example so the
model learns to stop.

Nothing here imports Django; torch and transformers are imported only when a function needs them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from workers.data.canonical import render_template, template_fields
from workers.ml.checkpoints import MARKER_NAME, Checkpoint, _hash_and_sync_files, _is_complete
from workers.ml.reporting import JobFailed, NullReporter, Reporter, trainer_callback

__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINTS_DIR",
    "FinetuneResult",
    "LoraFinetuneConfig",
    "complete_checkpoints",
    "default_target_modules",
    "estimate_memory",
    "mean_logged_loss",
    "merge_and_export",
    "resolve_precision",
    "train_lora",
]

CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
ADAPTER_ZIP = "adapter.zip"
RESULT_NAME = "result.json"
RUN_NAME = "run.json"
EVAL_BEFORE_NAME = "eval_before.json"
CARD_NAME = "README.md"
IGNORE_INDEX = -100

_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LOAD_IN = ("none", "8bit", "4bit")
BIASES = ("none", "all", "lora_only")
LOSS_ON = ("auto", "answer", "all")
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


# ---------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class LoraFinetuneConfig:
    """Every knob of a LoRA SFT run; defaults are the team's recipe (see issue 4)."""

    # LoRA
    r: int = _f(8, "LoRA rank: the inner size of the low-rank update matrices.")
    lora_alpha: int = _f(32, "LoRA scaling: updates are multiplied by lora_alpha / r.")
    target_modules: tuple[str, ...] | None = _f(
        None,
        "Module names to adapt. Empty: detected from the architecture "
        "(q_proj and v_proj for Llama-style models).",
    )
    lora_dropout: float = _f(0.1, "Dropout on the LoRA input during training (0 to 1).")
    bias: str = _f("none", "Which biases to train: none, all or lora_only.", choices=BIASES)
    # Trainer
    per_device_train_batch_size: int = _f(4, "Examples per device per forward pass.")
    gradient_accumulation_steps: int = _f(
        4, "Forward passes per optimizer step (effective batch = batch size x this x devices)."
    )
    warmup_steps: int = _f(100, "Optimizer steps of linear learning-rate warm-up.")
    num_train_epochs: float = _f(3.0, "Passes over the training rows (ignored when max_steps > 0).")
    max_steps: int = _f(-1, "Stop after this many optimizer steps; -1: run num_train_epochs.")
    logging_steps: int = _f(
        100, "Report loss, learning rate, grad norm and tokens/s every N steps."
    )
    learning_rate: float = _f(2e-4, "Peak learning rate (AdamW).")
    lr_scheduler_type: str = _f(
        "linear", "Learning-rate schedule after warm-up.", choices=SCHEDULERS
    )
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 turns clipping off.")
    max_seq_length: int = _f(512, "Examples are cut to this many tokens.")
    loss_on: str = _f(
        "auto",
        "auto: loss on the answer only when the template ends with a placeholder, else on all "
        "of the text; answer: require that; all: loss on the whole text.",
        choices=LOSS_ON,
    )
    eval_fraction: float = _f(
        0.1,
        "Share of the rows held out for eval loss and perplexity when the dataset has no "
        "validation split; 0 turns evaluation off.",
    )
    save_steps: int = _f(200, "Write a resumable checkpoint every N optimizer steps.")
    keep_checkpoints: int = _f(2, "How many complete checkpoints to keep (the newest ones).")
    seed: int = _f(42, "Seed for LoRA initialisation, data order and dropout.")
    precision: str = _f(
        "auto",
        "auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.",
        choices=PRECISIONS,
    )
    load_in: str = _f(
        "none",
        "Load the base model in 8-bit or 4-bit (QLoRA, bitsandbytes); needs a CUDA GPU.",
        choices=LOAD_IN,
    )
    num_gpus: int = _f(
        1, "Devices to train on; more than 1 runs data-parallel processes (DDP) on one machine."
    )

    def __post_init__(self) -> None:
        if self.target_modules is not None:
            modules = self.target_modules
            if isinstance(modules, str):
                modules = [m for m in re.split(r"[\s,]+", modules) if m]
            modules = tuple(str(m).strip() for m in modules)
            if any(not m for m in modules):
                raise ValueError("target_modules: module names must not be empty")
            object.__setattr__(self, "target_modules", modules or None)
        _check_int(self, "r", 1, 1024)
        _check_int(self, "lora_alpha", 1, 100_000)
        _check_float(self, "lora_dropout", 0.0, 0.999)
        _check_choice(self, "bias", BIASES)
        _check_int(self, "per_device_train_batch_size", 1, 4096)
        _check_int(self, "gradient_accumulation_steps", 1, 4096)
        _check_int(self, "warmup_steps", 0, 10_000_000)
        _check_float(self, "num_train_epochs", 0.0, 10_000.0)
        _check_int(self, "max_steps", -1, 100_000_000)
        if self.max_steps == 0:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or at least 1")
        if self.max_steps < 0 and self.num_train_epochs <= 0:
            raise ValueError("num_train_epochs must be above 0 when max_steps is -1")
        _check_int(self, "logging_steps", 1, 100_000_000)
        _check_float(self, "learning_rate", 0.0, 1.0)
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be above 0")
        _check_choice(self, "lr_scheduler_type", SCHEDULERS)
        _check_float(self, "weight_decay", 0.0, 1.0)
        _check_float(self, "max_grad_norm", 0.0, 1e6)
        _check_int(self, "max_seq_length", 8, 1_048_576)
        _check_choice(self, "loss_on", LOSS_ON)
        _check_float(self, "eval_fraction", 0.0, 0.5)
        _check_int(self, "save_steps", 1, 100_000_000)
        _check_int(self, "keep_checkpoints", 1, 1000)
        _check_int(self, "seed", 0, 2**32 - 1)
        _check_choice(self, "precision", PRECISIONS)
        _check_choice(self, "load_in", LOAD_IN)
        _check_int(self, "num_gpus", 1, 64)
        if self.num_gpus > 1 and self.load_in != "none":
            raise ValueError("8-/4-bit loading trains on one GPU; set num_gpus to 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraFinetuneConfig:
        """Build from a params dict; unknown keys are an error (a typo would be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fine-tune parameter(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["target_modules"] is not None:
            data["target_modules"] = list(data["target_modules"])
        return data

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """[{name, default, help, choices?}] for forms and API docs."""
        out = []
        for f in fields(cls):
            item = {
                "name": f.name,
                "default": None if f.default is MISSING else f.default,
                "help": f.metadata.get("help", ""),
            }
            if "choices" in f.metadata:
                item["choices"] = list(f.metadata["choices"])
            out.append(item)
        return out


def _check_int(cfg: Any, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            object.__setattr__(cfg, name, int(value))
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")


def _check_float(cfg: Any, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    object.__setattr__(cfg, name, value)


def _check_choice(cfg: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


# ---------------------------------------------------------------------------------------- result


@dataclass
class FinetuneResult:
    """What a run produced. status: succeeded (adapter written) or cancelled (checkpoint kept)."""

    status: str
    global_step: int
    max_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    adapter_dir: str | None = None
    adapter_zip: str | None = None
    model_card: str | None = None
    checkpoint: str | None = None
    resumed_from_step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneResult:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# ------------------------------------------------------------------------------ runtime checks


def resolve_precision(
    requested: str = "auto",
    *,
    cuda_available: bool | None = None,
    bf16_supported: bool | None = None,
) -> str:
    """fp32 | bf16 | fp16 for a requested precision on this machine (auto: see the config help)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if cuda_available is None or (cuda_available and bf16_supported is None):
        import torch

        if cuda_available is None:
            cuda_available = torch.cuda.is_available()
        if cuda_available and bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
    if requested == "auto":
        if not cuda_available:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested == "fp16" and not cuda_available:
        raise JobFailed("fp16 training needs a CUDA GPU; use precision auto, fp32 or bf16 on CPU")
    if requested == "bf16" and cuda_available and not bf16_supported:
        raise JobFailed("this GPU does not support bf16; use precision auto or fp16")
    return requested


def check_quantization(load_in: str, *, cuda_available: bool | None = None) -> None:
    """Raise JobFailed when 8-/4-bit loading cannot work here (no CUDA, or no bitsandbytes)."""
    if load_in == "none":
        return
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        raise JobFailed(
            f"{load_in} loading (QLoRA through bitsandbytes) needs a CUDA GPU, and this worker "
            "has none. Set load_in to none to train in full precision, or run the job on a GPU "
            "worker."
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise JobFailed(
            f"{load_in} loading needs the bitsandbytes package on the GPU worker "
            "(pip install bitsandbytes); set load_in to none to train without it."
        )


def _check_devices(num_gpus: int) -> str:
    """The device kind N processes will use: cuda (enough GPUs) or cpu (no GPU: gloo processes)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    have = torch.cuda.device_count()
    if num_gpus > have:
        raise JobFailed(f"the job asks for {num_gpus} GPUs but this worker has {have}")
    return "cuda"


def default_target_modules(base_model_dir: str | os.PathLike[str], model: Any = None) -> tuple:
    """LoRA targets detected from the architecture (as the model registry shows them); failing
    that, every Linear layer of `model` but the output head."""
    found = tuple(_inspect(base_model_dir).lora_target_modules)
    if found or model is None:
        if not found:
            raise JobFailed("no default LoRA target modules for this architecture; set them")
        return found
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name
    }
    if not names:
        raise JobFailed("the model has no Linear layers to adapt; set target_modules")
    return tuple(sorted(names))


def estimate_memory(base_model_dir: str | os.PathLike[str], config: LoraFinetuneConfig) -> dict:
    """A rough peak-memory estimate in GiB from config.json and the safetensors headers.

    weights (by load_in / precision) + LoRA params, grads and AdamW states (fp32) + activations
    (batch x seq x hidden x layers x ~34 bytes, the usual transformer rule of thumb, x2 for the
    attention scores at long sequences is left out) + logits (batch x seq x vocab x 4 bytes x 2).
    """
    cfg = json.loads((Path(base_model_dir) / "config.json").read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    hidden = int(cfg.get("hidden_size") or cfg.get("n_embd") or 0)
    layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    inter = int(cfg.get("intermediate_size") or 4 * hidden)
    vocab = int(cfg.get("vocab_size") or 0)
    heads = int(cfg.get("num_attention_heads") or 1)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or (hidden // heads if heads else 0))
    attn = hidden * head_dim * heads * 2 + hidden * head_dim * kv_heads * 2
    mlp = 3 * hidden * inter
    embed = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    try:  # exact, from the safetensors headers
        params = int(_inspect(base_model_dir).parameters) or layers * (attn + mlp) + embed
    except JobFailed:
        params = layers * (attn + mlp) + embed
    bytes_per = {"4bit": 0.55, "8bit": 1.05}.get(config.load_in)
    if bytes_per is None:
        bytes_per = 4 if config.precision == "fp32" else 2
        if config.precision == "auto":
            bytes_per = 2  # on a GPU; a CPU run loads fp32 (twice this)
    # r x (in + out) per adapted Linear; the default targets of most decoders are q_proj, v_proj
    lora = layers * config.r * ((hidden + head_dim * heads) + (hidden + head_dim * kv_heads))
    batch, seq = config.per_device_train_batch_size, config.max_seq_length
    gib = 2**30
    out = {
        "parameters": params,
        "lora_parameters": lora,
        "weights_gib": params * bytes_per / gib,
        "lora_training_gib": lora * 16 / gib,
        "activations_gib": batch * seq * hidden * layers * 34 / gib,
        "logits_gib": batch * seq * vocab * 8 / gib,
    }
    out["total_gib"] = sum(v for k, v in out.items() if k.endswith("_gib"))
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


# ------------------------------------------------------------------------------- checkpoints


def complete_checkpoints(root: str | os.PathLike[str]) -> list[Checkpoint]:
    """Trainer checkpoint folders `root/checkpoint-N` with a verified marker, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _CHECKPOINT_DIR.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            cp = Checkpoint(step=int(match.group(1)), path=entry)
            if _is_complete(cp):
                found.append(cp)
    return sorted(found, key=lambda cp: cp.step, reverse=True)


def _mark_complete(folder: Path, step: int) -> None:
    """Write the COMPLETE marker (hashes of every file, fsynced) last into a finished checkpoint."""
    marker = folder / MARKER_NAME
    if marker.exists():
        marker.unlink()
    files = _hash_and_sync_files(folder)
    tmp = folder / f".{MARKER_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": files}, f, sort_keys=True, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_checkpoints(root: Path, keep: int) -> None:
    """Keep the `keep` newest complete checkpoints; delete older ones and every incomplete one."""
    complete = complete_checkpoints(root)
    kept = {cp.path.name for cp in complete[:keep]}
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry.name not in kept:
            if _CHECKPOINT_DIR.match(entry.name) or entry.name.startswith("tmp-checkpoint-"):
                shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------------------------- data


def answer_field(template: str, loss_on: str = "auto") -> str | None:
    """The field whose text carries the loss (prompt masked), or None for loss on all text."""
    if loss_on == "all":
        return None
    names = template_fields(template)
    last = names[-1] if names else None
    ok = False
    if last is not None:
        probe = {name: f"\ue000{i}\ue000" for i, name in enumerate(names)}
        marked = render_template(template, probe)
        mark = probe[last]
        if marked.count(mark) == 1:
            head, tail = marked.split(mark)
            ok = bool(head.strip()) and not tail.strip()
    if ok:
        return last
    if loss_on == "answer":
        raise JobFailed(
            "loss_on=answer needs a template that ends with the answer placeholder, such as "
            "'### 问题:{question}\\n### 回答:{answer}'"
        )
    return None


@dataclass
class _Encoded:
    examples: list[dict[str, list[int]]]
    skipped: int
    truncated: int


def encode_rows(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    template: str,
    *,
    max_seq_length: int,
    loss_on: str = "auto",
) -> _Encoded:
    """Render, tokenize and label rows: input_ids, attention_mask, labels (-100 where masked)."""
    target = answer_field(template, loss_on)
    fast = bool(getattr(tokenizer, "is_fast", False))
    eos = tokenizer.eos_token_id
    examples, skipped, truncated = [], 0, 0
    for row in rows:
        text = render_template(template, dict(row))
        boundary = 0
        if target is not None and isinstance(row.get(target), str):
            head = render_template(template, {**row, target: ""})
            if text.startswith(head) and head.strip():
                boundary = len(head)
        if fast:
            enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            labels = [
                tok if end > boundary else IGNORE_INDEX
                for tok, (_, end) in zip(ids, enc["offset_mapping"], strict=True)
            ]
        else:
            ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
            n_head = len(tokenizer(text[:boundary], add_special_tokens=True)["input_ids"])
            labels = [IGNORE_INDEX] * min(n_head, len(ids)) + ids[n_head:]
        if boundary == 0:
            labels = list(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
            labels.append(eos)
        if len(ids) > max_seq_length:
            truncated += 1
            ids, labels = ids[:max_seq_length], labels[:max_seq_length]
        if all(label == IGNORE_INDEX for label in labels):
            skipped += 1
            continue
        examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return _Encoded(examples, skipped, truncated)


def split_eval(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out round(fraction x n) rows (at least 1 when fraction > 0 and n >= 2), seeded."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []
    n_eval = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return (
        [r for i, r in enumerate(rows) if i not in held],
        [r for i, r in enumerate(rows) if i in held],
    )


class _ListDataset:
    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


class PadCollator:
    """Right-pads a batch; counts the real (non-pad) tokens it hands out, for tokens/s."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids, mask, labels = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_token_id] * pad)
            mask.append(f["attention_mask"] + [0] * pad)
            labels.append(f["labels"] + [IGNORE_INDEX] * pad)
            self.tokens += len(f["input_ids"])
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ------------------------------------------------------------------------------- model loading


def _inspect(base_model_dir: str | os.PathLike[str]) -> Any:
    from workers.ml.models import ModelRefused, inspect_folder

    try:
        return inspect_folder(base_model_dir)
    except ModelRefused as exc:
        raise JobFailed(str(exc)) from exc


def _load(base_model_dir: str, *, precision: str, load_in: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) through models.load_causal_lm: safetensors only, no remote code."""
    from workers.ml.models import DeviceUnavailable, ModelRefused, load_causal_lm

    try:
        return load_causal_lm(
            base_model_dir,
            device=device,
            dtype=precision,
            quantization=None if load_in == "none" else load_in,
        )
    except (ModelRefused, DeviceUnavailable) as exc:
        raise JobFailed(str(exc)) from exc


# ------------------------------------------------------------------------------- callbacks


def _callbacks() -> dict[str, type]:
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        """Writes COMPLETE into each checkpoint after Trainer saved it (all ranks done), prunes.

        The reporter is flushed first: a checkpoint is complete only once every metric point up
        to its step is kept, since a resumed run starts after it and never reports them again.
        """

        def __init__(self, keep: int, flush: Callable[[], None]) -> None:
            self.keep = keep
            self.flush = flush

        def on_save(self, args, state, control, **kwargs):
            _barrier()
            if state.is_world_process_zero:
                root = Path(args.output_dir)
                self.flush()
                _mark_complete(root / f"checkpoint-{state.global_step}", state.global_step)
                _sweep_checkpoints(root, self.keep)
            _barrier()
            return control

    class LogAtSaves(TrainerCallback):
        """Closes a loss-logging window at every checkpoint and at the last step.

        Trainer logs the mean loss since its previous log. A resumed run starts its first window
        at the checkpoint, so windows that span a checkpoint would differ from an uninterrupted
        run's; aligned windows make the log history, and the train_loss computed from it, the
        same whether or not the run was interrupted.
        """

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True
            return control

    class Throughput(TrainerCallback):
        """Adds tokens_per_second (real tokens, all ranks, since the previous log) to loss logs."""

        def __init__(self, collator: PadCollator) -> None:
            self.collator = collator
            self.mark: tuple[float, int] | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.mark = (time.perf_counter(), self.collator.tokens)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs or self.mark is None:
                return
            now, tokens = time.perf_counter(), self.collator.tokens
            delta = _sum_across_ranks(tokens - self.mark[1], args.device)
            if now > self.mark[0]:
                logs["tokens_per_second"] = round(delta / (now - self.mark[0]), 2)
            self.mark = (now, tokens)

    class Stop(TrainerCallback):
        """Stops after the current optimizer step when asked (all ranks agree), saving first."""

        def __init__(self, should_stop: Callable[[], bool]) -> None:
            self.should_stop = should_stop
            self.stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                return control
            if _any_rank(bool(self.should_stop()), args.device):
                control.should_training_stop = True
                control.should_save = True
                control.should_log = True  # close the loss window at the checkpoint (LogAtSaves)
                self.stopped_at = state.global_step
            return control

    return {
        "LogAtSaves": LogAtSaves,
        "CheckpointMarker": CheckpointMarker,
        "Throughput": Throughput,
        "Stop": Stop,
    }


def _dist_active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _barrier() -> None:
    if _dist_active():
        import torch.distributed as dist

        dist.barrier()


def _any_rank(flag: bool, device: Any) -> bool:
    if not _dist_active():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _sum_across_ranks(value: int, device: Any) -> int:
    if not _dist_active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t.item())


class _NoStop:
    """Forwards to a Reporter but never asks to stop (the Stop callback owns cancel).

    Trainer's closing log carries its own `train_loss`: the mean over the steps of this
    `train()` call only, wrong after a resume. It is dropped here; the run's mean over all its
    steps (mean_logged_loss) is reported with the final metrics.
    """

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def step(self, step, total, metrics=None):
        if metrics and "train_loss" in metrics:
            metrics = {k: v for k, v in metrics.items() if k != "train_loss"}
        self.inner.step(step, total, metrics)

    def log(self, message, level="info"):
        self.inner.log(message, level)

    def preview(self, image):
        self.inner.preview(image)

    def artifact(self, path, name=None):
        self.inner.artifact(path, name)

    def should_stop(self):
        return False

    def flush(self):
        self.inner.flush()


# ---------------------------------------------------------------------------------- training


def planned_steps(
    n_examples: int, config: LoraFinetuneConfig, world_size: int = 1
) -> tuple[int, int]:
    """(max_steps, update steps per epoch), computed the way Trainer does."""
    batches = math.ceil(n_examples / (config.per_device_train_batch_size * world_size))
    per_epoch = max(
        batches // config.gradient_accumulation_steps
        + int(batches % config.gradient_accumulation_steps > 0),
        1,
    )
    if config.max_steps > 0:
        return config.max_steps, per_epoch
    return math.ceil(config.num_train_epochs * per_epoch), per_epoch


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over every step of the run, from Trainer's log history.

    Each log's `loss` is the mean since the previous log, so it is weighted by its window. Unlike
    Trainer's own `train_loss` (the mean over the steps of the last `train()` call only), this
    covers the steps before a resume too: the history is restored from the checkpoint.
    """
    total, previous = 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            step = int(entry["step"])
            total += float(entry["loss"]) * (step - previous)
            previous = step
    return total / previous if previous > 0 else None


def _eval_metrics(trainer: Any, suffix: str) -> dict[str, float]:
    out = trainer.evaluate()
    loss = float(out["eval_loss"])
    if not math.isfinite(loss):
        raise JobFailed(
            f"the eval loss {suffix} training is {loss} (the model diverged or overflowed): "
            "lower the learning rate, or train in bf16/fp32 instead of fp16"
        )
    ppl = math.exp(loss) if loss < 700 else float("inf")
    return {f"eval_loss_{suffix}": loss, f"perplexity_{suffix}": ppl}


def _train_process(
    spec: dict[str, Any], reporter: Reporter, should_stop: Callable[[], bool]
) -> dict:
    """Train in this process (one rank of DDP, or the only process). Writes the adapter folder.

    `spec`: config (dict), base_model_dir, template, train_rows, eval_rows, output_dir,
    resume_from (checkpoint folder or None), precision (resolved), device_kind.
    """
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments, set_seed

    config = LoraFinetuneConfig.from_dict(spec["config"])
    output_dir = Path(spec["output_dir"])
    precision = spec["precision"]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    on_cuda = spec["device_kind"] == "cuda"

    _quiet_peft()
    set_seed(config.seed)
    model, tokenizer = _load(
        spec["base_model_dir"],
        precision=precision,
        load_in=config.load_in,
        device=f"cuda:{local_rank}" if on_cuda else "cpu",
    )
    train = encode_rows(
        spec["train_rows"],
        tokenizer,
        spec["template"],
        max_seq_length=config.max_seq_length,
        loss_on=config.loss_on,
    )
    evals = encode_rows(
        spec["eval_rows"],
        tokenizer,
        spec["template"],
        max_seq_length=config.max_seq_length,
        loss_on=config.loss_on,
    )
    if not train.examples:
        raise JobFailed("no training example is left after tokenization (all rows empty?)")
    target = answer_field(spec["template"], config.loss_on)
    if is_main:
        reporter.log(
            f"{len(train.examples)} training and {len(evals.examples)} eval examples; loss on "
            + (f"{{{target}}} and EOS (prompt masked)" if target else "the whole text")
            + (
                f"; {train.truncated} cut to {config.max_seq_length} tokens"
                if train.truncated
                else ""
            )
            + (f"; {train.skipped} skipped (nothing to learn)" if train.skipped else "")
        )

    targets = config.target_modules or default_target_modules(spec["base_model_dir"], model)
    if config.load_in != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model.config.use_cache = False
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        target_modules=list(targets),
        lora_dropout=config.lora_dropout,
        bias=config.bias,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    collator = PadCollator(tokenizer.pad_token_id, 8 if on_cuda else None)
    args = TrainingArguments(
        output_dir=str(output_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # CheckpointMarker prunes, counting complete checkpoints only
        eval_strategy="no",
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_cuda,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="none",
        disable_tqdm=True,
        ddp_backend=("nccl" if on_cuda else "gloo") if world_size > 1 else None,
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )
    cbs = _callbacks()
    stop_cb = cbs["Stop"](should_stop)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(train.examples),
        eval_dataset=_ListDataset(evals.examples) if evals.examples else None,
        data_collator=collator,
        callbacks=[
            cbs["LogAtSaves"](),
            cbs["CheckpointMarker"](config.keep_checkpoints, reporter.flush),
            cbs["Throughput"](collator),
        ],
    )
    for noisy in (PrinterCallback, ProgressCallback):  # they print every log to stdout/stderr
        trainer.remove_callback(noisy)
    max_steps, _ = planned_steps(len(train.examples), config, world_size)
    resume_from = spec.get("resume_from")
    resumed_step = int(resume_from.rsplit("-", 1)[1]) if resume_from else 0

    metrics: dict[str, float] = {}
    if evals.examples:
        before_path = output_dir / EVAL_BEFORE_NAME
        saved = (
            json.loads(before_path.read_text()) if resume_from and before_path.is_file() else None
        )
        if saved is None:
            saved = _eval_metrics(trainer, "before")
            if is_main:
                _write_json(before_path, saved)
        metrics.update(saved)
        if is_main:
            reporter.step(resumed_step, max_steps, dict(saved))
            reporter.log(
                f"before training: eval loss {saved['eval_loss_before']:.4f}, "
                f"perplexity {saved['perplexity_before']:.2f}"
            )
    if _any_rank(bool(should_stop()), args.device):
        return {"status": "cancelled", "global_step": resumed_step, "max_steps": max_steps}

    reporter_cb = trainer_callback(_NoStop(reporter))
    trainer.add_callback(reporter_cb)
    trainer.add_callback(stop_cb)
    if is_main and resume_from:
        reporter.log(f"resuming from the checkpoint of step {resumed_step}")
    tokens0 = collator.tokens
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - t0
    trainer.remove_callback(reporter_cb)
    state = trainer.state
    tokens = _sum_across_ranks(collator.tokens - tokens0, args.device)
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    metrics.update(
        train_seconds=round(train_seconds, 4),
        train_tokens=tokens,
        train_tokens_per_second=round(tokens / train_seconds, 2) if train_seconds > 0 else 0.0,
    )
    if losses:
        metrics["train_loss_first"] = float(losses[0])
        metrics["train_loss_last"] = float(losses[-1])
    mean_loss = mean_logged_loss(state.log_history)
    if mean_loss is not None:
        metrics["train_loss"] = mean_loss
    details = {
        "precision": precision,
        "device": spec["device_kind"],
        "world_size": world_size,
        "target_modules": list(targets),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_examples": len(train.examples),
        "eval_examples": len(evals.examples),
        "loss_on": target or "all",
        "truncated_examples": train.truncated,
        "skipped_examples": train.skipped,
    }
    outcome = {
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "metrics": metrics,
        "details": details,
        "resumed_from_step": resumed_step or None,
    }
    if stop_cb.stopped_at is not None:
        if is_main:
            reporter.log(f"stopped at step {state.global_step}; checkpoint kept", "warning")
        return {"status": "cancelled", **outcome}

    if evals.examples:
        after = _eval_metrics(trainer, "after")
        metrics.update(after)
    if is_main:
        final = {k: v for k, v in metrics.items() if not k.endswith("_before")}
        reporter.step(state.global_step, state.max_steps, final)
        if evals.examples:
            reporter.log(
                f"after training: eval loss {metrics['eval_loss_after']:.4f}, "
                f"perplexity {metrics['perplexity_after']:.2f}"
            )
        tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=output_dir))
        trainer.model.save_pretrained(str(tmp), safe_serialization=True)
        for stray in ("README.md",):  # peft's generic card; train_lora writes ours
            (tmp / stray).unlink(missing_ok=True)
        _replace_dir(tmp, output_dir / ADAPTER_DIR)
    _barrier()
    del trainer, model
    if on_cuda:
        torch.cuda.empty_cache()
    return {"status": "succeeded", **outcome}


def _quiet_peft() -> None:
    # peft reads a property that transformers v5 renamed and warns on every model it wraps. A
    # global filter: catch_warnings is not thread-safe, and workers run jobs in threads.
    warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        old = dst.with_name(f".{dst.name}-old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


# ---------------------------------------------------------------------------------- public API


def train_lora(
    config: LoraFinetuneConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    template: str,
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    resume: bool = True,
    card_info: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune a LoRA adapter on `train_rows` rendered with `template` (see the module doc).

    `eval_rows`: the dataset's validation split; None holds out `config.eval_fraction` of the
    training rows. `resume`: continue from the newest complete checkpoint of the same run (same
    config, model, template and rows) in `output_dir`; False starts over. `card_info`: what the
    model card says about the data and model (base_model, dataset_version, ...).
    Returns status "succeeded" (adapter written) or "cancelled" (stopped; checkpoint kept).
    """
    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base_model_dir = Path(base_model_dir).resolve()
    precision = resolve_precision(config.precision)
    check_quantization(config.load_in)
    device_kind = _check_devices(config.num_gpus)
    _inspect(base_model_dir)  # refuse pickle / remote-code folders before anything starts

    rows = [dict(r) for r in train_rows]
    if eval_rows is None:
        rows, held = split_eval(rows, config.eval_fraction, config.seed)
    else:
        held = [dict(r) for r in eval_rows]
    if not rows:
        raise JobFailed("the dataset has no training rows")
    ckpt_root = output_dir / CHECKPOINTS_DIR
    fingerprint = _fingerprint(
        config.to_dict(), str(base_model_dir), template, rows, held, config.num_gpus
    )
    run_path = output_dir / RUN_NAME
    previous = json.loads(run_path.read_text()) if run_path.is_file() else None
    same_run = resume and previous is not None and previous.get("fingerprint") == fingerprint
    if same_run and (output_dir / RESULT_NAME).is_file() and (output_dir / ADAPTER_ZIP).is_file():
        done = FinetuneResult.from_dict(json.loads((output_dir / RESULT_NAME).read_text()))
        if done.status == "succeeded":
            reporter.log("this fine-tune already finished; returning its result")
            return done
    if not same_run:
        if resume and previous is not None:
            reporter.log(
                "parameters or data changed since the last attempt: starting over", "warning"
            )
        for name in (CHECKPOINTS_DIR, ADAPTER_DIR):
            shutil.rmtree(output_dir / name, ignore_errors=True)
        for name in (ADAPTER_ZIP, RESULT_NAME, EVAL_BEFORE_NAME):
            (output_dir / name).unlink(missing_ok=True)
        _write_json(run_path, {"fingerprint": fingerprint, "config": config.to_dict()})
    _sweep_checkpoints(ckpt_root, keep=max(config.keep_checkpoints, 1))
    for stale in output_dir.glob(".adapter-*"):  # a crash while the adapter was being published
        shutil.rmtree(stale, ignore_errors=True)
    latest = complete_checkpoints(ckpt_root)
    resume_from = str(latest[0].path) if latest else None

    spec = {
        "config": config.to_dict(),
        "base_model_dir": str(base_model_dir),
        "template": template,
        "output_dir": str(output_dir),
        "resume_from": resume_from,
        "precision": precision,
        "device_kind": device_kind,
    }
    reporter.log(
        f"LoRA r={config.r} alpha={config.lora_alpha} on {base_model_dir.name}, {precision} on "
        f"{config.num_gpus if config.num_gpus > 1 else 1} {device_kind} process(es)"
        + (f", 4-/8-bit: {config.load_in}" if config.load_in != "none" else "")
    )
    if config.num_gpus > 1:
        from workers.ml.finetune_ddp import run_distributed

        outcome = run_distributed(spec, rows, held, config.num_gpus, reporter)
    else:
        outcome = _train_process(
            {**spec, "train_rows": rows, "eval_rows": held}, reporter, reporter.should_stop
        )

    latest = complete_checkpoints(ckpt_root)
    result = FinetuneResult(
        status=outcome["status"],
        global_step=outcome.get("global_step", 0),
        max_steps=outcome.get("max_steps", 0),
        metrics=outcome.get("metrics", {}),
        checkpoint=str(latest[0].path) if latest else None,
        resumed_from_step=outcome.get("resumed_from_step"),
        details=outcome.get("details", {}),
    )
    if result.status != "succeeded":
        return result
    adapter = output_dir / ADAPTER_DIR
    info = dict(card_info or {})
    info.setdefault("base_model", base_model_dir.name)
    card = write_model_card(
        adapter / CARD_NAME,
        title=f"LoRA adapter for {info['base_model']}",
        card_info=info,
        config=config.to_dict(),
        metrics=result.metrics,
        details=result.details,
        template=template,
        kind="adapter",
    )
    zip_path = _zip_folder(adapter, output_dir / ADAPTER_ZIP)
    result.adapter_dir, result.adapter_zip, result.model_card = (
        str(adapter),
        str(zip_path),
        str(card),
    )
    _write_json(output_dir / RESULT_NAME, result.to_dict())
    reporter.artifact(str(zip_path), ADAPTER_ZIP)
    return result


def _zip_folder(folder: Path, dest: Path) -> Path:
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    os.replace(tmp, dest)
    return dest


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def write_model_card(
    path: Path,
    *,
    title: str,
    card_info: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    details: Mapping[str, Any],
    template: str | None,
    kind: str,
) -> Path:
    """A Hugging Face style README.md: front matter, provenance, parameters, metrics, usage."""
    base = str(card_info.get("base_model", ""))
    lines = [
        "---",
        f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
        f"base_model: {json.dumps(base, ensure_ascii=False)}",
        "tags: [lora, sft, atelier]",
        "---",
        "",
        f"# {title}",
        "",
        "Produced by Atelier (transformers Trainer + peft LoRA).",
        "",
        "## Provenance",
        "",
    ]
    for key, value in card_info.items():
        lines.append(f"- **{key.replace('_', ' ')}**: {_fmt(value)}")
    if template:
        lines += ["", "Prompt template:", "", "```text", template, "```"]
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in config.items()]
    if details:
        lines += ["", "## Run", "", "| item | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in details.items()]
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
    if kind == "adapter":
        lines += [
            "",
            "## Use",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            'base = AutoModelForCausalLM.from_pretrained("BASE_MODEL_DIR")',
            'tokenizer = AutoTokenizer.from_pretrained("BASE_MODEL_DIR")',
            'model = PeftModel.from_pretrained(base, "ADAPTER_DIR")',
            "```",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def merge_and_export(
    base_model_dir: str | os.PathLike[str],
    adapter_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    card_info: Mapping[str, Any] | None = None,
    dtype: str = "auto",
) -> Path:
    """Merge a LoRA adapter into its base model; write a full safetensors folder + tokenizer + card.

    dtype: auto (the base model's saved dtype), float32, bfloat16 or float16.
    """
    import torch
    from peft import PeftModel

    base_model_dir, adapter_dir, out_dir = Path(base_model_dir), Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise JobFailed(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    if dtype == "auto":  # merge in fp32, save in the base model's own dtype
        saved = str(_inspect(base_model_dir).dtype).removeprefix("torch.")
        dtype = saved if saved in ("float32", "bfloat16", "float16") else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    base, tokenizer = _load(str(base_model_dir), precision="fp32", load_in="none", device="cpu")
    _quiet_peft()
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    merged.config.use_cache = True
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        adapter_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
        info = {"base_model": base_model_dir.name, "adapter": adapter_dir.name, **(card_info or {})}
        write_model_card(
            tmp / CARD_NAME,
            title=f"{info['base_model']} merged with a LoRA adapter",
            card_info=info,
            config={
                k: adapter_cfg.get(k)
                for k in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias")
            },
            metrics={},
            details={"dtype": str(merged.dtype).removeprefix("torch.")},
            template=None,
            kind="merged",
        )
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]
