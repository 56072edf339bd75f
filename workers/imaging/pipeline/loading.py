"""Loading Stable Diffusion (1.x/2.x) and SDXL pipelines from safetensors weights only.

- :func:`load_pipeline`: a diffusers folder or a single ``.safetensors`` checkpoint; pickle-based
  checkpoints (``.ckpt``, ``.pt``, ``.bin``, ...) are refused (:mod:`workers.common.safety`).
- :func:`check_diffusers_folder`, :func:`single_file_family`: the checks model registration
  shares with loading (safetensors only, no custom code; which family).
- :func:`align_weights`: loaded weights are moved from the memory-mapped files into aligned
  memory, so a model's pixels do not depend on the file it came from (a diffusers folder or a
  single checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workers.common.safety import is_pickle_suffix, pickle_reason
from workers.common.timing import timed
from workers.imaging.pipeline.device import pin_execution_device
from workers.imaging.pipeline.signatures import presign_attention

try:  # one error type for "this model will not be loaded", shared with the LLM side
    from workers.ml.models import ModelRefused
except ImportError:  # pragma: no cover - workers.ml is part of the same package

    class ModelRefused(Exception):  # type: ignore[no-redef]
        """A model file or folder that will not be loaded; the message says why."""


# CPU kernels may split a loop by the address of their operands: MKL (run without its
# conditional numerical reproducibility mode) rounds the one-row SGEMM of the time-embedding
# layers differently when the weight starts off a 16-byte boundary.
# safetensors hands out CPU tensors that live at their offset in the memory-mapped file, which
# is only 4-byte aligned and depends on the file's layout: the same UNet from a diffusers folder
# and from a single-file checkpoint then gave images one 8-bit level apart. Weights are moved to
# torch's own 64-byte aligned memory, so the arithmetic depends on the values, not on the file.
_ALIGNMENT = 64


def aligned_tensor(tensor: Any) -> Any:
    """``tensor``, copied to torch's aligned memory when it is a CPU tensor off the boundary."""
    if tensor.device.type != "cpu" or tensor.data_ptr() % _ALIGNMENT == 0:
        return tensor
    return tensor.clone()  # same strides, new (aligned) storage


def align_weights(*modules: Any) -> None:
    """Every CPU parameter and buffer of ``modules`` in aligned memory (see ``_ALIGNMENT``)."""
    import torch

    for module in modules:
        if not isinstance(module, torch.nn.Module):
            continue
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.data = aligned_tensor(tensor.data)


def refuse_pickle(path: Path) -> None:
    """Raise :class:`ModelRefused`, naming the file, when it can hold a pickle (by its suffix,
    unopened; or by its content when the suffix says nothing)."""
    try:
        reason = pickle_reason(path)
    except OSError as exc:
        raise ModelRefused(f"{path.name}: cannot be read ({exc})") from exc
    if reason is not None:
        raise ModelRefused(reason)


def _model_family_of_class(class_name: str) -> str:
    return "sdxl" if "XL" in class_name else "sd"


def single_file_family(path: Path) -> str:
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


def check_diffusers_folder(folder: Path) -> str:
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
        pickles = [p for p in weights if is_pickle_suffix(p)]
        safes = [p for p in weights if p.suffix == ".safetensors"]
        if pickles and not safes:
            raise ModelRefused(
                f"{name}/{pickles[0].name}: pickle weights are refused and this component has "
                "no .safetensors; convert it to safetensors"
            )
    return _model_family_of_class(class_name)


def pipeline_classes(family: str) -> dict[str, type[Any]]:
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


def pipeline_family(pipe: Any) -> str:
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"


FAMILY_NAMES = {"sd": "Stable Diffusion 1.x/2.x", "sdxl": "SDXL"}


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
            f"the same family ({FAMILY_NAMES[family]}), e.g. the base model it was fine-tuned from"
        )
    folder = Path(config).expanduser()
    if folder.is_dir():
        config_family = check_diffusers_folder(folder)
        if config_family != family:
            raise ModelRefused(
                f"{source.name} is a {FAMILY_NAMES[family]} checkpoint but its config "
                f"{folder.name} is a {FAMILY_NAMES[config_family]} pipeline folder"
            )
        return {"config": str(folder), "local_files_only": True}
    if not hub_allowed():
        raise ModelRefused(
            f"config {config}: not a local diffusers folder (offline, a hub id cannot be fetched)"
        )
    return {"config": str(config)}  # a hub repo id


@timed("imaging.load_pipeline")
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
    refuse_pickle(source)
    if not source.exists():
        raise ModelRefused(f"{source}: no such file or folder")
    target_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target_device)

    if source.is_file():
        pipe = _load_single_file(source, torch_dtype, config)
    else:
        pipe = _load_folder(source, torch_dtype)
    pipe.to(target_device)
    align_weights(*pipe.components.values())
    pipe.set_progress_bar_config(disable=True)
    presign_attention(*pipe.components.values())
    return pin_execution_device(pipe)


def _load_single_file(source: Path, torch_dtype: Any, config: str | os.PathLike[str] | None):
    """A checked single ``.safetensors`` checkpoint, through ``from_single_file``."""
    if source.suffix.lower() != ".safetensors":
        raise ModelRefused(f"{source.name}: a single-file model must be a .safetensors file")
    family = single_file_family(source)
    cls = pipeline_classes(family)["txt2img"]
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        **_single_file_config(source, family, config),
    }
    if family == "sd":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return cls.from_single_file(str(source), **kwargs)
    except Exception as exc:
        raise ModelRefused(
            f"{source.name}: cannot be loaded as {FAMILY_NAMES[family]}: {exc}"
        ) from exc


def _load_folder(source: Path, torch_dtype: Any):
    """A checked diffusers folder, through ``from_pretrained``."""
    family = check_diffusers_folder(source)
    cls = pipeline_classes(family)["txt2img"]
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": True}
    if family == "sd":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return cls.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"{source}: cannot be loaded: {exc}") from exc
