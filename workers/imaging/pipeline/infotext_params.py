"""Infotext parameters: what each generated image records, as A1111 writes them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.imaging.infotext import version_label
from workers.imaging.pipeline.request import ControlNetSpec, GenerationRequest, HiresFix


def resolved_sampler(req: GenerationRequest) -> Any:
    """The request's sampler and schedule type as A1111 names them (None without samplers)."""
    try:
        from workers.imaging.samplers import resolve_sampler
    except ImportError:  # pragma: no cover
        return None
    return resolve_sampler(req.sampler, req.schedule_type)


def infotext_params(
    req: GenerationRequest,
    seed: int,
    resolved: Any,
    controlnet: ControlNetSpec | None,
    computed: Mapping[str, Any] | None = None,
    rng: str | None = None,
) -> dict[str, Any]:
    """One image's A1111 parameters; ``computed`` (found while encoding) and the request's
    ``extra_params`` are added last and win. ``rng``: where the noise was drawn (``CPU`` or
    ``GPU``, :func:`~.rng.rng_name`); ``Version`` names Atelier and its version."""
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
    if isinstance(req.hires, HiresFix):
        params.update(_hires_params(req.hires, req.width, req.height))
    if controlnet is not None:
        params["ControlNet 0"] = _controlnet_param(controlnet)
    if rng is not None:
        params["RNG"] = rng
    params["Version"] = version_label()
    params.update(computed or {})
    params.update(req.extra_params)
    return params


def _number(value: float) -> float | int:
    """7.0 → 7, as A1111 writes whole numbers; other values unchanged."""
    return int(value) if float(value).is_integer() else value


def _hires_params(hires: HiresFix, width: int, height: int) -> dict[str, Any]:
    """The hi-res fix's parameters (its denoising strength replaces img2img's)."""
    tw, th = hires.target_size(width, height)
    params: dict[str, Any] = {
        "Denoising strength": _number(hires.denoise),
        "Hires upscale": _number(hires.scale),
    }
    if hires.steps:
        params["Hires steps"] = hires.steps
    params["Hires upscaler"] = hires.upscaler_name
    params["Hires resize"] = f"{tw}x{th}"
    return params


def _controlnet_param(controlnet: ControlNetSpec) -> str:
    """The "ControlNet 0" value, as A1111's ControlNet extension writes it."""
    module = "canny" if controlnet.type == "canny" else "none"
    model = controlnet.model
    model_name = Path(model).name if isinstance(model, str | os.PathLike) else "in-memory"
    return (
        f"Module: {module}, Model: {model_name}, Weight: {_number(controlnet.scale)}, "
        f"Guidance Start: {controlnet.guidance_start}, Guidance End: {controlnet.guidance_end}"
        + (
            f", Threshold A: {controlnet.low}, Threshold B: {controlnet.high}"
            if module == "canny"
            else ""
        )
    )
