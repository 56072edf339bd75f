"""Stable Diffusion generation with A1111's controls, as plain functions over diffusers pipelines.

- :class:`GenerationRequest`: what a txt2img/img2img job asks for (validated on creation).
- :func:`load_pipeline`: a diffusers folder or a single ``.safetensors`` checkpoint; pickle-based
  checkpoints (``.ckpt``, ``.pt``, ``.bin``, ...) are refused.
- :func:`generate_images`: one request → :class:`GeneratedImage` per image, with A1111 prompt
  weights, sampler names, per-image seeds (``seed + i``), img2img, hi-res fix (latent, Lanczos or
  an image upscaler such as ESRGAN), ControlNet, LoRAs, textual-inversion embeddings by name,
  per-step progress with small previews, and cancel at the next step.
- :func:`generate_batch`: several compatible requests in one pipeline call, each getting exactly
  the images it would have had alone.

Determinism. Every image has its own ``torch.Generator`` (on the pipeline's device) seeded with
its seed, so an image's noise does not depend on its batch. On CPU the arithmetic is made
independent of the batch as well: BLAS picks other kernels for matrices with very few rows (the
per-image time-embedding layers see one row per image), and oneDNN another convolution for a
batch of one. While a pipeline runs here, those layers compute one row at a time, the UNet never
sees a batch of one, and the VAE encodes and decodes one image at a time; so the same request
gives the same pixels alone or inside a batch. (On CUDA, cuBLAS may still choose kernels by
batch size: batched images then match solo ones up to rounding.) Loaded weights are moved from
the memory-mapped files into aligned memory, so a model's pixels do not depend on the file it
came from (a diffusers folder or a single checkpoint).

Pure code: no Django, no Celery; torch and diffusers are imported inside functions.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import math
import os
import secrets
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workers.ml.reporting import JobCancelled

__all__ = [
    "ControlNetSpec",
    "GeneratedImage",
    "GenerationCancelled",
    "GenerationRequest",
    "HiresFix",
    "ImageUpscaler",
    "InvalidRequest",
    "ModelRefused",
    "PICKLE_SUFFIXES",
    "canny_image",
    "generate_batch",
    "generate_images",
    "load_pipeline",
]

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})
UPSCALERS = {"latent": "Latent", "lanczos": "Lanczos"}  # value → A1111's infotext name
CONTROL_TYPES = ("canny", "image")  # "image": the control image is used as it is
MAX_SIDE = 4096
MAX_STEPS = 150
MAX_BATCH_SIZE = 64
MAX_BATCH_COUNT = 100
MAX_SEED = 2**32 - 1
DEFAULT_PREVIEW_INTERVAL = 0.5  # seconds between previews (at most two a second)
PREVIEW_MAX_LATENT_SIDE = 32  # previews decode at most a 32×32 latent (256 px for SD)
MAX_EMBEDDING_VECTORS = 75  # one prompt chunk; A1111 cannot use a longer embedding either
EMBEDDING_TOKEN = "<atelier-ti-{}>"  # the private tokens an embedding's vectors are written as

# A1111's "Approx cheap" latent → RGB factors for SD 1.x/2.x (scaling factor 0.18215) and SDXL.
_SD_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))  # fmt: skip
_SDXL_LATENT_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188))  # fmt: skip


try:  # one error type for "this model will not be loaded", shared with the LLM side
    from workers.ml.models import ModelRefused
except ImportError:  # pragma: no cover - workers.ml is part of the same package

    class ModelRefused(Exception):  # type: ignore[no-redef]
        """A model file or folder that will not be loaded; the message says why."""


class InvalidRequest(ValueError):
    """A generation request with a value out of range; the message names the field."""


class GenerationCancelled(JobCancelled):
    """The job was asked to stop; raised at the next denoising step instead of returning."""

    def __init__(self, message: str = "generation cancelled", *, steps_done: int = 0) -> None:
        super().__init__(message)
        self.steps_done = steps_done


# --------------------------------------------------------------------------------------------
# Requests and results
# --------------------------------------------------------------------------------------------


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
        loras = []
        for item in self.loras:
            _check(isinstance(item, tuple | list) and len(item) == 2, "loras: (path, weight) pairs")
            path, weight = item
            _check(isinstance(path, str | os.PathLike) and str(path) != "", "LoRA path required")
            _check(_is_number(weight) and -10 <= weight <= 10, "LoRA weight must be -10..10")
            loras.append((str(path), float(weight)))
        object.__setattr__(self, "loras", tuple(loras))
        embeddings: dict[str, tuple[str, str]] = {}
        for item in self.embeddings:
            _check(
                isinstance(item, tuple | list) and len(item) == 2, "embeddings: (name, path) pairs"
            )
            name, path = item
            _check(isinstance(name, str) and name.strip() != "", "embedding name required")
            _check(
                isinstance(path, str | os.PathLike) and str(path) != "", "embedding path required"
            )
            name, path = name.strip(), str(path)
            previous = embeddings.setdefault(name.lower(), (name, path))
            _check(previous[1] == path, f"embedding {name!r} given twice with different files")
        object.__setattr__(self, "embeddings", tuple(embeddings.values()))
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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


# CPU kernels may split a loop by the address of their operands: MKL (run without its
# conditional numerical reproducibility mode) rounds the one-row SGEMM of the time-embedding
# layers differently when the weight starts off a 16-byte boundary.
# safetensors hands out CPU tensors that live at their offset in the memory-mapped file, which
# is only 4-byte aligned and depends on the file's layout: the same UNet from a diffusers folder
# and from a single-file checkpoint then gave images one 8-bit level apart. Weights are moved to
# torch's own 64-byte aligned memory, so the arithmetic depends on the values, not on the file.
_ALIGNMENT = 64


def _aligned(tensor: Any) -> Any:
    """``tensor``, copied to torch's aligned memory when it is a CPU tensor off the boundary."""
    if tensor.device.type != "cpu" or tensor.data_ptr() % _ALIGNMENT == 0:
        return tensor
    return tensor.clone()  # same strides, new (aligned) storage


def _align_weights(*modules: Any) -> None:
    """Every CPU parameter and buffer of ``modules`` in aligned memory (see ``_ALIGNMENT``)."""
    import torch

    for module in modules:
        if not isinstance(module, torch.nn.Module):
            continue
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.data = _aligned(tensor.data)


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelRefused(
            f"{path.name}: {path.suffix} checkpoints are Python pickles, which can run arbitrary "
            "code when loaded; Atelier loads only .safetensors. Convert it to safetensors "
            "(or use a diffusers folder with .safetensors weights) and register that instead."
        )


def _model_family_of_class(class_name: str) -> str:
    return "sdxl" if "XL" in class_name else "sd"


