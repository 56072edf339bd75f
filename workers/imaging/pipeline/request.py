"""What a txt2img/img2img job asks for and what it gets back, validated on creation.

- :class:`GenerationRequest`: one job with A1111's parameters (sampler, steps, CFG scale, seed,
  size, batch count and size, img2img, hi-res fix, ControlNet, LoRAs, embeddings, clip skip).
- :class:`HiresFix`, :class:`ControlNetSpec`: its hi-res fix and ControlNet settings (dicts
  accepted); :data:`ImageUpscaler`: an image upscaler for the hi-res fix (e.g. ESRGAN).
- :class:`GeneratedImage`: one image with its seed and A1111 infotext parameters.

A value out of range raises :class:`InvalidRequest`, whose message names the field.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

UPSCALERS = {"latent": "Latent", "lanczos": "Lanczos"}  # value → A1111's infotext name
CONTROL_TYPES = ("canny", "image")  # "image": the control image is used as it is
MAX_SIDE = 4096
MAX_STEPS = 150
MAX_BATCH_SIZE = 64
MAX_BATCH_COUNT = 100
MAX_SEED = 2**32 - 1


class InvalidRequest(ValueError):
    """A generation request with a value out of range; the message names the field."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidRequest(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


#: An image upscaler for the hi-res fix: ``(PIL image, (width, height)) -> PIL image``. Its
#: ``name`` attribute, when it has one, is recorded as the infotext's "Hires upscaler".
ImageUpscaler = Callable[[Any, tuple[int, int]], Any]


