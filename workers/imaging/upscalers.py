"""Super-resolution upscalers (ESRGAN family and the rest of spandrel's SR architectures).

Weights are single ``.safetensors`` files; spandrel identifies the architecture, scale and size
requirements from the tensor names and shapes. Pickle formats (``.pth``, ``.pt``, ``.ckpt``, ...)
are refused before anything reads them, like every other weight file on the platform
(workers.ml.models): spandrel's own file loader would ``torch.load`` them, so it is never used.

- :func:`inspect_upscaler`: validate a file and describe the model it holds.
- :func:`load_upscaler`: a spandrel descriptor on the device, in eval mode.
- :func:`upscale`: run it over an image in overlapping tiles, so memory follows the tile size
  and not the image size; any target factor (2× with a 4× model, 8× by running it twice).
- :func:`lanczos_upscale`: the plain resampling fallback, no model needed.
- :func:`build_tiny_esrgan`: a small deterministic ESRGAN for tests and demos.

Pure code: no Django, no Celery. torch and spandrel are imported inside functions.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.machinery
import importlib.util
import math
import os
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.common.safety import PICKLE_SUFFIXES
from workers.ml.models import ModelRefused, resolve_device, resolve_dtype
from workers.ml.reporting import JobCancelled

__all__ = [
    "MAX_SCALE",
    "ModelRefused",
    "build_tiny_esrgan",
    "inspect_upscaler",
    "lanczos_upscale",
    "load_upscaler",
    "upscale",
    "upscaler_hash",
]

#: The largest factor :func:`upscale` and :func:`lanczos_upscale` accept.
MAX_SCALE = 16.0
#: At most this many model passes for one upscale (A1111 stops at 3 too).
MAX_PASSES = 3

# ---------------------------------------------------------------- spandrel import

_SPANDREL_LOCK = threading.Lock()
_SPANDREL: types.ModuleType | None = None
_FAKE_TORCHVISION = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


def _needs_torchvision(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(
        "this spandrel architecture (LaMa or RestoreFormer) needs torchvision, "
        "which is not installed on this worker"
    )


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _spandrel() -> types.ModuleType:
    """The spandrel package, imported once per process (see the comment inside on torchvision)."""
    global _SPANDREL
    if _SPANDREL is not None:
        return _SPANDREL
    with _SPANDREL_LOCK:
        if _SPANDREL is not None:
            return _SPANDREL
        if importlib.util.find_spec("torchvision") is not None:
            import spandrel

            _SPANDREL = spandrel
            return spandrel
        # spandrel's __init__ imports every architecture, and two we never load (LaMa inpainting,
        # RestoreFormer face restoration) import torchvision.transforms.functional at import
        # time. torchvision is not installed here: the only CPU build is not reachable offline
        # and PyPI's CUDA build breaks CPU torch. So stand-in modules satisfy those imports,
        # raising if ever called, and are removed again right after: left in sys.modules they
        # would make find_spec("torchvision") succeed and transformers/diffusers would then try
        # to use a torchvision that is not there. The lock makes this happen once.
        # transformers and diffusers decide once, at import, whether torchvision is there: import
        # them first, so a thread importing them during the window below cannot be misled.
        import diffusers.utils.import_utils  # noqa: F401
        import transformers.utils.import_utils  # noqa: F401

        fakes: dict[str, types.ModuleType] = {}
        for name in _FAKE_TORCHVISION:
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            fakes[name] = module
        functional = fakes["torchvision.transforms.functional"]
        functional.normalize = _needs_torchvision  # type: ignore[attr-defined]
        functional.rotate = _needs_torchvision  # type: ignore[attr-defined]
        functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
        fakes["torchvision"].transforms = fakes["torchvision.transforms"]  # type: ignore[attr-defined]
        fakes["torchvision.transforms"].functional = functional  # type: ignore[attr-defined]
        sys.modules.update(fakes)
        try:
            import spandrel
        finally:
            for name, module in fakes.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
        _SPANDREL = spandrel
        return spandrel


# ---------------------------------------------------------------- files


def upscaler_hash(path: str | os.PathLike) -> str:
    """The first 10 hex digits of the file's SHA-256 (the short hash A1111 shows)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:10]


