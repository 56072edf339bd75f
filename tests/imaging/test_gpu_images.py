"""Image generation on CUDA, run by `make gpu-check` (skipped without a GPU): the tiny SD
pipeline loads in half precision, txt2img + hi-res fix give the asked sizes, and the same seed
gives the same image twice on the same device."""

from __future__ import annotations

import pytest
import torch

from workers.imaging.pipeline import (
    GenerationRequest,
    generate_batch,
    generate_images,
    load_pipeline,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)"),
]


def test_half_precision_generation_on_cuda_is_deterministic_and_batches(tiny_path):
    pipe = load_pipeline(tiny_path, device="auto", dtype="auto")
    assert pipe.unet.device.type == "cuda" and pipe.unet.dtype in (torch.float16, torch.bfloat16)
    req = GenerationRequest(prompt="a cat", steps=6, width=64, height=64, seed=5)
    first = generate_images(pipe, req)[0].image
    again = generate_images(pipe, req)[0].image
    assert first.size == (64, 64) and first.tobytes() == again.tobytes()
    hires = generate_images(
        pipe, GenerationRequest(prompt="a cat", steps=4, width=32, height=32, seed=5,
                                hires={"scale": 2, "steps": 3, "denoise": 0.5})
    )[0].image  # fmt: skip
    assert hires.size == (64, 64)
    batched = generate_batch(pipe, [req, GenerationRequest(prompt="a dog", steps=6, width=64,
                                                           height=64, seed=6)])  # fmt: skip
    assert [len(r) for r in batched] == [1, 1]
