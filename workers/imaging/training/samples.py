"""Sample images while a run trains: the sample prompts rendered by the platform's own generator
(the weights as they are at that step), joined side by side into one preview for the job page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["render_samples", "sample_sheet"]

SAMPLE_SAMPLER = "DDIM"
MIN_PREVIEW_SIDE = (
    128  # tiny models train at 32 px: shown larger (nearest) so the page can see them
)


def render_samples(
    pipe: Any,
    prompts: Sequence[str],
    *,
    resolution: int,
    steps: int,
    cfg_scale: float,
    seed: int,
    embeddings: Sequence[tuple[str, str]] = (),
) -> list[Any]:
    """One image per prompt, each with `seed`: the same prompt at two steps differs only by what
    was learned in between. `embeddings` are (name, .safetensors path) pairs as generation takes
    them. The pipeline's modules are put in eval mode while sampling and restored after."""
    from workers.imaging.pipeline import GenerationRequest, generate_images

    modes = [(m, m.training) for m in (pipe.unet, pipe.text_encoder, pipe.vae) if m is not None]
    for module, _ in modes:
        module.eval()
    try:
        images = []
        for prompt in prompts:
            request = GenerationRequest(
                prompt=prompt,
                sampler=SAMPLE_SAMPLER,
                steps=steps,
                cfg_scale=cfg_scale,
                seed=seed,
                width=resolution,
                height=resolution,
                embeddings=tuple(embeddings),
            )
            images += [generated.image for generated in generate_images(pipe, request)]
        return images
    finally:
        for module, training in modes:
            module.train(training)


def sample_sheet(images: Sequence[Any]) -> Any:
    """The images side by side in one PIL image, enlarged (nearest) when they are tiny."""
    from PIL import Image

    if not images:
        raise ValueError("no images")
    side = max(max(img.size) for img in images)
    factor = max(1, -(-MIN_PREVIEW_SIDE // side))
    width = sum(img.width for img in images) * factor
    height = max(img.height for img in images) * factor
    sheet = Image.new("RGB", (width, height), "white")
    x = 0
    for img in images:
        big = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
        sheet.paste(big.convert("RGB"), (x, 0))
        x += big.width
    return sheet
