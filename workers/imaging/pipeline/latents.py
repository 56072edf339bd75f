"""Latents ↔ images through the pipeline's VAE, one image at a time (the result never depends
on the batch: see :mod:`.batch_invariance`), and small previews of latents mid-denoising."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

PREVIEW_MAX_LATENT_SIDE = 32  # previews decode at most a 32×32 latent (256 px for SD)

# A1111's "Approx cheap" latent → RGB factors for SD 1.x/2.x (scaling factor 0.18215) and SDXL.
_SD_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))  # fmt: skip
_SDXL_LATENT_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188))  # fmt: skip


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


def decode_latents(pipe: Any, latents: Any) -> list[Any]:
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


def encode_images(pipe: Any, images: Sequence[Any], seeds: Sequence[int]) -> Any:
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


def preview_image(pipe: Any, latents: Any) -> Any:
    """A small preview of the first image from latents mid-denoising.

    SD and SDXL latents use A1111's "Approx cheap" linear map (no network); other VAEs decode a
    latent downscaled to at most 32×32. Sigma-scaled latents (Euler-type samplers) are brought
    back to unit scale first.
    """
    z = _at_unit_scale(latents[:1].detach().float(), pipe.scheduler)
    factors = _approx_rgb_factors(pipe.vae)
    if factors is not None:
        return _approx_rgb(z, factors)
    return _decode_small(pipe, z)


def _at_unit_scale(z: Any, scheduler: Any) -> Any:
    """Latents divided by sqrt(sigma² + 1) when the scheduler works at sigma scale."""
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index is not None and float(scheduler.init_noise_sigma) > 1.0:
        sigma = float(sigmas[min(index, len(sigmas) - 1)])
        z = z / math.sqrt(sigma**2 + 1.0)
    return z


def _approx_rgb_factors(vae: Any) -> Any:
    """A1111's "Approx cheap" factors for an SD or SDXL VAE (told by its scaling factor)."""
    scaling = float(vae.config.scaling_factor)
    if vae.config.latent_channels == 4 and abs(scaling - 0.18215) < 1e-4:
        return _SD_LATENT_RGB
    if vae.config.latent_channels == 4 and abs(scaling - 0.13025) < 1e-4:
        return _SDXL_LATENT_RGB
    return None


def _approx_rgb(z: Any, factors: Any) -> Any:
    import torch
    from PIL import Image

    matrix = torch.tensor(factors, dtype=torch.float32, device=z.device)
    rgb = torch.einsum("chw,cr->hwr", z[0], matrix)
    array = ((rgb + 1.0) * 127.5).clamp(0, 255).byte().cpu().numpy()
    return Image.fromarray(array)


def _decode_small(pipe: Any, z: Any) -> Any:
    """The VAE's decoding of the latent downscaled to at most PREVIEW_MAX_LATENT_SIDE."""
    import torch
    import torch.nn.functional as F

    vae = pipe.vae
    scaling = float(vae.config.scaling_factor)
    side = max(z.shape[-2:])
    if side > PREVIEW_MAX_LATENT_SIDE:
        factor = PREVIEW_MAX_LATENT_SIDE / side
        size = (max(1, round(z.shape[-2] * factor)), max(1, round(z.shape[-1] * factor)))
        z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        pixels = vae.decode(z.to(vae.dtype) / scaling, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels.float(), output_type="pil")[0]
