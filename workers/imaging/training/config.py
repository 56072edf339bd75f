"""The schemas of image LoRA and textual-inversion training: every knob with default, bounds and help.

The platform's params models (`apps/craft/image_schemas.py`), forms and API are derived from these
fields, so what a user may submit is exactly what the trainer accepts. Each field's metadata:

    help      what the knob does (form help, API docs)
    title     the short label a form shows
    ge/gt/le  numeric bounds (inclusive / exclusive lower, inclusive upper)
    choices   the allowed values of a string field
    max_length, max_items   the longest string, the most lines (sample prompts)
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "PRECISIONS",
    "SCHEDULERS",
    "ConfigError",
    "ImageLoraConfig",
    "ImageTrainConfig",
    "TextualInversionConfig",
    "TrainingRefused",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
# The names prompts use for an embedding (and the platform for any extra network): no spaces,
# no ':' or '<>' (they would read as a LoRA tag), at most 100 characters.
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
MAX_SAMPLE_PROMPTS = 4
MAX_VECTORS = 16
BIG = 1_000_000


class ConfigError(ValueError):
    """A value the config refuses; `field` names the field (None: the parameters as a whole)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


class TrainingRefused(ValueError):
    """Images, a base model or settings a run cannot train on; the message says what to change."""


def _f(default: Any, help: str, *, title: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "title": title, **extra})


