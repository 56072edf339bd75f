"""The knobs of the three text craft jobs, each with its default, bounds, choices and help text.

As for the LoRA fine-tune (workers/ml/finetune/config.py), the platform's params models, forms and
API are derived from these fields (apps/craft/text_schemas.py), so a user may submit exactly what
the worker accepts. Field metadata: help, title, ge/gt/le (numeric bounds), choices.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "PRECISIONS",
    "QUANT_METHODS",
    "BiasProbeConfig",
    "ConfigError",
    "DistillConfig",
    "QuantizeConfig",
    "describe",
]

PRECISIONS = ("auto", "fp32", "bf16")
LOSS_ON = ("auto", "answer", "all")
# int8-weight-only: int8 weights, float activations (CPU and GPU); int8-dynamic: torch.ao dynamic
# quantization, int8 activations too (CPU only, fastest there, least accurate); bnb-*: the
# bitsandbytes formats (CUDA + bitsandbytes).
QUANT_METHODS = ("int8-weight-only", "int8-dynamic", "bnb-8bit", "bnb-4bit")
LANGUAGES = ("all", "en", "zh")
BIG = 100_000_000


class ConfigError(ValueError):
    """A value a config refuses; `field` names the field (None: the parameters as a whole)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _f(default: Any, help: str, *, title: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "title": title, **extra})