def _single_file_family(path: Path) -> str:
    """The family ("sd" or "sdxl") from a checkpoint's tensor names; reads the header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:  # noqa: BLE001 - a broken or non-safetensors file
        raise ModelRefused(f"{path.name}: not a readable safetensors file ({exc})") from exc
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        return "sdxl"
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ModelRefused(
            f"{path.name}: not a Stable Diffusion checkpoint (no model.diffusion_model weights); "
            "LoRAs, VAEs and embeddings are registered as such, not as base models"
        )
    return "sd"


def _check_folder(folder: Path) -> str:
    """Check a diffusers folder: every weighted component has safetensors. Returns the family."""
    import json

    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelRefused(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    try:
        spec = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"{index}: unreadable ({exc})") from exc
    class_name = str(spec.get("_class_name", ""))
    if "custom_pipeline" in spec or "auto_map" in spec:
        raise ModelRefused(f"{folder}: custom pipeline code is never run")
    for name, value in spec.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            continue
        weights = [p for p in sub.iterdir() if p.is_file()]
        pickles = [p for p in weights if p.suffix.lower() in PICKLE_SUFFIXES]
        safes = [p for p in weights if p.suffix == ".safetensors"]
        if pickles and not safes:
            raise ModelRefused(
                f"{name}/{pickles[0].name}: pickle weights are refused and this component has "
                "no .safetensors; convert it to safetensors"
            )
    return _model_family_of_class(class_name)


def _classes(family: str) -> dict[str, type]:
    import diffusers

    if family == "sdxl":
        names = {
            "txt2img": "StableDiffusionXLPipeline",
            "img2img": "StableDiffusionXLImg2ImgPipeline",
            "controlnet": "StableDiffusionXLControlNetPipeline",
            "controlnet_img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
        }
    else:
        names = {
            "txt2img": "StableDiffusionPipeline",
            "img2img": "StableDiffusionImg2ImgPipeline",
            "controlnet": "StableDiffusionControlNetPipeline",
            "controlnet_img2img": "StableDiffusionControlNetImg2ImgPipeline",
        }
    return {kind: getattr(diffusers, name) for kind, name in names.items()}


def _family(pipe: Any) -> str:
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"


_FAMILY_NAMES = {"sd": "Stable Diffusion 1.x/2.x", "sdxl": "SDXL"}


def _single_file_config(
    source: Path, family: str, config: str | os.PathLike[str] | None
) -> dict[str, Any]:
    """``from_single_file`` arguments for a checkpoint's configuration.

    A local diffusers folder is checked (safetensors only, no custom code, same family) and
    used without the hub (its tokenizer, scheduler and component configs). Without one, diffusers
    would look the matching configuration up on the hub: offline that is refused here, at once,
    rather than after diffusers' retries.
    """
    from workers.ml.models import hub_allowed

    if config is None:
        if hub_allowed():
            return {}
        raise ModelRefused(
            f"{source.name}: a single-file checkpoint needs its configuration, which diffusers "
            "fetches from the Hugging Face hub; offline, pass config= a local diffusers folder of "
            f"the same family ({_FAMILY_NAMES[family]}), e.g. the base model it was fine-tuned from"
        )
    folder = Path(config).expanduser()
    if folder.is_dir():
        config_family = _check_folder(folder)
        if config_family != family:
            raise ModelRefused(
                f"{source.name} is a {_FAMILY_NAMES[family]} checkpoint but its config "
                f"{folder.name} is a {_FAMILY_NAMES[config_family]} pipeline folder"
            )
        return {"config": str(folder), "local_files_only": True}
    if not hub_allowed():
        raise ModelRefused(
            f"config {config}: not a local diffusers folder (offline, a hub id cannot be fetched)"
        )
    return {"config": str(config)}  # a hub repo id


def load_pipeline(
    path: str | os.PathLike[str],
    device: Any = "auto",
    dtype: Any = "auto",
    *,
    config: str | os.PathLike[str] | None = None,
):
    """Load a Stable Diffusion (1.x/2.x) or SDXL pipeline from safetensors weights only.

    ``path`` is a diffusers folder (``model_index.json``) or a single ``.safetensors``
    checkpoint, loaded with ``from_single_file``; ``config`` is a local diffusers folder giving
    the single file's configuration: its tokenizer, scheduler and component shapes (required
    offline: otherwise diffusers looks the matching configuration up on the hub; a base model of
    the same family does). ``.ckpt``/``.pt``/``.bin`` and other pickle files raise
    :class:`ModelRefused`. ``device``/``dtype`` "auto": CUDA with bf16/fp16 when present, else
    CPU float32. The safety checker is not loaded (moderation is the review stage's job).
    """

    from workers.ml.models import resolve_device, resolve_dtype

    source = Path(path).expanduser()
    _refuse_pickle(source)
    if not source.exists():
        raise ModelRefused(f"{source}: no such file or folder")
    target_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target_device)

    if source.is_file():
        if source.suffix.lower() != ".safetensors":
            raise ModelRefused(f"{source.name}: a single-file model must be a .safetensors file")
        family = _single_file_family(source)
        cls = _classes(family)["txt2img"]
        kwargs: dict[str, Any] = {
            "dtype": torch_dtype,
            **_single_file_config(source, family, config),
        }
        if family == "sd":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = cls.from_single_file(str(source), **kwargs)
        except Exception as exc:
            raise ModelRefused(
                f"{source.name}: cannot be loaded as {_FAMILY_NAMES[family]}: {exc}"
            ) from exc
    else:
        family = _check_folder(source)
        cls = _classes(family)["txt2img"]
        kwargs = {"dtype": torch_dtype, "use_safetensors": True}
        if family == "sd":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = cls.from_pretrained(str(source), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelRefused(f"{source}: cannot be loaded: {exc}") from exc
    pipe.to(target_device)
    _align_weights(*pipe.components.values())
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------
# Batch-independent arithmetic
# --------------------------------------------------------------------------------------------

# Modules whose matrices have one row per image: BLAS uses other kernels for 1-5 rows.
_PER_IMAGE_MODULES = ("time_embedding", "add_embedding", "class_embedding")
_PER_IMAGE_SUFFIXES = (".time_emb_proj",)
_patch_lock = threading.Lock()


def _row_wise(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A forward that computes each row (image) on its own; identical rows are computed once."""
    import torch

    def wrapped(x, *args, **kwargs):
        if not torch.is_tensor(x) or x.ndim == 0 or x.shape[0] <= 1:
            return forward(x, *args, **kwargs)
        n = x.shape[0]

        def row(a, i):
            return a[i : i + 1] if torch.is_tensor(a) and a.ndim > 0 and a.shape[0] == n else a

        others = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        if all(torch.equal(t, t[:1].expand_as(t)) for t in (x, *others) if t.shape[:1] == (n,)):
            out = forward(row(x, 0), *[row(a, 0) for a in args], **kwargs)
            return out.expand(n, *out.shape[1:])
        outs = [
            forward(
                row(x, i), *[row(a, i) for a in args], **{k: row(v, i) for k, v in kwargs.items()}
            )
            for i in range(n)
        ]
        return torch.cat(outs)

    return wrapped


def _never_single(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A UNet/ControlNet forward that pads a batch of one to two (oneDNN picks another
    convolution for a single image) and returns the first row."""
    import torch

    def wrapped(sample, timestep, encoder_hidden_states, *args, **kwargs):
        if sample.shape[0] != 1:
            return forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

        def pad(a):
            if torch.is_tensor(a) and a.ndim > 0 and a.shape[0] == 1:
                return torch.cat([a, a])
            if isinstance(a, dict):
                return {k: pad(v) for k, v in a.items()}
            if isinstance(a, list | tuple):  # ControlNet residuals for the UNet
                return type(a)(pad(v) for v in a)
            return a

        out = forward(
            pad(sample),
            pad(timestep),
            pad(encoder_hidden_states),
            *[pad(a) for a in args],
            **{k: pad(v) for k, v in kwargs.items()},
        )
        return _first_row(out)

    return wrapped


def _first_row(out: Any) -> Any:
    import torch

    if torch.is_tensor(out):
        return out[:1]
    if isinstance(out, tuple):
        return tuple(_first_row(o) for o in out)
    if isinstance(out, list):
        return [_first_row(o) for o in out]
    if hasattr(out, "to_tuple"):  # a diffusers BaseOutput
        return type(out)(**{k: _first_row(v) for k, v in out.items()})
    return out


@contextlib.contextmanager
def _batch_invariant(*models: Any) -> Iterator[None]:
    """While inside, the given UNet/ControlNet models compute each image independently of its
    batch (see the module docstring). Patches instance ``forward`` attributes and restores them."""
    patched: list[tuple[Any, bool, Any]] = []
    with _patch_lock:
        try:
            for model in models:
                if model is None:
                    continue
                for name, module in model.named_modules():
                    if name in _PER_IMAGE_MODULES or name.endswith(_PER_IMAGE_SUFFIXES):
                        had = "forward" in module.__dict__
                        patched.append((module, had, module.__dict__.get("forward")))
                        module.forward = _row_wise(module.forward)
                had = "forward" in model.__dict__
                patched.append((model, had, model.__dict__.get("forward")))
                model.forward = _never_single(model.forward)
        except Exception:
            _restore(patched)
            raise
    try:
        yield
    finally:
        with _patch_lock:
            _restore(patched)


def _restore(patched: list[tuple[Any, bool, Any]]) -> None:
    for module, had, previous in reversed(patched):
        if had:
            module.forward = previous
        else:
            module.__dict__.pop("forward", None)
    patched.clear()


# --------------------------------------------------------------------------------------------
# Prompts, LoRAs, images
# --------------------------------------------------------------------------------------------


def _strip_lora_tags(prompt: str) -> str:
    try:
        from workers.imaging.prompts import extract_loras
    except ImportError:  # pragma: no cover
        return prompt
    return extract_loras(prompt)[0]


def _encode(pipe: Any, prompt: str, negative: str, clip_skip: int) -> dict[str, Any]:
    """Embeddings for one prompt and its negative, as pipeline keyword arguments (one row each)."""
    prompt, negative = _strip_lora_tags(prompt), _strip_lora_tags(negative)
    device = pipe._execution_device
    if _family(pipe) == "sdxl":  # two encoders: the pipeline's own (unweighted) encoding
        pe, npe, ppe, nppe = pipe.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative,
            clip_skip=clip_skip - 1 or None,
        )
        return {
            "prompt_embeds": pe,
            "negative_prompt_embeds": npe,
            "pooled_prompt_embeds": ppe,
            "negative_pooled_prompt_embeds": nppe,
        }
    try:
        from workers.imaging.prompts import encode_weighted
    except ImportError:  # pragma: no cover - prompts ships with this package
        pe, npe = pipe.encode_prompt(
            prompt, device, 1, True, negative, clip_skip=clip_skip - 1 or None
        )
    else:
        pe, npe = encode_weighted(pipe, prompt, negative, clip_skip=clip_skip, device=device)
    return {"prompt_embeds": pe, "negative_prompt_embeds": npe}


def _read_lora(path: str) -> dict[str, Any]:
    """A LoRA's tensors from a .safetensors file (or the one inside a folder); pickle refused."""
    from safetensors.torch import load_file

    source = Path(path).expanduser()
    _refuse_pickle(source)
    if source.is_dir():
        files = sorted(source.glob("*.safetensors"))
        if not files:
            raise ModelRefused(f"{source}: no .safetensors LoRA weights in this folder")
        preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
        source = (preferred or files)[0]
    if source.suffix.lower() != ".safetensors" or not source.is_file():
        raise ModelRefused(f"{source}: a LoRA must be a .safetensors file")
    return {name: _aligned(tensor) for name, tensor in load_file(str(source)).items()}


@contextlib.contextmanager
def _loras_applied(pipe: Any, loras: Sequence[tuple[str, float]]) -> Iterator[None]:
    """Load the LoRAs as adapters with their weights; unload them afterwards, whatever happens."""
    if not loras:
        yield
        return
    names: list[str] = []
    try:
        for path, _weight in loras:
            name = f"atelier_{uuid.uuid4().hex[:10]}"
            pipe.load_lora_weights(_read_lora(path), adapter_name=name)
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[w for _, w in loras])
        yield
    finally:
        if names:
            with contextlib.suppress(Exception):
                pipe.delete_adapters(names)
            remaining = {}
            with contextlib.suppress(Exception):
                remaining = {k: v for k, v in pipe.get_list_adapters().items() if v}
            if not remaining:  # drop the LoRA wrappers: the modules are as they were loaded
                pipe.unload_lora_weights()


# --------------------------------------------------------------------------------------------
# Textual-inversion embeddings
# --------------------------------------------------------------------------------------------
#
# Not diffusers' load_textual_inversion/unload_textual_inversion: on an SD-sized text encoder
# (49,408 tokens) that pair took 2-4 s per request on CPU (mean-resizing the embedding matrix,
# rebuilding the fast tokenizer), its unload left a multi-vector embedding's extra tokens
# behind and the encoder's vocab_size enlarged, and a name is only an added token (vocabulary
# clashes, case, words inside words). Instead an embedding's vectors are written into the
# prompt as private tokens (EMBEDDING_TOKEN) known only to a cached copy of the tokenizer, and
# while the prompt is encoded the text encoder's token lookup returns the vectors for those ids.
# The loaded pipeline's tokenizer, weights and config are never changed.


@dataclass
class _Embedding:
    """One textual-inversion file: its vectors per text encoder and A1111's short hash."""

    name: str
    vectors: dict[str, Any]  # "clip" (SD 1.x/2.x) or "clip_l"/"clip_g" (SDXL) → (n, width)
    short_hash: str  # the first 12 hex digits of the file's sha256, as A1111's "TI hashes"

    @property
    def n_vectors(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])


