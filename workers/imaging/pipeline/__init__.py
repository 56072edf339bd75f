"""Stable Diffusion generation with A1111's controls, as plain functions over diffusers pipelines.

- :class:`GenerationRequest`: what a txt2img/img2img job asks for (validated on creation).
- :func:`load_pipeline`: a diffusers folder or a single ``.safetensors`` checkpoint; pickle-based
  checkpoints (``.ckpt``, ``.pt``, ``.bin``, ...) are refused.
- :func:`generate_images`: one request → :class:`GeneratedImage` per image, with A1111 prompt
  weights, sampler names, per-image seeds (``seed + i``), img2img, hi-res fix (latent, Lanczos or
  an image upscaler such as ESRGAN), ControlNet, LoRAs, textual-inversion embeddings by name,
  per-step progress with small previews, and cancel at the next step.
- :func:`generate_batch`: several compatible requests in one pipeline call, each getting exactly
  the images it would have had alone (determinism: :mod:`.batch_invariance`).

The modules, in the order a request meets them: ``request`` (requests and results),
``loading`` (safetensors-only loading, aligned weights), ``loras``, ``embeddings``
(textual inversion), ``encoding`` (prompts), ``controlnet``, ``progress`` (steps, previews,
cancel), ``batch_invariance``, ``denoising`` (the pipeline passes, hi-res fix), ``latents``
(VAE encode/decode, previews), ``infotext_params`` and ``generate`` (the entry points).

Pure code: no Django, no Celery; torch and diffusers are imported inside functions.
"""

from workers.imaging.pipeline.controlnet import canny_image
from workers.imaging.pipeline.embeddings import (
    embedding_text,
    embeddings_applied,
    read_embedding,
    token_pool,
)
from workers.imaging.pipeline.generate import generate_batch, generate_images
from workers.imaging.pipeline.loading import (
    ModelRefused,
    check_diffusers_folder,
    load_pipeline,
    single_file_family,
)
from workers.imaging.pipeline.loras import read_lora
from workers.imaging.pipeline.progress import GenerationCancelled
from workers.imaging.pipeline.request import (
    ControlNetSpec,
    GeneratedImage,
    GenerationRequest,
    HiresFix,
    ImageUpscaler,
    InvalidRequest,
)

__all__ = [
    "ControlNetSpec",
    "GeneratedImage",
    "GenerationCancelled",
    "GenerationRequest",
    "HiresFix",
    "ImageUpscaler",
    "InvalidRequest",
    "ModelRefused",
    "canny_image",
    "check_diffusers_folder",
    "embedding_text",
    "embeddings_applied",
    "generate_batch",
    "generate_images",
    "load_pipeline",
    "read_embedding",
    "read_lora",
    "single_file_family",
    "token_pool",
]
