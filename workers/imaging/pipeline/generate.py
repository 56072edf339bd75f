"""The generation entry points: one request (:func:`generate_images`) or several compatible
requests sharing pipeline calls (:func:`generate_batch`), with progress, previews and cancel.

A request's images have per-image seeds (``seed + i``), and each image comes back with its A1111
infotext params; a request inside a batch gets exactly the images it would have had alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from workers.common.timing import timed
from workers.imaging.pipeline.denoising import ImageJob, denoise_jobs
from workers.imaging.pipeline.embeddings import used_embeddings
from workers.imaging.pipeline.encoding import encode_request, prompt_chunk_count
from workers.imaging.pipeline.infotext_params import infotext_params, resolved_sampler
from workers.imaging.pipeline.latents import decode_latents
from workers.imaging.pipeline.loras import loras_applied
from workers.imaging.pipeline.progress import DEFAULT_PREVIEW_INTERVAL, StepTracker, planned_steps
from workers.imaging.pipeline.request import (
    ControlNetSpec,
    GeneratedImage,
    GenerationRequest,
    HiresFix,
)
from workers.imaging.pipeline.rng import rng_name


@timed("imaging.generate_images")
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
    tracker = StepTracker(
        planned_steps(req) * req.batch_count, on_step, should_stop, on_preview, preview_interval
    )
    return _generate_one(pipe, req, tracker)


@timed("imaging.generate_batch")
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
    groups, alone = _group_by_batch_key(pipe, requests)
    planned = _plan_batch(requests, groups, alone, max_images_per_call)
    tracker = StepTracker(planned, on_step, should_stop, on_preview, preview_interval)
    for members in groups.values():
        _generate_group(pipe, requests, members, tracker, max_images_per_call, results)
    for i in alone:
        results[i] = _generate_one(pipe, requests[i], tracker)
    return results


def _group_by_batch_key(
    pipe: Any, requests: Sequence[GenerationRequest]
) -> tuple[dict[tuple, list[int]], list[int]]:
    """The positions of requests that can share pipeline calls, by key, and of those that run
    alone."""
    groups: dict[tuple, list[int]] = {}
    alone: list[int] = []
    for i, req in enumerate(requests):
        key = _batch_key(pipe, req)
        if key is None:
            alone.append(i)
        else:
            groups.setdefault(key, []).append(i)
    return groups, alone


def _batch_key(pipe: Any, req: GenerationRequest) -> tuple | None:
    """Requests with equal keys can share one pipeline call; None: this one runs alone."""
    if req.init_image is not None or req.controlnet is not None:
        return None
    used = used_embeddings(pipe, req)
    return (
        req.loras,
        tuple(sorted((e.name.lower(), e.short_hash) for e in used)),
        req.width,
        req.height,
        req.sampler,
        req.schedule_type,
        req.steps,
        float(req.cfg_scale),
        req.hires.key() if isinstance(req.hires, HiresFix) else None,
        prompt_chunk_count(pipe, req, used),
    )


def _plan_batch(
    requests: Sequence[GenerationRequest],
    groups: dict[tuple, list[int]],
    alone: Sequence[int],
    max_images_per_call: int,
) -> list[int]:
    """Every pass's planned steps, in the order they will run, so progress has a fixed total."""
    planned: list[int] = []
    for members in groups.values():
        n_images = sum(requests[i].n_images for i in members)
        planned += planned_steps(requests[members[0]]) * math.ceil(n_images / max_images_per_call)
    for i in alone:
        planned += planned_steps(requests[i]) * requests[i].batch_count
    return planned


def _generate_group(
    pipe: Any,
    requests: Sequence[GenerationRequest],
    members: Sequence[int],
    tracker: StepTracker,
    max_images_per_call: int,
    results: list[list[GeneratedImage]],
) -> None:
    """Requests with one batch key, ``max_images_per_call`` images per pipeline call; each
    image is appended to its request's results."""
    template = requests[members[0]]
    with loras_applied(pipe, template.loras):
        jobs: list[ImageJob] = []
        resolved: dict[int, Any] = {}
        for i in members:
            req = requests[i]
            embeds, computed = encode_request(pipe, req)
            resolved[id(req)] = resolved_sampler(req)
            jobs += [
                ImageJob(req, i, k, seed, embeds, computed) for k, seed in enumerate(req.seeds())
            ]
        for start in range(0, len(jobs), max_images_per_call):
            chunk = jobs[start : start + max_images_per_call]
            latents = denoise_jobs(pipe, template, chunk, tracker)
            for job, image in zip(
                chunk, _generated_images(pipe, chunk, latents, resolved), strict=True
            ):
                results[job.owner].append(image)


def _generate_one(pipe: Any, req: GenerationRequest, tracker: StepTracker) -> list[GeneratedImage]:
    """One resolved request, ``batch_count`` calls of ``batch_size`` images, LoRAs applied."""
    with loras_applied(pipe, req.loras):
        embeds, computed = encode_request(pipe, req)
        resolved = {id(req): resolved_sampler(req)}
        seeds = req.seeds()
        results: list[GeneratedImage] = []
        for batch in range(req.batch_count):
            start = batch * req.batch_size
            jobs = [
                ImageJob(req, 0, start + i, seeds[start + i], embeds, computed)
                for i in range(req.batch_size)
            ]
            latents = denoise_jobs(pipe, req, jobs, tracker)
            results.extend(_generated_images(pipe, jobs, latents, resolved))
    return results


def _generated_images(
    pipe: Any, jobs: Sequence[ImageJob], latents: Any, resolved: dict[int, Any]
) -> list[GeneratedImage]:
    """The decoded images, each with its seed, position and A1111 params."""
    images = decode_latents(pipe, latents)
    rng = rng_name(pipe)
    out = []
    for job, image in zip(jobs, images, strict=True):
        req = job.request
        spec = req.controlnet if isinstance(req.controlnet, ControlNetSpec) else None
        out.append(
            GeneratedImage(
                image=image,
                seed=job.seed,
                index=job.index,
                params=infotext_params(
                    req, job.seed, resolved.get(id(req)), spec, job.params, rng=rng
                ),
                prompt=req.prompt,
                negative_prompt=req.negative_prompt,
            )
        )
    return out