def _read_embedding(name: str, path: str) -> _Embedding:
    """An embedding file's vectors (A1111 ``emb_params``/``string_to_param``, diffusers
    ``{token: vectors}``, SDXL ``clip_l``/``clip_g``); pickle and other files refused."""
    source = Path(path).expanduser()
    _refuse_pickle(source)
    if source.suffix.lower() != ".safetensors" or not source.is_file():
        raise ModelRefused(f"embedding {name}: {source} is not a .safetensors file")
    stat = source.stat()
    return _read_embedding_file(name, str(source.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)  # the same few negative embeddings come with most requests
def _read_embedding_file(name: str, path: str, _mtime_ns: int, _size: int) -> _Embedding:
    from safetensors.torch import load

    data = Path(path).read_bytes()
    try:
        state = load(data)
    except Exception as exc:  # noqa: BLE001 - a broken or non-safetensors file
        raise ModelRefused(f"embedding {name}: not a readable safetensors file ({exc})") from exc
    if "clip_l" in state or "clip_g" in state:
        vectors = {k: state[k] for k in ("clip_l", "clip_g") if k in state}
    else:
        key = next((k for k in ("emb_params", "string_to_param.*") if k in state), None)
        if key is None and len(state) == 1:  # diffusers: {"<token>": vectors}
            key = next(iter(state))
        if key is None:
            raise ModelRefused(
                f"embedding {name}: not a textual-inversion embedding (no emb_params, "
                f"clip_l/clip_g or single tensor; found {', '.join(sorted(state)[:6])})"
            )
        vectors = {"clip": state[key]}
    for key, value in vectors.items():
        if value.ndim == 1:
            value = value[None]
        if (
            value.ndim != 2
            or not value.is_floating_point()
            or not 1 <= value.shape[0] <= MAX_EMBEDDING_VECTORS
        ):
            raise ModelRefused(
                f"embedding {name}: {key} must be 1..{MAX_EMBEDDING_VECTORS} vectors "
                f"(a float tensor [n, width]), not {value.dtype} {list(value.shape)}"
            )
        vectors[key] = value
    if len({v.shape[0] for v in vectors.values()}) != 1:
        raise ModelRefused(f"embedding {name}: clip_l and clip_g have different vector counts")
    return _Embedding(name, vectors, hashlib.sha256(data).hexdigest()[:12])


def _text_encoders(pipe: Any) -> list[tuple[str, str, str]]:
    """``(tokenizer attribute, text encoder attribute, embedding key)`` of the pipeline's CLIPs."""
    if _family(pipe) == "sdxl":
        pairs = [
            ("tokenizer", "text_encoder", "clip_l"),
            ("tokenizer_2", "text_encoder_2", "clip_g"),
        ]
    else:
        pairs = [("tokenizer", "text_encoder", "clip")]
    return [
        p
        for p in pairs
        if getattr(pipe, p[0], None) is not None and getattr(pipe, p[1], None) is not None
    ]


def _check_fits(pipe: Any, embedding: _Embedding) -> None:
    family = _family(pipe)
    for _, encoder_name, key in _text_encoders(pipe):
        vectors = embedding.vectors.get(key)
        if vectors is None:
            if family == "sd":
                reason = "it is an SDXL embedding (clip_l/clip_g vectors)"
            elif "clip" in embedding.vectors:
                reason = "it is an SD 1.x/2.x embedding (no clip_l/clip_g vectors)"
            else:
                reason = f"it has no {key} vectors"
            raise ModelRefused(
                f"embedding {embedding.name}: {reason}; this is a {_FAMILY_NAMES[family]} model"
            )
        width = getattr(pipe, encoder_name).get_input_embeddings().weight.shape[-1]
        if vectors.shape[-1] != width:
            raise ModelRefused(
                f"embedding {embedding.name}: vectors of width {vectors.shape[-1]}, but this "
                f"model's text encoder has width {width}: it was made for another model family"
            )


def _used_embeddings(pipe: Any, req: GenerationRequest) -> list[_Embedding]:
    """The request's embeddings whose names its prompt or negative prompt uses, read and checked."""
    if not req.embeddings:
        return []
    from workers.imaging.prompts import extract_embeddings

    paths = dict(req.embeddings)
    names = extract_embeddings(f"{req.prompt}\n{req.negative_prompt}", paths)
    used = [_read_embedding(name, paths[name]) for name in names]
    for embedding in used:
        _check_fits(pipe, embedding)
    return used


# Per tokenizer: a copy holding the private tokens (ids right after the original vocabulary).
_token_pools: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()
_token_pools_lock = threading.Lock()


def _token_pool(tokenizer: Any, n: int) -> tuple[Any, list[str]]:
    """A copy of ``tokenizer`` that knows the first ``n`` private tokens, and those tokens; token
    ``i`` has id ``len(tokenizer) + i``. The copy is made once and grows as needed."""
    tokens = [EMBEDDING_TOKEN.format(i) for i in range(n)]
    size = len(tokenizer)
    with _token_pools_lock:
        entry = _token_pools.get(tokenizer)
        if entry is None or entry[0] != size:  # new, or the original tokenizer was changed
            entry = (size, copy.deepcopy(tokenizer))
            _token_pools[tokenizer] = entry
        pool = entry[1]
        have = len(pool) - size
        if n > have:
            pool.add_tokens(tokens[have:])
        ids = pool.convert_tokens_to_ids(tokens)
    if ids != list(range(size, size + n)):
        raise ModelRefused(
            "this model's tokenizer does not number added tokens after its vocabulary; "
            "textual-inversion embeddings cannot be used with it"
        )
    return pool, tokens


def _embedding_text(used: Sequence[_Embedding], tokens: Sequence[str]) -> Callable[[str], str]:
    """A function writing each used embedding's name in a prompt as its private tokens."""
    from workers.imaging.prompts import replace_embeddings

    replacements, start = {}, 0
    for embedding in used:
        replacements[embedding.name] = " ".join(tokens[start : start + embedding.n_vectors])
        start += embedding.n_vectors
    return lambda text: replace_embeddings(text, replacements)


def _with_rows(forward: Callable[..., Any], first_id: int, table: Any) -> Callable[..., Any]:
    """A token-embedding forward that gives ``table[id - first_id]`` for ids from ``first_id``
    (the private tokens) and the original lookup for every other id."""
    import torch

    def wrapped(input_ids, *args, **kwargs):
        extra = input_ids >= first_id
        if not bool(extra.any()):
            return forward(input_ids, *args, **kwargs)
        out = forward(input_ids.masked_fill(extra, 0), *args, **kwargs)
        index = (input_ids - first_id).clamp(0, table.shape[0] - 1)
        return torch.where(extra.unsqueeze(-1), table.to(out.dtype)[index], out)

    return wrapped


@contextlib.contextmanager
def _embeddings_applied(pipe: Any, used: Sequence[_Embedding]) -> Iterator[Callable[[str], str]]:
    """While inside, the pipeline encodes the embeddings' private tokens as their vectors; yields
    the function that writes a prompt's embedding names as those tokens. Restored afterwards,
    whatever happens. Only prompt encoding belongs inside (the tokenizers are swapped)."""
    if not used:
        yield lambda text: text
        return
    import torch

    n = sum(e.n_vectors for e in used)
    swapped: list[tuple[str, Any]] = []
    patched: list[tuple[Any, bool, Any]] = []
    eos_ids: list[tuple[Any, Any]] = []
    tokens: list[str] = []
    try:
        for tokenizer_name, encoder_name, key in _text_encoders(pipe):
            tokenizer, encoder = getattr(pipe, tokenizer_name), getattr(pipe, encoder_name)
            pool, tokens = _token_pool(tokenizer, n)
            module = encoder.get_input_embeddings()
            weight = module.weight
            table = torch.cat([e.vectors[key] for e in used]).to(weight.device, weight.dtype)
            with _patch_lock:
                patched.append(
                    (module, "forward" in module.__dict__, module.__dict__.get("forward"))
                )
                module.forward = _with_rows(module.forward, len(tokenizer), table)
            # Old CLIP configs (eos_token_id 2) pool at the largest token id, which would now be
            # a private token: pool at the first end token, as without embeddings (and A1111).
            text_model = getattr(encoder, "text_model", encoder)
            eos = tokenizer.eos_token_id
            if getattr(text_model, "eos_token_id", None) == 2 and eos not in (None, 2):
                eos_ids.append((text_model, text_model.eos_token_id))
                text_model.eos_token_id = eos
            swapped.append((tokenizer_name, tokenizer))
            setattr(pipe, tokenizer_name, pool)
        yield _embedding_text(used, tokens)
    finally:
        for tokenizer_name, tokenizer in reversed(swapped):
            setattr(pipe, tokenizer_name, tokenizer)
        for text_model, eos in eos_ids:
            text_model.eos_token_id = eos
        with _patch_lock:
            _restore(patched)


def _encode_request(pipe: Any, req: GenerationRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's prompt embeddings, its textual-inversion embeddings applied, and the
    infotext params that adds (A1111's ``TI hashes``)."""
    used = _used_embeddings(pipe, req)
    with _embeddings_applied(pipe, used) as rewrite:
        embeds = _encode(
            pipe,
            rewrite(_strip_lora_tags(req.prompt)),
            rewrite(_strip_lora_tags(req.negative_prompt)),
            req.clip_skip,
        )
    params = {"TI hashes": ", ".join(f"{e.name}: {e.short_hash}" for e in used)} if used else {}
    return embeds, params


def canny_image(image: Any, low: int = 100, high: int = 200, size: tuple[int, int] | None = None):
    """OpenCV Canny edges of an image as a 3-channel PIL image (white edges on black)."""
    import cv2
    import numpy as np
    from PIL import Image

    source = image.convert("RGB")
    if size is not None and source.size != tuple(size):
        source = source.resize(tuple(size), Image.Resampling.LANCZOS)
    gray = cv2.cvtColor(np.asarray(source), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def _control_image(spec: ControlNetSpec, size: tuple[int, int]):
    from PIL import Image

    if spec.type == "canny":
        return canny_image(spec.image, spec.low, spec.high, size)
    image = spec.image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


# ControlNets given as folders: the two most recently used stay loaded (the platform's model
# cache can pass a loaded ControlNetModel instead).
_controlnet_cache: OrderedDict[str, Any] = OrderedDict()
_controlnet_lock = threading.Lock()
CONTROLNET_CACHE_SIZE = 2


def _controlnet_model(spec: ControlNetSpec, pipe: Any):
    model = spec.model
    if model is None:
        raise InvalidRequest("controlnet needs a model (a ControlNetModel or a folder)")
    if not isinstance(model, str | os.PathLike):
        return model
    from diffusers import ControlNetModel

    folder = Path(model).expanduser()
    _refuse_pickle(folder)
    key = f"{folder.resolve()}|{pipe.device}|{pipe.unet.dtype}"
    with _controlnet_lock:
        if key not in _controlnet_cache:
            loaded = ControlNetModel.from_pretrained(
                str(folder), use_safetensors=True, dtype=pipe.unet.dtype
            )
            _controlnet_cache[key] = loaded.to(pipe.device)
            _align_weights(loaded)
            while len(_controlnet_cache) > CONTROLNET_CACHE_SIZE:
                _controlnet_cache.popitem(last=False)
        _controlnet_cache.move_to_end(key)
        return _controlnet_cache[key]


# --------------------------------------------------------------------------------------------
# Latents ↔ images
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _vae_precision(pipe: Any) -> Iterator[Any]:
    """The VAE, in float32 while inside when it is fp16 and its config asks for upcasting."""
    import torch

    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae
    finally:
        if upcast:
            vae.to(torch.float16)


def _decode(pipe: Any, latents: Any) -> list[Any]:
    """Latents → PIL images, one image at a time (the result never depends on the batch)."""
    import torch

    images = []
    with torch.no_grad(), _vae_precision(pipe) as vae:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        for row in latents:
            z = row[None].to(vae.dtype) / vae.config.scaling_factor + shift
            images.append(vae.decode(z, return_dict=False)[0])
    pixels = torch.cat(images).float()
    return pipe.image_processor.postprocess(pixels, output_type="pil")


def _encode_images(pipe: Any, images: Sequence[Any], seeds: Sequence[int]) -> Any:
    """PIL images → scaled latents, one at a time, sampling the posterior with each image's seed."""
    import torch

    device = pipe._execution_device
    rows = []
    with torch.no_grad(), _vae_precision(pipe) as vae:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        for image, seed in zip(images, seeds, strict=True):
            pixels = pipe.image_processor.preprocess(image).to(device=device, dtype=vae.dtype)
            generator = torch.Generator(device=device).manual_seed(seed)
            dist = vae.encode(pixels).latent_dist
            z = dist.sample(generator=generator)
            rows.append((z - shift) * vae.config.scaling_factor)
    return torch.cat(rows).to(pipe.unet.dtype)


def _preview(pipe: Any, latents: Any) -> Any:
    """A small preview of the first image from latents mid-denoising.

    SD and SDXL latents use A1111's "Approx cheap" linear map (no network); other VAEs decode a
    latent downscaled to at most 32×32. Sigma-scaled latents (Euler-type samplers) are brought
    back to unit scale first.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    z = latents[:1].detach().float()
    scheduler = pipe.scheduler
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index is not None and float(scheduler.init_noise_sigma) > 1.0:
        sigma = float(sigmas[min(index, len(sigmas) - 1)])
        z = z / math.sqrt(sigma**2 + 1.0)
    vae = pipe.vae
    scaling = float(vae.config.scaling_factor)
    factors = None
    if vae.config.latent_channels == 4 and abs(scaling - 0.18215) < 1e-4:
        factors = _SD_LATENT_RGB
    elif vae.config.latent_channels == 4 and abs(scaling - 0.13025) < 1e-4:
        factors = _SDXL_LATENT_RGB
    if factors is not None:
        matrix = torch.tensor(factors, dtype=torch.float32, device=z.device)
        rgb = torch.einsum("chw,cr->hwr", z[0], matrix)
        array = ((rgb + 1.0) * 127.5).clamp(0, 255).byte().cpu().numpy()
        return Image.fromarray(array)
    side = max(z.shape[-2:])
    if side > PREVIEW_MAX_LATENT_SIDE:
        factor = PREVIEW_MAX_LATENT_SIDE / side
        size = (max(1, round(z.shape[-2] * factor)), max(1, round(z.shape[-1] * factor)))
        z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        pixels = vae.decode(z.to(vae.dtype) / scaling, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels.float(), output_type="pil")[0]


# --------------------------------------------------------------------------------------------
# Progress, previews, cancel
# --------------------------------------------------------------------------------------------


class _Tracker:
    """Turns diffusers' per-step callbacks into job progress, previews and cancellation."""

    def __init__(
        self,
        planned: list[int],
        on_step: Callable[..., Any] | None,
        should_stop: Callable[[], bool] | None,
        on_preview: Callable[[Any], Any] | None,
        preview_interval: float,
    ) -> None:
        self.planned = planned  # steps per pass, in order; corrected when a pass starts
        self.pass_index = -1
        self.on_step = on_step
        self.should_stop = should_stop
        self.on_preview = on_preview
        self.preview_interval = preview_interval
        self.last_preview = time.monotonic()
        self.cancelled = False
        self.steps_done = 0

    @property
    def total(self) -> int:
        return sum(self.planned)

    def begin_pass(self) -> None:
        self.pass_index += 1
        self.check_stop()

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
            raise GenerationCancelled(steps_done=self.steps_done)

    def end_pass(self) -> None:
        if self.cancelled:
            raise GenerationCancelled(steps_done=self.steps_done)

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        actual = int(getattr(pipe, "num_timesteps", 0) or 0)
        if 0 <= self.pass_index < len(self.planned) and actual:
            self.planned[self.pass_index] = actual
        done = sum(self.planned[: self.pass_index]) + i + 1
        self.steps_done = done
        if self.on_step is not None:
            self.on_step(done, max(self.total, done))
        last_step = actual and i + 1 >= actual
        now = time.monotonic()
        if (
            self.on_preview is not None
            and not last_step
            and now - self.last_preview >= self.preview_interval
            and "latents" in kwargs
        ):
            self.last_preview = now
            self.on_preview(_preview(pipe, kwargs["latents"]))
        if self.should_stop is not None and self.should_stop():
            pipe._interrupt = True  # diffusers skips the remaining steps (private attribute)
            self.cancelled = True
        return {}


def _schedule_length(steps: int, strength: float) -> int:
    """The schedule length to give diffusers for img2img so that at least one step runs.

    diffusers runs ``int(steps * strength)`` steps, none when that is 0 (2 steps at 0.3); A1111
    always runs at least one: lengthen the schedule until one step falls inside the strength.
    """
    n = steps
    while int(n * strength) < 1 and n < MAX_STEPS * 100:
        n += 1
    return n


def _img2img_steps(steps: int, strength: float) -> int:
    n = _schedule_length(steps, strength)
    return min(int(n * strength), n)


def _planned_steps(req: GenerationRequest) -> list[int]:
    """Estimated denoising steps per pass of one pipeline call (corrected as passes start)."""
    first = (
        req.steps if req.init_image is None else _img2img_steps(req.steps, req.denoising_strength)
    )
    plan = [max(first, 1)]
    if req.hires is not None:
        plan.append(max(_img2img_steps(req.hires.steps or req.steps, req.hires.denoise), 1))
    return plan


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

_variants: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_variants_lock = threading.Lock()


def _variant(pipe: Any, kind: str, controlnet: Any = None):
    """A pipeline of another kind (img2img, ControlNet) sharing ``pipe``'s modules (from_pipe).

    Cached per pipeline; each call sets its own scheduler on the variant, so the loaded
    pipeline's scheduler is never changed.
    """
    with _variants_lock:
        cache = _variants.setdefault(pipe, {})
        found = cache.get(kind)
        # One variant per kind: a ControlNet variant is rebuilt for another ControlNet (so no
        # variant keeps an unused ControlNet alive).
        if found is None or (controlnet is not None and found.controlnet is not controlnet):
            cls = _classes(_family(pipe))[kind]
            extra = {"controlnet": controlnet} if controlnet is not None else {}
            # from_pipe casts the shared modules to its dtype argument (float32 by default):
            # keep them as loaded. Its "cast with to()" warning is noise here.
            with _quiet_diffusers():
                found = cls.from_pipe(pipe, dtype=pipe.unet.dtype, **extra)
            found.set_progress_bar_config(disable=True)
            cache[kind] = found
        return found


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


@dataclass
class _Job:
    """One image to make: its request, position and seed, and its prompt embeddings."""

    request: GenerationRequest
    owner: int  # the request's position in a generate_batch call (0 for generate_images)
    index: int
    seed: int
    embeds: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)  # infotext params found while encoding


def _number(value: float) -> float | int:
    """7.0 → 7, as A1111 writes whole numbers; other values unchanged."""
    return int(value) if float(value).is_integer() else value


def _params(
    req: GenerationRequest,
    seed: int,
    resolved: Any,
    controlnet: Any,
    computed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": resolved.sampler if resolved else req.sampler,
        "Schedule type": resolved.schedule_type if resolved else req.schedule_type,
        "CFG scale": _number(req.cfg_scale),
        "Seed": seed,
        "Size": f"{req.width}x{req.height}",
    }
    if req.init_image is not None:
        params["Denoising strength"] = _number(req.denoising_strength)
    if req.clip_skip > 1:
        params["Clip skip"] = req.clip_skip
    if req.hires is not None:
        tw, th = req.hires.target_size(req.width, req.height)
        params["Denoising strength"] = _number(req.hires.denoise)
        params["Hires upscale"] = _number(req.hires.scale)
        if req.hires.steps:
            params["Hires steps"] = req.hires.steps
        params["Hires upscaler"] = req.hires.upscaler_name
        params["Hires resize"] = f"{tw}x{th}"
    if controlnet is not None:
        module = "canny" if controlnet.type == "canny" else "none"
        model = controlnet.model
        model_name = Path(model).name if isinstance(model, str | os.PathLike) else "in-memory"
        params["ControlNet 0"] = (
            f"Module: {module}, Model: {model_name}, Weight: {_number(controlnet.scale)}, "
            f"Guidance Start: {controlnet.guidance_start}, Guidance End: {controlnet.guidance_end}"
            + (
                f", Threshold A: {controlnet.low}, Threshold B: {controlnet.high}"
                if module == "canny"
                else ""
            )
        )
    params.update(computed or {})
    params.update(req.extra_params)
    return params


def _resolve(req: GenerationRequest) -> Any:
    try:
        from workers.imaging.samplers import resolve_sampler
    except ImportError:  # pragma: no cover
        return None
    return resolve_sampler(req.sampler, req.schedule_type)


def _scheduler_for(pipe: Any, req: GenerationRequest) -> Any:
    from workers.imaging.samplers import make_scheduler

    return make_scheduler(req.sampler, pipe.scheduler, schedule_type=req.schedule_type)


def _stack_embeds(jobs: Sequence[_Job]) -> dict[str, Any]:
    import torch

    keys = jobs[0].embeds.keys()
    return {k: torch.cat([job.embeds[k] for job in jobs]) for k in keys}


def _generators(pipe: Any, seeds: Sequence[int]) -> list[Any]:
    import torch

    device = pipe._execution_device
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _run_jobs(pipe: Any, template: GenerationRequest, jobs: Sequence[_Job], tracker: _Tracker):
    """One pipeline call (two with hi-res fix) for jobs that share ``template``'s settings.

    Returns the final latents, one row per job.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    seeds = [job.seed for job in jobs]
    embeds = _stack_embeds(jobs)
    spec = template.controlnet if isinstance(template.controlnet, ControlNetSpec) else None
    controlnet = _controlnet_model(spec, pipe) if spec is not None else None
    size = (template.width, template.height)
    common: dict[str, Any] = {
        **embeds,
        "num_inference_steps": template.steps,
        "guidance_scale": template.cfg_scale,
        "output_type": "latent",
        "callback_on_step_end": tracker,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    if spec is not None:
        common.update(
            controlnet_conditioning_scale=spec.scale,
            control_guidance_start=spec.guidance_start,
            control_guidance_end=spec.guidance_end,
        )

    with _batch_invariant(pipe.unet, controlnet):
        # First pass: txt2img, or img2img from the init image.
        if template.init_image is None:
            kind = "txt2img" if spec is None else "controlnet"
            kwargs: dict[str, Any] = {"height": template.height, "width": template.width}
        else:
            kind = "img2img" if spec is None else "controlnet_img2img"
            init = template.init_image.convert("RGB")
            if init.size != size:
                init = init.resize(size, Image.Resampling.LANCZOS)  # A1111 "Just resize"
            kwargs = {
                "image": _encode_images(pipe, [init] * len(jobs), seeds),
                "strength": template.denoising_strength,
                "num_inference_steps": _schedule_length(
                    template.steps, template.denoising_strength
                ),
            }
        if spec is not None:
            control = _control_image(spec, size)
            kwargs["control_image" if kind == "controlnet_img2img" else "image"] = [control] * len(
                jobs
            )
        runner = _variant(pipe, kind, controlnet)
        runner.scheduler = _scheduler_for(pipe, template)
        tracker.begin_pass()
        latents = runner(**{**common, **kwargs}, generator=_generators(pipe, seeds)).images
        tracker.end_pass()

        # Hi-res fix: upscale, then img2img with its own steps and denoising strength.
        if template.hires is not None:
            hires = template.hires
            tw, th = hires.target_size(template.width, template.height)
            if hires.upscaler == "latent":
                factor = pipe.vae_scale_factor
                image_in = F.interpolate(
                    latents, size=(th // factor, tw // factor), mode="bilinear", antialias=False
                )
            else:
                upscaled = []
                for image in _decode(pipe, latents):
                    tracker.check_stop()  # an image upscaler (ESRGAN) can take a while
                    upscaled.append(_upscale_image(hires, image, (tw, th)))
                image_in = _encode_images(pipe, upscaled, seeds)
            kind = "img2img" if spec is None else "controlnet_img2img"
            kwargs = {"image": image_in, "strength": hires.denoise}
            if spec is not None:
                kwargs["control_image"] = [_control_image(spec, (tw, th))] * len(jobs)
            runner = _variant(pipe, kind, controlnet)
            runner.scheduler = _scheduler_for(pipe, template)
            tracker.begin_pass()
            latents = runner(
                **{
                    **common,
                    "num_inference_steps": _schedule_length(
                        hires.steps or template.steps, hires.denoise
                    ),
                },
                **kwargs,
                generator=_generators(pipe, seeds),
            ).images
            tracker.end_pass()
    if not torch.is_tensor(latents):  # pragma: no cover - output_type="latent" gives a tensor
        raise RuntimeError("the pipeline did not return latents")
    return latents


def _upscale_image(hires: HiresFix, image: Any, size: tuple[int, int]) -> Any:
    """A decoded first-pass image at the hi-res size: the upscaler callable (if any), then
    Lanczos to the exact size when the image is not that size yet."""
    from PIL import Image

    if not isinstance(hires.upscaler, str):
        out = hires.upscaler(image, size)
        if not hasattr(out, "convert") or not hasattr(out, "size"):
            raise TypeError(
                f"hires upscaler {hires.upscaler_name} returned {type(out).__name__}, "
                "not a PIL image"
            )
        image = out.convert("RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _finish(
    pipe: Any, jobs: Sequence[_Job], latents: Any, resolved: dict[int, Any]
) -> list[GeneratedImage]:
    images = _decode(pipe, latents)
    out = []
    for job, image in zip(jobs, images, strict=True):
        req = job.request
        spec = req.controlnet if isinstance(req.controlnet, ControlNetSpec) else None
        out.append(
            GeneratedImage(
                image=image,
                seed=job.seed,
                index=job.index,
                params=_params(req, job.seed, resolved.get(id(req)), spec, job.params),
                prompt=req.prompt,
                negative_prompt=req.negative_prompt,
            )
        )
    return out


def _generate_one(pipe: Any, req: GenerationRequest, tracker: _Tracker) -> list[GeneratedImage]:
    """One resolved request, ``batch_count`` calls of ``batch_size`` images, LoRAs applied."""
    with _loras_applied(pipe, req.loras):
        embeds, computed = _encode_request(pipe, req)
        resolved = {id(req): _resolve(req)}
        seeds = req.seeds()
        results: list[GeneratedImage] = []
        for batch in range(req.batch_count):
            start = batch * req.batch_size
            jobs = [
                _Job(req, 0, start + i, seeds[start + i], embeds, computed)
                for i in range(req.batch_size)
            ]
            latents = _run_jobs(pipe, req, jobs, tracker)
            results.extend(_finish(pipe, jobs, latents, resolved))
    return results


def generate_images(
    pipe: Any,
    req: GenerationRequest,
    *,
    on_step: Callable[..., Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: Callable[[Any], Any] | None = None,
    preview_interval: float = DEFAULT_PREVIEW_INTERVAL,
) -> list[GeneratedImage]:
    """Run one request: ``batch_count`` pipeline calls of ``batch_size`` images each.

    ``on_step(step, total)`` is called after every denoising step, counted over the whole job
    (all batches and hi-res passes); ``on_preview(image)`` gets a small PIL preview of the first
    image of the running batch at most every ``preview_interval`` seconds; when
    ``should_stop()`` turns true the pipeline stops at the next step and
    :class:`GenerationCancelled` (a ``JobCancelled``) is raised: no half-denoised image is
    returned. Images come back in order with their seeds (``seed + i``) and A1111 params.
    """
    if not isinstance(req, GenerationRequest):
        raise TypeError("req must be a GenerationRequest")
    req = req.with_seed()
    tracker = _Tracker(
        _planned_steps(req) * req.batch_count, on_step, should_stop, on_preview, preview_interval
    )
    return _generate_one(pipe, req, tracker)


def _chunk_count(pipe: Any, req: GenerationRequest, used: Sequence[_Embedding] = ()) -> int:
    """How many 77-token chunks the request's embeddings have (prompt and negative alike),
    with its textual-inversion embeddings (``used``) counted as their vectors."""
    if _family(pipe) == "sdxl":
        return 1
    try:
        from workers.imaging.prompts import tokenize_weighted
    except ImportError:  # pragma: no cover
        return 1
    texts = (_strip_lora_tags(req.prompt), _strip_lora_tags(req.negative_prompt))
    tokenizer = pipe.tokenizer
    if used:
        tokenizer, tokens = _token_pool(tokenizer, sum(e.n_vectors for e in used))
        rewrite = _embedding_text(used, tokens)
        texts = (rewrite(texts[0]), rewrite(texts[1]))
    return max(len(tokenize_weighted(tokenizer, text)) for text in texts)


def _batch_key(pipe: Any, req: GenerationRequest) -> tuple | None:
    """Requests with equal keys can share one pipeline call; None: this one runs alone."""
    if req.init_image is not None or req.controlnet is not None:
        return None
    used = _used_embeddings(pipe, req)
    return (
        req.loras,
        tuple(sorted((e.name.lower(), e.short_hash) for e in used)),
        req.width,
        req.height,
        req.sampler,
        req.schedule_type,
        req.steps,
        float(req.cfg_scale),
        req.hires.key() if req.hires is not None else None,
        _chunk_count(pipe, req, used),
    )


def generate_batch(
    pipe: Any,
    requests: Sequence[GenerationRequest],
    *,
    on_step: Callable[..., Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: Callable[[Any], Any] | None = None,
    preview_interval: float = DEFAULT_PREVIEW_INTERVAL,
    max_images_per_call: int = 32,
) -> list[list[GeneratedImage]]:
    """Run several requests, sharing pipeline calls between compatible ones.

    Requests with the same size, sampler, schedule, steps, CFG scale, hi-res settings, LoRAs,
    used embeddings and prompt length (in 77-token chunks), and no init image or ControlNet, are
    denoised together: their embeddings are concatenated, one generator per image, at most
    ``max_images_per_call`` images per call. Each request gets exactly the images (seeds,
    pixels, params) that :func:`generate_images` would give it alone; the others run alone.
    Results are in the order of ``requests``. ``on_step`` counts steps over all calls; a
    cancel stops everything (:class:`GenerationCancelled`).
    """
    if max_images_per_call < 1:
        raise ValueError("max_images_per_call must be at least 1")
    requests = [r.with_seed() for r in requests]
    results: list[list[GeneratedImage]] = [[] for _ in requests]

    groups: dict[tuple, list[int]] = {}
    alone: list[int] = []
    for i, req in enumerate(requests):
        key = _batch_key(pipe, req)
        if key is None:
            alone.append(i)
        else:
            groups.setdefault(key, []).append(i)

    # Plan every pass first, in the order they will run, so progress has a fixed total.
    planned: list[int] = []
    for members in groups.values():
        n_images = sum(requests[i].n_images for i in members)
        planned += _planned_steps(requests[members[0]]) * math.ceil(n_images / max_images_per_call)
    for i in alone:
        planned += _planned_steps(requests[i]) * requests[i].batch_count
    tracker = _Tracker(planned, on_step, should_stop, on_preview, preview_interval)

    for members in groups.values():
        template = requests[members[0]]
        with _loras_applied(pipe, template.loras):
            jobs: list[_Job] = []
            resolved: dict[int, Any] = {}
            for i in members:
                req = requests[i]
                embeds, computed = _encode_request(pipe, req)
                resolved[id(req)] = _resolve(req)
                jobs += [
                    _Job(req, i, k, seed, embeds, computed) for k, seed in enumerate(req.seeds())
                ]
            for start in range(0, len(jobs), max_images_per_call):
                chunk = jobs[start : start + max_images_per_call]
                latents = _run_jobs(pipe, template, chunk, tracker)
                for job, image in zip(chunk, _finish(pipe, chunk, latents, resolved), strict=True):
                    results[job.owner].append(image)
    for i in alone:
        results[i] = _generate_one(pipe, requests[i], tracker)
    return results
