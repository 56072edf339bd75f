"""Where the initial noise is drawn, and how the infotext's ``RNG`` names it.

A seed only reproduces an image on the same random-number generator: torch's CPU and CUDA
generators give different numbers for one seed. A1111 records its source in the infotext as
``RNG: CPU`` (or ``NV``, its CPU emulation of NVIDIA's generator) and leaves it out for its
default, the GPU; its reader fills in ``GPU`` when the field is missing. Atelier draws each
image's noise (and each img2img posterior sample) from a ``torch.Generator`` on the pipeline's
execution device, so the source is that device: ``CPU`` on a CPU worker, ``GPU`` on CUDA (and
other accelerators). It is always written, so a CPU-made image is not read as GPU-made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["generators", "noise_device", "rng_name"]


def noise_device(pipe: Any) -> Any:
    """The device whose generator draws the noise: the pipeline's execution device."""
    return pipe._execution_device


def generators(pipe: Any, seeds: Sequence[int]) -> list[Any]:
    """One seeded ``torch.Generator`` per image, on :func:`noise_device`."""
    import torch

    device = noise_device(pipe)
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def rng_name(pipe: Any) -> str:
    """The infotext's ``RNG`` for images this pipeline makes: ``CPU`` or ``GPU``."""
    device = noise_device(pipe)
    return "CPU" if getattr(device, "type", str(device)) == "cpu" else "GPU"
