"""The one schema of a LoRA SFT run: every knob with its default, bounds, choices and help text.

The platform's params model (`apps/finetunes/schemas.py`), its form and its API are derived from
these fields, so what a user may submit is exactly what the worker accepts. Each field's metadata:

    help      what the knob does (form help, API docs)
    hidden    not a knob of this config (a subclass's run has no such thing): left out of
              describe(), so forms and params never show or take it; the default stays
    title     the short label a form shows
    ge/gt/le  numeric bounds (inclusive / exclusive lower, inclusive upper)
    choices   the allowed values of a string field
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "BIASES",
    "ConfigError",
    "LOAD_IN",
    "LOSS_ON",
    "PRECISIONS",
    "SCHEDULERS",
    "LoraFinetuneConfig",
    "planned_steps",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LOAD_IN = ("none", "8bit", "4bit")
BIASES = ("none", "all", "lora_only")
LOSS_ON = ("auto", "answer", "all")
# transformers' SchedulerType values that need no extra arguments.
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
BIG = 100_000_000  # "no practical limit" for step counts


class ConfigError(ValueError):
    """A value the config refuses; `field` names the field (None: the parameters as a whole)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _f(default: Any, help: str, *, title: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "title": title, **extra})


@dataclass(frozen=True)
class LoraFinetuneConfig:
    """Every knob of a LoRA SFT run; defaults are the team's recipe (see issue 4)."""

    # LoRA
    r: int = _f(
        8,
        "LoRA rank: the inner size of the low-rank update matrices.",
        title="LoRA rank (r)",
        ge=1,
        le=1024,
    )
    lora_alpha: int = _f(
        32,
        "LoRA scaling: updates are multiplied by lora_alpha / r.",
        title="LoRA alpha",
        ge=1,
        le=2048,
    )
    target_modules: tuple[str, ...] | None = _f(
        None,
        "Module names to adapt, comma-separated. Empty: detected from the architecture "
        "(q_proj and v_proj for Llama-style models).",
        title="Target modules",
        max_length=500,
    )
    lora_dropout: float = _f(
        0.1,
        "Dropout on the LoRA input during training.",
        title="LoRA dropout",
        ge=0.0,
        le=0.9,
    )
    bias: str = _f(
        "none", "Which biases to train: none, all or lora_only.", title="Bias", choices=BIASES
    )
    # Trainer
    per_device_train_batch_size: int = _f(
        4, "Examples per device per forward pass.", title="Batch size per device", ge=1, le=1024
    )
    gradient_accumulation_steps: int = _f(
        4,
        "Forward passes per optimizer step (effective batch = batch size x this x devices).",
        title="Gradient accumulation steps",
        ge=1,
        le=1024,
    )
    warmup_steps: int = _f(
        100,
        "Optimizer steps of linear learning-rate warm-up.",
        title="Warm-up steps",
        ge=0,
        le=BIG,
    )
    num_train_epochs: float = _f(
        3.0,
        "Passes over the training rows (ignored when max_steps > 0).",
        title="Epochs",
        gt=0.0,
        le=1000.0,
    )
    max_steps: int = _f(
        -1,
        "Stop after this many optimizer steps; -1: run num_train_epochs.",
        title="Max steps",
        ge=-1,
        le=BIG,
    )
    logging_steps: int = _f(
        10,
        "Report loss, learning rate, grad norm and tokens/s every N steps.",
        title="Log every N steps",
        ge=1,
        le=BIG,
    )
    learning_rate: float = _f(
        2e-4, "Peak learning rate (AdamW).", title="Learning rate", gt=0.0, le=1.0
    )
    lr_scheduler_type: str = _f(
        "linear",
        "Learning-rate schedule after warm-up.",
        title="LR scheduler",
        choices=SCHEDULERS,
    )
    weight_decay: float = _f(0.0, "AdamW weight decay.", title="Weight decay", ge=0.0, le=1.0)
    max_grad_norm: float = _f(
        1.0,
        "Gradient clipping norm; 0 turns clipping off.",
        title="Max gradient norm",
        ge=0.0,
        le=1e6,
    )
    max_seq_length: int = _f(
        512,
        "Examples are cut to this many tokens.",
        title="Max sequence length",
        ge=16,
        le=65_536,
    )
    packing: bool = _f(
        False,
        "Concatenate the examples of each optimizer step into one sequence without padding "
        "(position ids restart for each example and no token attends across examples): the "
        "same training, faster on short rows. Memory: a step's batch size x accumulation "
        "examples are in memory at once, not one batch of them.",
        title="Sequence packing",
    )
    loss_on: str = _f(
        "auto",
        "auto: loss on the answer only when the template ends with a placeholder, else on all "
        "of the text; answer: require that; all: loss on the whole text.",
        title="Loss on",
        choices=LOSS_ON,
    )
    eval_fraction: float = _f(
        0.1,
        "Share of the rows held out for eval loss and perplexity when the dataset has no "
        "validation split; 0 turns evaluation off.",
        title="Eval share",
        ge=0.0,
        le=0.5,
    )
    eval_steps: int = _f(
        50,
        "Also measure eval loss and perplexity on the held-out rows every N optimizer steps, "
        "for a curve; each time costs one pass over those rows. 0: only before and after "
        "training.",
        title="Evaluate every N steps",
        ge=0,
        le=BIG,
    )
    save_steps: int = _f(
        200,
        "Write a resumable checkpoint every N optimizer steps.",
        title="Checkpoint every N steps",
        ge=1,
        le=BIG,
    )
    keep_checkpoints: int = _f(
        2,
        "How many complete checkpoints to keep (the newest ones).",
        title="Checkpoints kept",
        ge=1,
        le=1000,
    )
    seed: int = _f(
        42,
        "Seed for LoRA initialisation, data order and dropout.",
        title="Seed",
        ge=0,
        le=2**32 - 1,
    )
    precision: str = _f(
        "auto",
        "auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.",
        title="Precision",
        choices=PRECISIONS,
    )
    load_in: str = _f(
        "none",
        "Load the base model in 8-bit or 4-bit (QLoRA, bitsandbytes); needs a CUDA GPU.",
        title="Load base model in",
        choices=LOAD_IN,
    )
    num_gpus: int = _f(
        1,
        "Devices to train on; more than 1 runs data-parallel processes (DDP) on one machine.",
        title="GPUs",
        ge=1,
        le=16,
    )

    def __post_init__(self) -> None:
        if self.target_modules is not None:
            modules = self.target_modules
            if isinstance(modules, str):
                modules = [m for m in re.split(r"[\s,]+", modules) if m]
            modules = tuple(str(m).strip() for m in modules)
            if any(not m for m in modules):
                raise ConfigError(
                    "target_modules", "target_modules: module names must not be empty"
                )
            object.__setattr__(self, "target_modules", modules or None)
        types = field_types(type(self))
        for f in fields(self):
            if types[f.name] is bool:
                _check_bool(self, f)
            elif types[f.name] is int:
                _check_int(self, f)
            elif types[f.name] is float:
                _check_float(self, f)
            if "choices" in f.metadata:
                _check_choice(self, f)
        # Rules across fields, or that bounds cannot say.
        if self.max_steps == 0:
            raise ConfigError(
                "max_steps", "max_steps must be -1 (use num_train_epochs) or at least 1"
            )
        if self.num_gpus > 1 and self.load_in != "none":
            raise ConfigError("num_gpus", "8-/4-bit loading trains on one GPU; set num_gpus to 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build from a params dict; unknown keys are an error (a typo would be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(None, f"unknown fine-tune parameter(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["target_modules"] is not None:
            data["target_modules"] = list(data["target_modules"])
        return data

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """[{name, type, default, title, help, choices?, ge?, gt?, le?, max_length?}] for forms
        and API docs, in declaration order; type: int, float, bool, str or list[str]."""
        types = field_types(cls)
        out = []
        for f in fields(cls):
            if f.metadata.get(
                "hidden"
            ):  # a knob this kind of run does not have (keeps its default)
                continue
            kind = types[f.name]
            item = {
                "name": f.name,
                "type": kind.__name__ if isinstance(kind, type) else "list[str]",
                "default": None if f.default is MISSING else f.default,
                **{key: value for key, value in f.metadata.items() if key != "choices"},
            }
            if "choices" in f.metadata:
                item["choices"] = list(f.metadata["choices"])
            out.append(item)
        return out


_FIELD_TYPES: dict[str, dict[str, Any]] = {}


def field_types(cls: type = LoraFinetuneConfig) -> dict[str, Any]:
    """Each config field's resolved type (int, float, bool, str, or the target_modules union) for
    LoraFinetuneConfig or a subclass that adds fields (the DPO and reward-model configs)."""
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key not in _FIELD_TYPES:
        _FIELD_TYPES[key] = typing.get_type_hints(cls)
    return _FIELD_TYPES[key]


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(f: Field) -> str:
    meta = f.metadata
    if "ge" in meta and "le" in meta:
        return f"between {_num(meta['ge'])} and {_num(meta['le'])}"
    lo = f"at least {_num(meta['ge'])}" if "ge" in meta else ""
    if "gt" in meta:
        lo = f"above {_num(meta['gt'])}"
    hi = f"at most {_num(meta['le'])}" if "le" in meta else ""
    return " and ".join(part for part in (lo, hi) if part)


def _in_bounds(value: float, f: Field) -> bool:
    meta = f.metadata
    return (
        ("ge" not in meta or value >= meta["ge"])
        and ("gt" not in meta or value > meta["gt"])
        and ("le" not in meta or value <= meta["le"])
    )


def _check_int(cfg: Any, f: Field) -> None:
    value = getattr(cfg, f.name)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            object.__setattr__(cfg, f.name, int(value))
            value = int(value)
        else:
            raise ConfigError(f.name, f"{f.name} must be a whole number, got {value!r}")
    if not _in_bounds(value, f):
        raise ConfigError(f.name, f"{f.name} must be {_bounds(f)}, got {value}")


def _check_bool(cfg: Any, f: Field) -> None:
    value = getattr(cfg, f.name)
    if not isinstance(value, bool):  # 1 or "yes" would pass silently as a different knob
        raise ConfigError(f.name, f"{f.name} must be true or false, got {value!r}")


def _check_float(cfg: Any, f: Field) -> None:
    value = getattr(cfg, f.name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f.name, f"{f.name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not _in_bounds(value, f):
        raise ConfigError(f.name, f"{f.name} must be {_bounds(f)}, got {value:g}")
    object.__setattr__(cfg, f.name, value)


def _check_choice(cfg: Any, f: Field) -> None:
    value, choices = getattr(cfg, f.name), f.metadata["choices"]
    if value not in choices:
        raise ConfigError(f.name, f"{f.name} must be one of {', '.join(choices)}, got {value!r}")


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
