"""Inpainting: an img2img request redrawn only under a mask (:func:`inpaint_images`).

The pass runs diffusers' inpaint pipeline built from the loaded pipeline's modules (``from_pipe``):
with an inpainting checkpoint (a 9-channel UNet) the model sees the mask; with an ordinary one (a
4-channel UNet such as the digits demo) it is what A1111 does for normal models: img2img over the
whole image while, after every step, the unmasked latents are set back to the original's (noised
to that step). Either way the decoded image is composited over the original through the blurred
mask (:mod:`workers.imaging.inpaint`), so unmasked pixels come back exactly.

Inpainting requests run alone (never batched with others), with the request's sampler, seeds
(``seed + i``), LoRAs, embeddings, progress, previews and cancel as :func:`generate_images` has.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from workers.imaging.inpaint import InpaintPlan, InpaintSettings, composite, plan_inpaint
from workers.imaging.pipeline.batch_invariance import batch_invariant
from workers.imaging.pipeline.denoising import scheduler_for
from workers.imaging.pipeline.device import pin_execution_device
from workers.imaging.pipeline.encoding import encode_request
from workers.imaging.pipeline.infotext_params import infotext_params, resolved_sampler
from workers.imaging.pipeline.latents import decode_latents
from workers.imaging.pipeline.loading import pipeline_family
from workers.imaging.pipeline.loras import loras_applied
from workers.imaging.pipeline.progress import (
    DEFAULT_PREVIEW_INTERVAL,
    StepTracker,
    planned_steps,
    schedule_length,
)
from workers.imaging.pipeline.request import GeneratedImage, GenerationRequest, InvalidRequest

INPAINT_CLASSES = {
    "sd": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLInpaintPipeline",
}


def inpaint_images(
    pipe: Any,
    req: GenerationRequest,
    settings: InpaintSettings,
    *,
    on_step: Callable[..., Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: Callable[[Any], Any] | None = None,
    preview_interval: float = DEFAULT_PREVIEW_INTERVAL,
) -> list[GeneratedImage]:
    """Redraw ``req.init_image`` under ``settings.mask``: ``batch_count`` passes of
    ``batch_size`` images, each composited back onto the original (see the module docstring).

    InvalidRequest without an init image, with a ControlNet or hi-res fix (not offered with
    inpainting), or when the mask cannot be used (:class:`~workers.imaging.inpaint.MaskError`).
    """
    from workers.imaging.inpaint import MaskError

    if req.init_image is None:
        raise InvalidRequest("inpainting needs an init image")
    if req.controlnet is not None or req.hires is not None:
        raise InvalidRequest("inpainting does not combine with ControlNet or the hi-res fix")
    try:
        plan = plan_inpaint(req.init_image, settings, (req.width, req.height))
    except MaskError as exc:
        raise InvalidRequest(str(exc)) from None
    req = req.with_seed()
    tracker = StepTracker(
        planned_steps(req) * req.batch_count, on_step, should_stop, on_preview, preview_interval
    )
    with loras_applied(pipe, req.loras):
        embeds, computed = encode_request(pipe, req)
        resolved = resolved_sampler(req)
        seeds = req.seeds()
        extra = {**computed, **settings.infotext()}
        results: list[GeneratedImage] = []
        for start in range(0, len(seeds), req.batch_size):
            batch = seeds[start : start + req.batch_size]
            latents = _denoise(pipe, req, plan, embeds, batch, tracker)
            for k, (seed, image) in enumerate(
                zip(batch, decode_latents(pipe, latents), strict=True)
            ):
                results.append(
                    GeneratedImage(
                        image=composite(plan, image),
                        seed=seed,
                        index=start + k,
                        params=infotext_params(req, seed, resolved, None, extra),
                        prompt=req.prompt,
                        negative_prompt=req.negative_prompt,
                    )
                )
    return results


def _denoise(
    pipe: Any,
    req: GenerationRequest,
    plan: InpaintPlan,
    embeds: dict[str, Any],
    seeds: Sequence[int],
    tracker: StepTracker,
) -> Any:
    """One inpaint pipeline call for ``seeds``: the final latents, one row per image."""
    import torch

    n = len(seeds)
    runner = _inpaint_variant(pipe)
    runner.scheduler = scheduler_for(pipe, req)
    device = pipe._execution_device
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    tracker.begin_pass()
    with batch_invariant(pipe.unet):
        latents = runner(
            **{k: torch.cat([v] * n) for k, v in embeds.items()},
            image=[plan.image] * n,
            mask_image=[plan.mask] * n,
            height=req.height,
            width=req.width,
            strength=req.denoising_strength,
            num_inference_steps=schedule_length(req.steps, req.denoising_strength),
            guidance_scale=req.cfg_scale,
            output_type="latent",
            generator=generators,
            callback_on_step_end=tracker,
            callback_on_step_end_tensor_inputs=["latents"],
        ).images
    tracker.end_pass()
    return latents


# Per loaded pipeline, its inpaint variant; it goes when the pipeline goes.
_variants: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_variants_lock = threading.Lock()


def _inpaint_variant(pipe: Any) -> Any:
    """diffusers' inpaint pipeline sharing ``pipe``'s modules (cached per pipeline; each call sets
    its own scheduler on it, so the loaded pipeline's is never changed)."""
    import diffusers

    with _variants_lock:
        found = _variants.get(pipe)
        if found is None:
            cls = getattr(diffusers, INPAINT_CLASSES[pipeline_family(pipe)])
            # from_pipe casts shared modules to its dtype argument (float32 by default): keep them
            found = cls.from_pipe(pipe, dtype=pipe.unet.dtype)
            found.set_progress_bar_config(disable=True)
            _variants[pipe] = pin_execution_device(found)
        return found