def _check_field(cfg: Any, name: str, kind: Any, meta: Mapping[str, Any]) -> None:
    value = getattr(cfg, name)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"{name} must be true or false, got {value!r}")
        return
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
            object.__setattr__(cfg, name, value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"{name} must be a whole number, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(name, f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(name, f"{name} must be a finite number")
        object.__setattr__(cfg, name, value)
    if kind in (int, float):
        if "ge" in meta and value < meta["ge"]:
            raise ConfigError(name, f"{name} must be at least {meta['ge']}, got {value}")
        if "gt" in meta and value <= meta["gt"]:
            raise ConfigError(name, f"{name} must be above {meta['gt']}, got {value}")
        if "le" in meta and value > meta["le"]:
            raise ConfigError(name, f"{name} must be at most {meta['le']}, got {value}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(
            name, f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
        )


class _Config:
    """Shared behaviour: checked on construction, built from a dict, described for forms."""

    def __post_init__(self) -> None:
        types = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            _check_field(self, f.name, types[f.name], f.metadata)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build from a params dict; unknown keys are an error (a typo would be ignored)."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(None, f"unknown parameter(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


def describe(cls: type) -> list[dict[str, Any]]:
    """[{name, type, default, title, help, choices?, ge?, gt?, le?}] in declaration order."""
    types = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        item = {
            "name": f.name,
            "type": types[f.name].__name__,
            "default": None if f.default is MISSING else f.default,
            **{k: v for k, v in f.metadata.items() if k != "choices"},
        }
        if "choices" in f.metadata:
            item["choices"] = list(f.metadata["choices"])
        out.append(item)
    return out


@dataclass(frozen=True)
class DistillConfig(_Config):
    """Teacher-student distillation: loss = alpha*KL(teacher/T || student/T)*T^2 + (1-alpha)*CE."""

    keep_every: int = _f(
        2,
        "When the student is built from the teacher: keep every k-th transformer layer "
        "(layers 0, k, 2k, ...); 2 halves the depth.",
        title="Keep every k-th layer",
        ge=1,
        le=64,
    )
    alpha: float = _f(
        0.5,
        "Weight of the soft-label (KL) loss; 1 - alpha weighs the hard-label cross-entropy.",
        title="Alpha (KL weight)",
        ge=0.0,
        le=1.0,
    )
    temperature: float = _f(
        2.0,
        "Softens both distributions before the KL; the KL is multiplied by T² so its gradients "
        "keep their scale.",
        title="Temperature",
        gt=0.0,
        le=20.0,
    )
    max_steps: int = _f(200, "Optimizer steps to train the student.", title="Steps", ge=1, le=BIG)
    per_device_train_batch_size: int = _f(
        8, "Examples per forward pass.", title="Batch size", ge=1, le=1024
    )
    gradient_accumulation_steps: int = _f(
        1, "Forward passes per optimizer step.", title="Gradient accumulation", ge=1, le=1024
    )
    learning_rate: float = _f(
        1e-4,
        "Peak learning rate (AdamW, every student weight trains).",
        title="Learning rate",
        gt=0.0,
        le=1.0,
    )
    warmup_steps: int = _f(10, "Linear warm-up steps.", title="Warm-up steps", ge=0, le=BIG)
    weight_decay: float = _f(0.0, "AdamW weight decay.", title="Weight decay", ge=0.0, le=1.0)
    max_grad_norm: float = _f(
        1.0, "Gradient clipping norm; 0 turns it off.", title="Max gradient norm", ge=0.0, le=1e6
    )
    max_seq_length: int = _f(
        512,
        "Examples are cut to this many tokens.",
        title="Max sequence length",
        ge=16,
        le=65_536,
    )
    loss_on: str = _f(
        "auto",
        "Where both losses apply: auto (the answer when the template ends with it), answer, or "
        "all of the text.",
        title="Loss on",
        choices=LOSS_ON,
    )
    eval_fraction: float = _f(
        0.1,
        "Share of the rows held out for KL and perplexity when the dataset version has no "
        "validation split.",
        title="Eval share",
        ge=0.01,
        le=0.5,
    )
    logging_steps: int = _f(
        10,
        "Report loss, KL and cross-entropy every N steps.",
        title="Log every N steps",
        ge=1,
        le=BIG,
    )
    save_steps: int = _f(
        100,
        "Write a resumable checkpoint every N steps.",
        title="Checkpoint every N steps",
        ge=1,
        le=BIG,
    )
    keep_checkpoints: int = _f(
        2, "Complete checkpoints kept.", title="Checkpoints kept", ge=1, le=100
    )
    seed: int = _f(42, "Seed for data order and initialisation.", title="Seed", ge=0, le=2**32 - 1)
    precision: str = _f(
        "auto",
        "auto: bf16 on GPUs that support it, fp32 on the CPU.",
        title="Precision",
        choices=PRECISIONS,
    )
    speed_tokens: int = _f(
        32,
        "New tokens generated per prompt when measuring tokens/s.",
        title="Tokens for the speed test",
        ge=1,
        le=512,
    )


@dataclass(frozen=True)
class QuantizeConfig(_Config):
    """Post-training quantization of a causal LM, measured before and after."""

    method: str = _f(
        "int8-weight-only",
        "int8-weight-only: int8 weights per output channel, float activations (CPU or GPU; "
        "close to the original). int8-dynamic: torch.ao dynamic quantization, int8 activations "
        "too (CPU only; fastest on the CPU, least accurate). bnb-8bit / bnb-4bit: bitsandbytes "
        "(CUDA GPU with bitsandbytes only).",
        title="Method",
        choices=QUANT_METHODS,
    )
    max_seq_length: int = _f(
        512,
        "Validation examples are cut to this many tokens for perplexity.",
        title="Max sequence length",
        ge=16,
        le=65_536,
    )
    max_eval_rows: int = _f(
        200,
        "Validation rows measured at most (perplexity and agreement).",
        title="Validation rows",
        ge=1,
        le=100_000,
    )
    speed_tokens: int = _f(
        32,
        "New tokens generated per prompt when measuring tokens/s.",
        title="Tokens for the speed test",
        ge=1,
        le=512,
    )
    speed_prompts: int = _f(
        4, "Prompts (validation rows) timed for tokens/s.", title="Prompts timed", ge=1, le=64
    )


@dataclass(frozen=True)
class BiasProbeConfig(_Config):
    """Counterfactual probes: the same prompt with one attribute's group terms swapped."""

    language: str = _f(
        "all",
        "Which probe sets to run: all, en (English) or zh (Chinese).",
        title="Language",
        choices=LANGUAGES,
    )
    attributes: str = _f(
        "",
        "Comma-separated attributes to probe (gender, ethnicity, age, region); empty: all.",
        title="Attributes",
    )
    generate: bool = _f(
        True,
        "Also generate an answer per prompt and group, for the refusal and sentiment gaps "
        "(slower); off: log-likelihood gaps only.",
        title="Refusal and sentiment",
    )
    max_new_tokens: int = _f(
        24,
        "Tokens generated per prompt and group (greedy).",
        title="Tokens per answer",
        ge=1,
        le=256,
    )

    def attribute_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.attributes.split(",") if a.strip())
