"""Training images: read, resized and centre-cropped, encoded once by the VAE, drawn in a seeded order.

The diffusers example scripts encode every batch with the VAE at every step. The images of a LoRA
or embedding run are few (5-50) and never change, so their latent distributions (mean and std of
the VAE's posterior, and of the flipped image when flipping is on) are computed once; each step
draws a latent from them with the run's generator, which is what `latent_dist.sample()` would
have done, without the VAE's encoder in the loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.imaging.training.config import TrainingRefused

__all__ = ["Example", "LatentPool", "ShuffledOrder", "caption_with", "load_pixels"]

MIN_IMAGES = 1


@dataclass(frozen=True)
class Example:
    """One training image and its caption."""

    image: Path
    caption: str


def caption_with(word: str, caption: str) -> str:
    """`word, caption` (kohya's trigger-word convention); the caption alone when word is empty,
    the word alone when the caption is."""
    word, caption = word.strip(), caption.strip()
    if not word:
        return caption
    return f"{word}, {caption}" if caption else word


def load_pixels(examples: Sequence[Example], resolution: int) -> Any:
    """The images as a float tensor [n, 3, resolution, resolution] in [-1, 1]: the shorter side
    resized to `resolution` (bilinear, as the diffusers scripts do), then centre-cropped."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    if len(examples) < MIN_IMAGES:
        raise TrainingRefused("no training images")
    rows = []
    for example in examples:
        try:
            with Image.open(example.image) as opened:
                img = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, ValueError) as exc:
            raise TrainingRefused(
                f"{os.fspath(example.image)}: not a readable image ({exc})"
            ) from exc
        w, h = img.size
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        array = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        rows.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(rows)


class LatentPool:
    """The VAE posterior (mean, std) of every training image, and of its mirror image when flips
    are on, scaled as the UNet sees latents; `draw` samples a batch with the run's generator."""

    def __init__(self, vae: Any, pixels: Any, *, flip: bool, encode_batch: int = 8) -> None:
        import torch

        self.flip = flip
        device, dtype = vae.device, vae.dtype
        scale = vae.config.scaling_factor
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        means, stds = [], []
        variants = [pixels, torch.flip(pixels, dims=[3])] if flip else [pixels]
        with torch.no_grad():
            for variant in variants:
                m, s = [], []
                for start in range(0, variant.shape[0], encode_batch):
                    chunk = variant[start : start + encode_batch].to(device, dtype)
                    dist = vae.encode(chunk).latent_dist
                    m.append(((dist.mean - shift) * scale).float().cpu())
                    s.append((dist.std * scale).float().cpu())
                means.append(torch.cat(m))
                stds.append(torch.cat(s))
        self.mean = torch.stack(means)  # [variants, n, c, h, w]
        self.std = torch.stack(stds)
        self.size = pixels.shape[0]

    def draw(self, indices: Sequence[int], generator: Any) -> Any:
        """Latents for these images (float32, CPU): a posterior sample each, each image mirrored
        with probability 1/2 when flips are on. Draws from `generator` only."""
        import torch

        index = torch.as_tensor(list(indices), dtype=torch.long)
        if self.flip:
            variant = (torch.rand(len(index), generator=generator) < 0.5).long()
        else:
            variant = torch.zeros(len(index), dtype=torch.long)
        mean, std = self.mean[variant, index], self.std[variant, index]
        return mean + std * torch.randn(mean.shape, generator=generator)


class ShuffledOrder:
    """Epochs over `size` images in an order drawn from the run's generator; `state`/`restore`
    carry the current epoch's order and position across a checkpoint."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: list[int] = []
        self.cursor = 0

    def take(self, n: int, generator: Any) -> list[int]:
        import torch

        out: list[int] = []
        while len(out) < n:
            if self.cursor >= len(self.order):
                self.order = torch.randperm(self.size, generator=generator).tolist()
                self.cursor = 0
            out.append(self.order[self.cursor])
            self.cursor += 1
        return out

    def state(self) -> dict[str, Any]:
        return {"order": list(self.order), "cursor": self.cursor}

    def restore(self, state: dict[str, Any]) -> None:
        order = [int(i) for i in state.get("order", [])]
        if sorted(order) != list(range(self.size)) and order:
            raise TrainingRefused("the checkpoint was made with another number of images")
        self.order, self.cursor = order, int(state.get("cursor", 0))
