"""The base pipeline a run trains on: loaded (safetensors only) on the run's device and
precision, every weight frozen; the shared pieces of a denoising loss."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workers.imaging.training.config import ImageTrainConfig, TrainingRefused

__all__ = ["Base", "denoising_loss", "load_base"]


@dataclass
class Base:
    """A loaded, frozen pipeline and what its training needs."""

    pipe: Any
    device: Any
    dtype: Any  # the frozen weights' dtype
    noise_scheduler: Any  # DDPMScheduler from the model's scheduler config

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision on CUDA when the frozen weights are half precision (the diffusers
        scripts' accelerate mixed_precision); nothing on CPU."""
        import torch

        if self.device.type == "cuda" and self.dtype != torch.float32:
            with torch.autocast("cuda", dtype=self.dtype):
                yield
        else:
            yield


def load_base(
    folder: str | os.PathLike[str],
    config: ImageTrainConfig,
    *,
    device: str = "auto",
    single_file_config: str | os.PathLike[str] | None = None,
) -> Base:
    """The base model's pipeline, frozen, in the run's precision (fp32 on CPU)."""
    import torch
    from diffusers import DDPMScheduler

    from workers.imaging.pipeline import load_pipeline
    from workers.imaging.pipeline.loading import pipeline_family
    from workers.ml.models import resolve_device

    target = resolve_device(device)
    bf16_ok = target.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[
        config.trainable_dtype_name(target.type, bf16_ok)
    ]
    pipe = load_pipeline(folder, device=str(target), dtype=dtype, config=single_file_config)
    if pipeline_family(pipe) != "sd":
        raise TrainingRefused(
            "image LoRA and textual-inversion training take Stable Diffusion 1.x/2.x models; "
            "this is an SDXL model"
        )
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False)
        module.eval()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return Base(pipe=pipe, device=target, dtype=pipe.unet.dtype, noise_scheduler=scheduler)


def denoising_loss(base: Base, latents: Any, hidden: Any, generator: Any) -> Any:
    """The diffusers scripts' loss: noise and timesteps drawn (from `generator`, on the CPU), the
    UNet's prediction against the noise (epsilon) or the velocity (v-prediction), MSE in fp32."""
    import torch
    import torch.nn.functional as F

    scheduler = base.noise_scheduler
    noise = torch.randn(latents.shape, generator=generator)
    steps = torch.randint(
        0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
    )
    latents, noise, steps = (t.to(base.device) for t in (latents, noise, steps))
    noisy = scheduler.add_noise(latents, noise, steps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, steps)
    else:
        target = noise
    with base.autocast():
        pred = base.pipe.unet(
            noisy.to(base.dtype), steps, hidden.to(base.dtype), return_dict=False
        )[0]
    return F.mse_loss(pred.float(), target.float(), reduction="mean")