def _checked_file(path: str | os.PathLike) -> Path:
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelRefused(
            f"{file.name}: {suffix} weights are Python pickles and are refused; "
            "convert the file to .safetensors first"
        )
    if not file.exists():
        raise ModelRefused(f"{file}: no such file")
    if not file.is_file():
        raise ModelRefused(f"{file}: not a file")
    if suffix != ".safetensors":
        raise ModelRefused(f"{file.name}: upscaler weights must be a single .safetensors file")
    return file


def _read_descriptor(file: Path, device: Any = "cpu") -> Any:
    """The spandrel descriptor for a checked file, refused unless it is an SR image model."""
    from safetensors.torch import load_file

    spandrel = _spandrel()
    try:
        state_dict = load_file(str(file), device=str(device))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelRefused(f"{file.name}: not a valid safetensors file ({exc})") from exc
    state_dict = spandrel.canonicalize_state_dict(state_dict)
    try:
        descriptor = spandrel.ModelLoader(device=device).load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise ModelRefused(
            f"{file.name}: not a recognised upscaler architecture (its weights match none of "
            f"the architectures spandrel {spandrel.__version__} knows)"
        ) from None
    except Exception as exc:  # detected, but the shapes did not fit the architecture
        raise ModelRefused(
            f"{file.name}: the upscaler weights could not be loaded ({exc})"
        ) from exc
    name = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelRefused(
            f"{file.name}: {name} is an {descriptor.purpose.lower()} model, not an upscaler"
        )
    if descriptor.purpose != "SR" or descriptor.scale < 2:
        kind = {"FaceSR": "a face restoration", "Restoration": "an image restoration"}.get(
            descriptor.purpose, f"a {descriptor.purpose}"
        )
        raise ModelRefused(
            f"{file.name}: {name} is {kind} model at scale {descriptor.scale}, "
            "not a super-resolution upscaler"
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ModelRefused(
            f"{file.name}: {name} takes {descriptor.input_channels} and returns "
            f"{descriptor.output_channels} channels; only RGB (3-channel) upscalers are supported"
        )
    return descriptor


def inspect_upscaler(path: str | os.PathLike) -> dict[str, Any]:
    """Validate an upscaler ``.safetensors`` file and describe it; raises ModelRefused."""
    file = _checked_file(path)
    descriptor = _read_descriptor(file)
    req = descriptor.size_requirements
    return {
        "architecture": descriptor.architecture.name,
        "architecture_id": descriptor.architecture.id,
        "purpose": descriptor.purpose,
        "scale": int(descriptor.scale),
        "parameters": int(sum(p.numel() for p in descriptor.model.parameters())),
        "input_channels": int(descriptor.input_channels),
        "output_channels": int(descriptor.output_channels),
        "supports_half": bool(descriptor.supports_half),
        "supports_bfloat16": bool(descriptor.supports_bfloat16),
        "tiling": descriptor.tiling.name.lower(),
        "size_requirements": {
            "minimum": int(req.minimum),
            "multiple_of": int(req.multiple_of),
            "square": bool(req.square),
        },
        "tags": list(descriptor.tags),
        "file_bytes": file.stat().st_size,
        "hash": upscaler_hash(file),
    }


def load_upscaler(path: str | os.PathLike, device: str = "auto", dtype: Any = "auto") -> Any:
    """A spandrel ImageModelDescriptor on ``device`` in eval mode (safetensors only).

    ``dtype="auto"``: float16 on CUDA when the architecture supports it, else float32.
    """
    import torch

    file = _checked_file(path)
    target = resolve_device(device)
    descriptor = _read_descriptor(file)
    if dtype in (None, "", "auto"):
        wanted = (
            torch.float16 if target.type == "cuda" and descriptor.supports_half else torch.float32
        )
    else:
        wanted = resolve_dtype(dtype, target)
    name = descriptor.architecture.name
    if wanted == torch.float16 and not descriptor.supports_half:
        raise ModelRefused(f"{file.name}: {name} does not support float16; use float32")
    if wanted == torch.bfloat16 and not descriptor.supports_bfloat16:
        raise ModelRefused(f"{file.name}: {name} does not support bfloat16; use float32")
    return descriptor.to(target, dtype=wanted).eval()


# ---------------------------------------------------------------- images


def _check_scale(scale: float) -> float:
    scale = float(scale)
    if not math.isfinite(scale) or scale < 1 or scale > MAX_SCALE:
        raise ValueError(f"scale must be between 1 and {MAX_SCALE:g}, got {scale:g}")
    return scale


def _split_modes(image: Any) -> tuple[Any, Any]:
    """(RGB image, alpha band or None) for any PIL mode: palettes and greys become RGB."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    return (image if image.mode == "RGB" else image.convert("RGB")), None


def _target_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def lanczos_upscale(image: Any, scale: float) -> Any:
    """``image`` resized by ``scale`` with Lanczos (RGB, or RGBA when it had transparency)."""
    from PIL import Image

    scale = _check_scale(scale)
    rgb, alpha = _split_modes(image)
    size = _target_size(rgb.size, scale)
    out = rgb.resize(size, Image.Resampling.LANCZOS)
    if alpha is not None:
        out.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
    return out


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) covering ``length`` in equal cores.

    Each core is at most ``tile`` long; its window adds up to ``overlap`` of context each side.
    """
    count = max(1, math.ceil(length / tile))
    edges = [round(i * length / count) for i in range(count + 1)]
    return [
        (a, b, max(0, a - overlap), min(length, b + overlap))
        for a, b in zip(edges, edges[1:], strict=False)
    ]


def _tile_grid(width: int, height: int, tile: int | None, overlap: int) -> list[tuple]:
    if tile is None:
        return [((0, width, 0, width), (0, height, 0, height))]
    return [(x, y) for y in _spans(height, tile, overlap) for x in _spans(width, tile, overlap)]


def _upscale_once(
    model: Any,
    rgb: Any,
    tile: int | None,
    overlap: int,
    before_tile: Callable[[], None],
    after_tile: Callable[[], None],
) -> Any:
    """One model pass over an RGB PIL image, tile by tile, into a uint8 canvas."""
    import numpy as np
    import torch
    from PIL import Image

    source = np.asarray(rgb, dtype=np.uint8)
    height, width = source.shape[:2]
    s = int(model.scale)
    canvas = np.empty((height * s, width * s, 3), dtype=np.uint8)
    device, dtype = model.device, model.dtype
    for (x0, x1, wx0, wx1), (y0, y1, wy0, wy1) in _tile_grid(width, height, tile, overlap):
        before_tile()  # may raise JobCancelled
        window = torch.from_numpy(source[wy0:wy1, wx0:wx1].copy())
        window = window.to(device).permute(2, 0, 1).unsqueeze(0).to(dtype) / 255.0
        out = model(window)  # pads to the size requirements and crops back itself
        core = out[0, :, (y0 - wy0) * s : (y1 - wy0) * s, (x0 - wx0) * s : (x1 - wx0) * s]
        pixels = (core.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        canvas[y0 * s : y1 * s, x0 * s : x1 * s] = pixels.permute(1, 2, 0).cpu().numpy()
        del window, out, core, pixels
        after_tile()
    return Image.fromarray(canvas, "RGB")


def _passes(size: tuple[int, int], model_scale: int, target: tuple[int, int]) -> list:
    """The input sizes of each model pass needed to reach at least ``target``."""
    sizes = [size]
    w, h = size
    while len(sizes) < MAX_PASSES and (w * model_scale < target[0] or h * model_scale < target[1]):
        w, h = w * model_scale, h * model_scale
        sizes.append((w, h))
    return sizes


def upscale(
    model: Any,
    image: Any,
    *,
    scale: float | None = None,
    tile: int | None = 512,
    overlap: int = 32,
    on_tile: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Any:
    """Upscale a PIL image with a loaded upscaler, in overlapping tiles; returns a PIL image.

    The result is ``scale`` times the input (default: the model's own scale). A smaller factor
    is reached by Lanczos-resizing the model's output, a larger one by running the model again
    (up to 3 passes) and then resizing to the exact size. ``tile`` is a tile's core size in input
    pixels (None: the whole image at once); every model call sees at most ``tile + 2 * overlap``
    pixels a side, and only each tile's core is kept, so seams vanish once ``overlap`` covers the
    model's receptive field. Transparency is kept (alpha resized with Lanczos); greyscale and
    palette images come back RGB. ``should_stop`` is asked before each tile and raises
    JobCancelled; ``on_tile(done, total)`` counts tiles over all passes.
    """
    import torch
    from PIL import Image

    if tile is not None and tile < 8:
        raise ValueError(f"tile must be at least 8 pixels (or None), got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be 0 or more, got {overlap}")
    model_scale = int(model.scale)
    target_scale = _check_scale(model_scale if scale is None else scale)
    rgb, alpha = _split_modes(image)
    target = _target_size(rgb.size, target_scale)
    if getattr(model.tiling, "name", "") == "INTERNAL":
        tile = None  # the architecture tiles by itself and works best on the whole image
    passes = _passes(rgb.size, model_scale, target)
    total = sum(len(_tile_grid(w, h, tile, overlap)) for w, h in passes)
    done = 0

    def before_tile() -> None:
        if should_stop is not None and should_stop():
            raise JobCancelled(f"upscale stopped after {done} of {total} tiles")

    def after_tile() -> None:
        nonlocal done
        done += 1
        if on_tile is not None:
            on_tile(done, total)

    with torch.inference_mode():
        for _ in passes:
            rgb = _upscale_once(model, rgb, tile, overlap, before_tile, after_tile)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    if alpha is not None:
        rgb.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
    return rgb


# ---------------------------------------------------------------- tiny model


def build_tiny_esrgan(
    path: str | os.PathLike,
    *,
    scale: int = 4,
    num_filters: int = 8,
    num_blocks: int = 1,
    seed: int = 0,
) -> Path:
    """Save a small deterministic ESRGAN as ``path`` (.safetensors) and return the path.

    It behaves like a smooth upscaler: RGB passes straight through the convolutions outside the
    trunk, except that each 2× stage is nearest-neighbour plus a [1 2 1]/4 blur, i.e. bilinear;
    the residual trunk (random, from ``seed``) adds a faint texture (a few levels of 255) so the
    output still depends on pixels up to ~17 input pixels away, as in a real ESRGAN. Zero
    padding darkens a 2-3 px frame at the image border (about 0.56 at the outermost pixel at
    4×), which a trained model learns away and this one does not. ``num_filters=8,
    num_blocks=1``: 226k parameters, 0.9 MB, 512 px to 2048 px in ~3 s on 2 CPU cores.
    """
    import torch
    from safetensors.torch import save_file

    if scale not in (2, 4, 8, 16):
        raise ValueError(f"scale must be 2, 4, 8 or 16 for this builder, got {scale}")
    if num_filters < 3 or num_blocks < 1:
        raise ValueError("num_filters must be at least 3 and num_blocks at least 1")
    file = Path(path).expanduser()
    if file.suffix.lower() != ".safetensors":
        raise ValueError(f"{file.name}: the tiny ESRGAN is saved as .safetensors")

    _spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=scale)
    blur = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16.0
    layers = list(net.model)
    trunk_out = net.model[1].sub[-1]
    with torch.no_grad():
        for before, layer in zip([None, *layers[:-1]], layers, strict=True):
            if not isinstance(layer, torch.nn.Conv2d):
                continue
            # Conv-after-nearest-upsample with a [1 2 1]/4 kernel is exactly bilinear 2×;
            # every other conv outside the trunk passes RGB through unchanged.
            layer.weight.zero_()
            assert layer.bias is not None  # every ESRGAN conv has a bias
            layer.bias.zero_()
            for c in range(3):
                if isinstance(before, torch.nn.Upsample):
                    layer.weight[c, c] = blur
                else:
                    layer.weight[c, c, 1, 1] = 1.0
        trunk_out.weight.mul_(0.1)
        trunk_out.bias.zero_()
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    # One metadata key only: safetensors writes the metadata map in random order, and the
    # same seed must give the same bytes (the file hash identifies an upscaler).
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, file)
    return file