@dataclass(frozen=True)
class HiresFix:
    """A1111's hi-res fix: upscale the first pass, then an img2img pass of its own.

    ``upscaler`` is "latent" (interpolate the latents), "lanczos" (decode, PIL Lanczos,
    re-encode) or an :data:`ImageUpscaler` callable (decode, call it, Lanczos to the exact target
    size if it returned another, re-encode), e.g. an ESRGAN model. A callable compares by
    identity: requests share a pipeline call only when they pass the same upscaler object.
    """

    scale: float = 2.0
    steps: int = 0  # 0: the request's steps, as in A1111
    denoise: float = 0.7
    upscaler: str | ImageUpscaler = "latent"

    def __post_init__(self) -> None:
        _check(_is_number(self.scale) and 1.0 <= self.scale <= 8.0, "hires scale must be 1..8")
        _check(_is_int(self.steps) and 0 <= self.steps <= MAX_STEPS, "hires steps: 0..150")
        _check(
            _is_number(self.denoise) and 0.0 < self.denoise <= 1.0,
            "hires denoising strength must be in (0, 1]",
        )
        if callable(self.upscaler) and not isinstance(self.upscaler, str):
            return
        upscaler = str(self.upscaler).strip().lower()
        _check(
            upscaler in UPSCALERS,
            f"hires upscaler must be one of {', '.join(UPSCALERS)} or an image upscaler callable",
        )
        object.__setattr__(self, "upscaler", upscaler)

    @property
    def upscaler_name(self) -> str:
        """The upscaler as A1111's infotext names it ("Latent", "Lanczos", a model's name)."""
        if isinstance(self.upscaler, str):
            return UPSCALERS[self.upscaler]
        return str(getattr(self.upscaler, "name", "") or "custom")

    def key(self) -> tuple:
        """A hashable key: equal for settings that give the same second pass."""
        upscaler = (
            self.upscaler if isinstance(self.upscaler, str) else ("callable", id(self.upscaler))
        )
        return (float(self.scale), self.steps, float(self.denoise), upscaler)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size: the base size times ``scale``, down to a multiple of 8."""
        return int(width * self.scale) // 8 * 8, int(height * self.scale) // 8 * 8


@dataclass(frozen=True)
class ControlNetSpec:
    """A ControlNet for the job: its model and control image (canny edges or used as is)."""

    type: str = "canny"
    image: Any = None  # PIL image
    low: int = 100  # Canny thresholds (OpenCV), as in A1111's ControlNet extension
    high: int = 200
    model: Any = None  # a ControlNetModel, or a folder of safetensors weights
    scale: float = 1.0  # controlnet_conditioning_scale ("Weight" in A1111)
    guidance_start: float = 0.0
    guidance_end: float = 1.0

    def __post_init__(self) -> None:
        _check(self.type in CONTROL_TYPES, f"controlnet type must be one of {CONTROL_TYPES}")
        _check(self.image is not None and hasattr(self.image, "size"), "controlnet needs an image")
        _check(
            _is_int(self.low) and _is_int(self.high) and 0 <= self.low <= self.high <= 255,
            "canny thresholds need 0 <= low <= high <= 255",
        )
        _check(_is_number(self.scale) and 0.0 <= self.scale <= 4.0, "controlnet scale: 0..4")
        _check(
            _is_number(self.guidance_start)
            and _is_number(self.guidance_end)
            and 0.0 <= self.guidance_start < self.guidance_end <= 1.0,
            "controlnet guidance needs 0 <= start < end <= 1",
        )


@dataclass(frozen=True)
class GenerationRequest:
    """One txt2img or img2img job, with A1111's parameters. Validated on creation.

    ``seed`` −1 means random: :meth:`with_seed` (called by the generators) picks one, and every
    image records the seed it was made with (``seed + i`` for the i-th image of the job, over
    ``batch_count`` × ``batch_size`` images). ``init_image`` makes it img2img
    (``denoising_strength`` applies). ``hires`` and ``controlnet`` accept dicts. ``loras`` are
    ``(path to .safetensors, weight)`` pairs; ``<lora:...>`` tags in the prompt are removed
    before encoding (the caller resolves them to paths). ``embeddings`` are textual-inversion
    ``(name, path to .safetensors)`` pairs: a name used in the prompt or negative prompt (as
    :func:`~workers.imaging.prompts.extract_embeddings` finds it) stands for the embedding's
    vectors; unused ones are never read. ``extra_params`` are added to each image's infotext
    params (``Model``, ``Model hash``, ``Lora hashes``, ...) and win over the computed ones.
    """

    prompt: str
    negative_prompt: str = ""
    sampler: str = "Euler a"
    schedule_type: str | None = None
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    width: int = 512
    height: int = 512
    batch_count: int = 1
    batch_size: int = 1
    denoising_strength: float = 0.75
    init_image: Any = None
    hires: HiresFix | Mapping[str, Any] | None = None
    controlnet: ControlNetSpec | Mapping[str, Any] | None = None
    loras: Sequence[tuple[str, float]] = ()
    embeddings: Sequence[tuple[str, str]] = ()
    clip_skip: int = 1
    extra_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.prompt, str), "prompt must be text")
        _check(isinstance(self.negative_prompt, str), "negative prompt must be text")
        _check(isinstance(self.sampler, str) and self.sampler.strip() != "", "sampler is required")
        _check(_is_int(self.steps) and 1 <= self.steps <= MAX_STEPS, "steps must be 1..150")
        _check(_is_number(self.cfg_scale) and 0 <= self.cfg_scale <= 30, "CFG scale: 0..30")
        _check(_is_int(self.seed) and -1 <= self.seed <= MAX_SEED, f"seed: -1..{MAX_SEED}")
        for name in ("width", "height"):
            value = getattr(self, name)
            _check(
                _is_int(value) and 8 <= value <= MAX_SIDE and value % 8 == 0,
                f"{name} must be a multiple of 8 between 8 and {MAX_SIDE}",
            )
        _check(
            _is_int(self.batch_count) and 1 <= self.batch_count <= MAX_BATCH_COUNT,
            f"batch count must be 1..{MAX_BATCH_COUNT}",
        )
        _check(
            _is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
            f"batch size must be 1..{MAX_BATCH_SIZE}",
        )
        _check(
            _is_number(self.denoising_strength) and 0.0 < self.denoising_strength <= 1.0,
            "denoising strength must be in (0, 1]",
        )
        _check(
            self.init_image is None or hasattr(self.init_image, "convert"),
            "init image must be a PIL image",
        )
        _check(_is_int(self.clip_skip) and 1 <= self.clip_skip <= 12, "clip skip must be 1..12")
        if isinstance(self.hires, Mapping):
            object.__setattr__(self, "hires", HiresFix(**self.hires))
        _check(self.hires is None or isinstance(self.hires, HiresFix), "hires: a dict or None")
        if isinstance(self.controlnet, Mapping):
            object.__setattr__(self, "controlnet", ControlNetSpec(**self.controlnet))
        _check(
            self.controlnet is None or isinstance(self.controlnet, ControlNetSpec),
            "controlnet: a dict or None",
        )
        object.__setattr__(self, "loras", _lora_pairs(self.loras))
        object.__setattr__(self, "embeddings", _embedding_pairs(self.embeddings))
        object.__setattr__(self, "extra_params", dict(self.extra_params))
        try:
            from workers.imaging.samplers import resolve_sampler
        except ImportError:  # pragma: no cover - samplers ships with this package
            return
        try:
            resolve_sampler(self.sampler, self.schedule_type)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    @property
    def n_images(self) -> int:
        return self.batch_count * self.batch_size

    def with_seed(self) -> GenerationRequest:
        """This request with a concrete seed: a random one when ``seed`` is −1."""
        if self.seed != -1:
            return self
        return replace(self, seed=secrets.randbelow(MAX_SEED + 1))

    def seeds(self) -> list[int]:
        """The seed of each image, A1111-style: ``seed + i`` (call on a resolved request)."""
        if self.seed == -1:
            raise InvalidRequest("resolve the seed first (with_seed)")
        return [self.seed + i for i in range(self.n_images)]


def _lora_pairs(loras: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``(path, weight)`` pairs checked and normalised to ``(str, float)``."""
    pairs = []
    for item in loras:
        _check(isinstance(item, tuple | list) and len(item) == 2, "loras: (path, weight) pairs")
        path, weight = item
        _check(isinstance(path, str | os.PathLike) and str(path) != "", "LoRA path required")
        _check(_is_number(weight) and -10 <= weight <= 10, "LoRA weight must be -10..10")
        pairs.append((str(path), float(weight)))
    return tuple(pairs)


def _embedding_pairs(embeddings: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``(name, path)`` pairs checked, one per name (names compare without case)."""
    by_name: dict[str, tuple[str, str]] = {}
    for item in embeddings:
        _check(isinstance(item, tuple | list) and len(item) == 2, "embeddings: (name, path) pairs")
        name, path = item
        _check(isinstance(name, str) and name.strip() != "", "embedding name required")
        _check(isinstance(path, str | os.PathLike) and str(path) != "", "embedding path required")
        name, path = name.strip(), str(path)
        previous = by_name.setdefault(name.lower(), (name, path))
        _check(previous[1] == path, f"embedding {name!r} given twice with different files")
    return tuple(by_name.values())


@dataclass
class GeneratedImage:
    """One generated image with the seed it was made with and its A1111 infotext parameters."""

    image: Any  # PIL image
    seed: int
    index: int  # position within its request (0 .. batch_count × batch_size − 1)
    params: dict[str, Any]
    prompt: str = ""
    negative_prompt: str = ""

    @property
    def infotext(self) -> str:
        from workers.imaging.infotext import build_infotext

        return build_infotext(self.prompt, self.negative_prompt, self.params)