@dataclass(frozen=True)
class ImageTrainConfig:
    """What image LoRA and textual-inversion runs share: data, schedule, samples, checkpoints."""

    resolution: int = _f(
        512,
        "Training images are resized (shorter side) to this many pixels and centre-cropped "
        "square; a multiple of 8. Use the model's native size (512 for SD 1.5, 32 for the "
        "digits demo).",
        title="Resolution (px)",
        ge=16,
        le=2048,
    )
    steps: int = _f(500, "Optimizer steps to train.", title="Training steps", ge=1, le=BIG)
    batch_size: int = _f(1, "Images per optimizer step.", title="Batch size", ge=1, le=64)
    learning_rate: float = _f(
        1e-4, "Peak learning rate (AdamW).", title="Learning rate", gt=0.0, le=1.0
    )
    lr_scheduler: str = _f(
        "constant",
        "Learning-rate schedule after warm-up.",
        title="LR scheduler",
        choices=SCHEDULERS,
    )
    warmup_steps: int = _f(
        0, "Steps of linear learning-rate warm-up.", title="Warm-up steps", ge=0, le=BIG
    )
    weight_decay: float = _f(1e-2, "AdamW weight decay.", title="Weight decay", ge=0.0, le=1.0)
    max_grad_norm: float = _f(
        1.0,
        "Gradient clipping norm; 0 turns clipping off.",
        title="Max gradient norm",
        ge=0.0,
        le=1e6,
    )
    random_flip: bool = _f(
        False,
        "Flip each image left-right at random (not for text, digits or asymmetric subjects).",
        title="Random flip",
    )
    sample_prompts: tuple[str, ...] = _f(
        (),
        f"Up to {MAX_SAMPLE_PROMPTS} prompts, one per line, rendered every N steps and shown "
        "live on the job page.",
        title="Sample prompts",
        max_length=2000,
        max_items=MAX_SAMPLE_PROMPTS,
    )
    sample_every: int = _f(
        100,
        "Render the sample prompts every N steps (and after the last); 0: only after the last.",
        title="Samples every N steps",
        ge=0,
        le=BIG,
    )
    sample_steps: int = _f(
        20, "Denoising steps of each sample image.", title="Sample steps", ge=1, le=150
    )
    sample_cfg_scale: float = _f(
        7.0, "Classifier-free guidance of the samples.", title="Sample CFG scale", ge=0.0, le=30.0
    )
    save_every: int = _f(
        100,
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
        le=100,
    )
    log_every: int = _f(
        10, "Report loss and learning rate every N steps.", title="Log every N steps", ge=1, le=BIG
    )
    seed: int = _f(
        42,
        "Seed for initialisation, data order, noise and samples.",
        title="Seed",
        ge=0,
        le=2**32 - 1,
    )
    precision: str = _f(
        "auto",
        "auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU. The trained "
        "weights are kept in fp32 whatever the base model's precision.",
        title="Precision",
        choices=PRECISIONS,
    )

    def __post_init__(self) -> None:
        prompts = self.sample_prompts
        if isinstance(prompts, str):
            prompts = prompts.splitlines()
        object.__setattr__(
            self, "sample_prompts", tuple(p.strip() for p in prompts if str(p).strip())
        )
        types = _field_types(type(self))
        for f in fields(self):
            kind = types[f.name]
            if kind is bool:
                _check_bool(self, f)
            elif kind is int:
                _check_int(self, f)
            elif kind is float:
                _check_float(self, f)
            elif kind is str:
                _check_str(self, f)
        if len(self.sample_prompts) > MAX_SAMPLE_PROMPTS:
            raise ConfigError(
                "sample_prompts", f"at most {MAX_SAMPLE_PROMPTS} sample prompts, one per line"
            )
        if sum(len(p) for p in self.sample_prompts) > 2000:
            raise ConfigError("sample_prompts", "sample prompts: at most 2000 characters in all")
        if self.resolution % 8:
            raise ConfigError(
                "resolution", f"resolution must be a multiple of 8, got {self.resolution}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build from a params dict; unknown keys are an error (a typo would be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(None, f"unknown training parameter(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample_prompts"] = list(self.sample_prompts)
        return data

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """[{name, type, default, title, help, choices?, ge?, gt?, le?, max_length?}] for forms
        and API docs, in declaration order; type: int, float, str, bool or lines (one string
        per line)."""
        types = _field_types(cls)
        out = []
        for f in fields(cls):
            kind = types[f.name]
            item = {
                "name": f.name,
                "type": kind.__name__ if isinstance(kind, type) else "lines",
                "default": None if f.default is MISSING else f.default,
                **{key: value for key, value in f.metadata.items() if key != "choices"},
            }
            if item["type"] == "lines":
                item["default"] = "\n".join(item["default"] or ())
            if "choices" in f.metadata:
                item["choices"] = list(f.metadata["choices"])
            out.append(item)
        return out

    def trainable_dtype_name(self, device_type: str, bf16_ok: bool) -> str:
        """The frozen weights' precision on this device: fp32 on CPU whatever was asked."""
        if device_type != "cuda":
            return "fp32"
        if self.precision == "auto":
            return "bf16" if bf16_ok else "fp16"
        return self.precision


@dataclass(frozen=True)
class ImageLoraConfig(ImageTrainConfig):
    """A UNet LoRA (diffusers' train_text_to_image_lora recipe), saved for load_lora_weights."""

    rank: int = _f(
        4,
        "LoRA rank: the inner size of the low-rank update matrices.",
        title="LoRA rank (r)",
        ge=1,
        le=256,
    )
    alpha: int = _f(
        0,
        "LoRA scaling: updates are multiplied by alpha / rank; 0: the same as the rank.",
        title="LoRA alpha",
        ge=0,
        le=1024,
    )
    trigger_word: str = _f(
        "",
        'Written before every caption ("word, caption"): prompts that use it call up what '
        "the LoRA learned. Empty: captions as they are.",
        title="Trigger word",
        max_length=100,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "trigger_word", str(self.trigger_word).strip())
        super().__post_init__()

    @property
    def lora_alpha(self) -> int:
        return self.alpha or self.rank


@dataclass(frozen=True)
class TextualInversionConfig(ImageTrainConfig):
    """A new word whose embedding vectors are learned (diffusers' textual_inversion recipe)."""

    learning_rate: float = _f(
        5e-3, "Peak learning rate (AdamW).", title="Learning rate", gt=0.0, le=1.0
    )
    steps: int = _f(1000, "Optimizer steps to train.", title="Training steps", ge=1, le=BIG)
    token: str = _f(
        "",
        "The word prompts use for the embedding (letters, digits, '_', '-', '.'); it is written "
        "before every caption while training. Pick a word the model does not know.",
        title="Embedding name",
        max_length=100,
    )
    initializer: str = _f(
        "",
        'A word close to what the images show ("style", "dog"): the vectors start from its '
        "embedding.",
        title="Initializer word",
        max_length=100,
    )
    num_vectors: int = _f(
        1,
        "Vectors the name stands for: more can hold more detail and use more of the 75-token "
        "prompt.",
        title="Vectors",
        ge=1,
        le=MAX_VECTORS,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", str(self.token).strip())
        object.__setattr__(self, "initializer", str(self.initializer).strip())
        super().__post_init__()
        if not TOKEN_NAME.match(self.token):
            raise ConfigError(
                "token",
                "the embedding name is required: letters, digits, '_', '-' and '.' only, "
                "no spaces (prompts use it as one word)",
            )
        if not self.initializer:
            raise ConfigError("initializer", "an initializer word is required")


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    if cls not in _FIELD_TYPES:
        _FIELD_TYPES[cls] = typing.get_type_hints(cls)
    return _FIELD_TYPES[cls]


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(meta: Mapping[str, Any]) -> str:
    if "ge" in meta and "le" in meta:
        return f"between {_num(meta['ge'])} and {_num(meta['le'])}"
    lo = f"at least {_num(meta['ge'])}" if "ge" in meta else ""
    if "gt" in meta:
        lo = f"above {_num(meta['gt'])}"
    hi = f"at most {_num(meta['le'])}" if "le" in meta else ""
    return " and ".join(part for part in (lo, hi) if part)


def _in_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    return (
        ("ge" not in meta or value >= meta["ge"])
        and ("gt" not in meta or value > meta["gt"])
        and ("le" not in meta or value <= meta["le"])
    )


def _check_bool(cfg: Any, f: Any) -> None:
    value = getattr(cfg, f.name)
    if not isinstance(value, bool):
        raise ConfigError(f.name, f"{f.name} must be true or false, got {value!r}")


def _check_int(cfg: Any, f: Any) -> None:
    value = getattr(cfg, f.name)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
            object.__setattr__(cfg, f.name, value)
        else:
            raise ConfigError(f.name, f"{f.name} must be a whole number, got {value!r}")
    if not _in_bounds(value, f.metadata):
        raise ConfigError(f.name, f"{f.name} must be {_bounds(f.metadata)}, got {value}")


def _check_float(cfg: Any, f: Any) -> None:
    value = getattr(cfg, f.name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f.name, f"{f.name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not _in_bounds(value, f.metadata):
        raise ConfigError(f.name, f"{f.name} must be {_bounds(f.metadata)}, got {value:g}")
    object.__setattr__(cfg, f.name, value)


def _check_str(cfg: Any, f: Any) -> None:
    value = getattr(cfg, f.name)
    if not isinstance(value, str):
        raise ConfigError(f.name, f"{f.name} must be text, got {value!r}")
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        choices = ", ".join(f.metadata["choices"])
        raise ConfigError(f.name, f"{f.name} must be one of {choices}, got {value!r}")
    if len(value) > f.metadata.get("max_length", BIG):
        raise ConfigError(f.name, f"{f.name}: at most {f.metadata['max_length']} characters")
