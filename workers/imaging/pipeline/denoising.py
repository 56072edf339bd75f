"""The denoising passes of one pipeline call: txt2img or img2img (with a ControlNet when asked),
then the hi-res fix's upscale and img2img pass, for images that share their settings.

Each pass runs a pipeline variant of the needed kind built from the loaded pipeline's modules
(``from_pipe``), with its own scheduler and one generator per image, inside
:func:`~.batch_invariance.batch_invariant`.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.imaging.pipeline.batch_invariance import batch_invariant
from workers.imaging.pipeline.controlnet import control_image, controlnet_model
from workers.imaging.pipeline.device import pin_execution_device
from workers.imaging.pipeline.latents import decode_latents, encode_images
from workers.imaging.pipeline.loading import pipeline_classes, pipeline_family
from workers.imaging.pipeline.progress import StepTracker, schedule_length
from workers.imaging.pipeline.request import ControlNetSpec, GenerationRequest, HiresFix
from workers.imaging.pipeline.rng import generators


@dataclass
class ImageJob:
    """One image to make: its request, position and seed, and its prompt embeddings."""

    request: GenerationRequest
    owner: int  # the request's position in a generate_batch call (0 for generate_images)
    index: int
    seed: int
    embeds: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)  # infotext params found while encoding


@dataclass
class _Call:
    """What the passes of one pipeline call share."""

    pipe: Any
    template: GenerationRequest
    seeds: list[int]
    common: dict[str, Any]  # pipeline arguments of every pass
    spec: ControlNetSpec | None
    controlnet: Any
    tracker: StepTracker


def denoise_jobs(
    pipe: Any, template: GenerationRequest, jobs: Sequence[ImageJob], tracker: StepTracker
):
    """One pipeline call (two with hi-res fix) for jobs that share ``template``'s settings.

    Returns the final latents, one row per job.
    """
    import torch

    seeds = [job.seed for job in jobs]
    embeds = _stack_embeds(jobs)
    spec = template.controlnet if isinstance(template.controlnet, ControlNetSpec) else None
    controlnet = controlnet_model(spec, pipe) if spec is not None else None
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
    call = _Call(pipe, template, seeds, common, spec, controlnet, tracker)
    with batch_invariant(pipe.unet, controlnet):
        latents = _first_pass(call)
        if isinstance(template.hires, HiresFix):
            latents = _hires_pass(call, template.hires, latents)
    if not torch.is_tensor(latents):  # pragma: no cover - output_type="latent" gives a tensor
        raise RuntimeError("the pipeline did not return latents")
    return latents


def _first_pass(call: _Call) -> Any:
    """txt2img, or img2img from the init image (resized to the request's size)."""
    from PIL import Image

    template, spec, n = call.template, call.spec, len(call.seeds)
    size = (template.width, template.height)
    if template.init_image is None:
        kind = "txt2img" if spec is None else "controlnet"
        kwargs: dict[str, Any] = {"height": template.height, "width": template.width}
    else:
        kind = "img2img" if spec is None else "controlnet_img2img"
        init = template.init_image.convert("RGB")
        if init.size != size:
            init = init.resize(size, Image.Resampling.LANCZOS)  # A1111 "Just resize"
        kwargs = {
            "image": encode_images(call.pipe, [init] * n, call.seeds),
            "strength": template.denoising_strength,
            "num_inference_steps": schedule_length(template.steps, template.denoising_strength),
        }
    if spec is not None:
        control = control_image(spec, size)
        kwargs["control_image" if kind == "controlnet_img2img" else "image"] = [control] * n
    return _run_pass(call, kind, {**call.common, **kwargs})


def _hires_pass(call: _Call, hires: HiresFix, latents: Any) -> Any:
    """Hi-res fix: upscale the first pass, then img2img with its own steps and strength."""
    import torch.nn.functional as F

    pipe, template, spec = call.pipe, call.template, call.spec
    tw, th = hires.target_size(template.width, template.height)
    if hires.upscaler == "latent":
        factor = pipe.vae_scale_factor
        image_in = F.interpolate(
            latents, size=(th // factor, tw // factor), mode="bilinear", antialias=False
        )
    else:
        upscaled = []
        for image in decode_latents(pipe, latents):
            call.tracker.check_stop()  # an image upscaler (ESRGAN) can take a while
            upscaled.append(_upscale_image(hires, image, (tw, th)))
        image_in = encode_images(pipe, upscaled, call.seeds)
    kind = "img2img" if spec is None else "controlnet_img2img"
    kwargs: dict[str, Any] = {"image": image_in, "strength": hires.denoise}
    if spec is not None:
        kwargs["control_image"] = [control_image(spec, (tw, th))] * len(call.seeds)
    steps = schedule_length(hires.steps or template.steps, hires.denoise)
    return _run_pass(call, kind, {**call.common, "num_inference_steps": steps, **kwargs})


def _run_pass(call: _Call, kind: str, kwargs: dict[str, Any]) -> Any:
    """One pipeline call of ``kind``: a fresh scheduler, one generator per image."""
    runner = _variant(call.pipe, kind, call.controlnet)
    runner.scheduler = scheduler_for(call.pipe, call.template)
    call.tracker.begin_pass()
    latents = runner(**kwargs, generator=_generators(call.pipe, call.seeds)).images
    call.tracker.end_pass()
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


# Per loaded pipeline, a never-used scheduler per (sampler, schedule type): each pass gets a
# deep copy (0.1-0.2 ms) instead of a from_config (~1 ms: signature inspection, config checks).
_schedulers: weakref.WeakKeyDictionary[Any, dict[tuple, Any]] = weakref.WeakKeyDictionary()


def scheduler_for(pipe: Any, req: GenerationRequest) -> Any:
    import copy

    from workers.imaging.samplers import make_scheduler

    key = (req.sampler, req.schedule_type)
    with _variants_lock:
        prototypes = _schedulers.setdefault(pipe, {})
        prototype = prototypes.get(key)
        if prototype is None:
            prototype = make_scheduler(req.sampler, pipe.scheduler, schedule_type=req.schedule_type)
            prototypes[key] = prototype
    return copy.deepcopy(prototype)


def _stack_embeds(jobs: Sequence[ImageJob]) -> dict[str, Any]:
    import torch

    keys = jobs[0].embeds.keys()
    return {k: torch.cat([job.embeds[k] for job in jobs]) for k in keys}


def _generators(pipe: Any, seeds: Sequence[int]) -> list[Any]:
    # rng.py is the one place that says where the noise is drawn: the infotext's RNG reads it.
    return generators(pipe, seeds)


# Per loaded pipeline, its variants by kind; they go when the pipeline goes.
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
            cls = pipeline_classes(pipeline_family(pipe))[kind]
            extra = {"controlnet": controlnet} if controlnet is not None else {}
            # from_pipe casts the shared modules to its dtype argument (float32 by default):
            # keep them as loaded. Its "cast with to()" warning is noise here.
            with _quiet_diffusers():
                found = cls.from_pipe(pipe, dtype=pipe.unet.dtype, **extra)
            found.set_progress_bar_config(disable=True)
            cache[kind] = pin_execution_device(found)
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
