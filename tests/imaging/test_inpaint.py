"""Inpainting with ordinary (4-channel) checkpoints: only the masked pixels change.

The tiny random pipeline checks the mechanics in seconds; the digits demo model (trained once,
minutes, shared with test_demo_model.py) checks it on the platform's own model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image, ImageDraw

from workers.imaging.inpaint import (
    InpaintSettings,
    MaskError,
    composite,
    crop_region,
    expand_to_ratio,
    mask_gray,
    plan_inpaint,
)
from workers.imaging.pipeline import GenerationRequest, InvalidRequest, generate_images
from workers.imaging.pipeline.inpainting import inpaint_images

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


def square_mask(size: int, box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Where two RGB images differ at all: a boolean map."""
    return (np.asarray(a, dtype=np.int16) != np.asarray(b, dtype=np.int16)).any(axis=-1)


def outside(box: tuple[int, int, int, int], margin: int, size: int) -> np.ndarray:
    """The pixels further than `margin` from the (inclusive) box."""
    keep = np.ones((size, size), dtype=bool)
    x1, y1, x2, y2 = box
    keep[max(y1 - margin, 0) : y2 + margin + 1, max(x1 - margin, 0) : x2 + margin + 1] = False
    return keep


# ---------------------------------------------------------------- pure mask handling


def test_a_white_stroke_on_a_transparent_layer_is_the_mask_as_drawn():
    layer = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    layer.putpixel((2, 3), (255, 255, 255, 255))
    gray = mask_gray(layer)
    assert gray.mode == "L" and gray.getbbox() == (2, 3, 3, 4)
    assert mask_gray(layer, invert=True).getpixel((2, 3)) == 0


def test_only_masked_crop_is_padded_widened_to_the_generation_ratio_and_kept_inside():
    mask = square_mask(100, (40, 40, 49, 49))
    assert crop_region(mask, 5) == (35, 35, 55, 55)
    # 20 x 20 widened to 2:1 about its middle
    assert expand_to_ratio((35, 35, 55, 55), 64, 32, 100, 100) == (25, 35, 65, 55)
    # near the left edge the box is shifted back inside, never cut
    assert expand_to_ratio((0, 35, 20, 55), 64, 32, 100, 100) == (0, 35, 40, 55)


def test_a_mask_drawn_for_another_picture_or_empty_is_refused_with_the_reason():
    init = Image.new("RGB", (64, 32), "gray")
    with pytest.raises(MaskError, match="the mask is 32x32 and the init image 64x32"):
        plan_inpaint(init, InpaintSettings(mask=square_mask(32, (1, 1, 4, 4))), (64, 32))
    with pytest.raises(MaskError, match="the mask is empty"):
        plan_inpaint(init, InpaintSettings(mask=Image.new("L", (64, 32), 0)), (64, 32))
    with pytest.raises(MaskError, match="mask blur"):
        InpaintSettings(mask=init, blur=99)


def test_composite_keeps_every_unmasked_pixel_byte_for_byte():
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    mask = square_mask(48, (20, 20, 27, 27))
    plan = plan_inpaint(original, InpaintSettings(mask=mask, blur=2), (48, 48))
    result = composite(plan, Image.new("RGB", (48, 48), "red"))
    diff = changed(result, original)
    assert diff[20:28, 20:28].all()
    assert not diff[np.asarray(plan.overlay) == 0].any()
    assert not diff[outside((20, 20, 27, 27), 3 * 2, 48)].any()


# ---------------------------------------------------------------- the tiny pipeline


@pytest.fixture(scope="module")
def init_image(pipe):
    return generate_images(
        pipe, GenerationRequest(prompt="a cat", steps=3, seed=11, width=64, height=64)
    )[0].image


@pytest.mark.parametrize("only_masked", [False, True], ids=["whole picture", "only masked"])
def test_inpainting_changes_the_masked_pixels_and_keeps_the_rest_exactly(
    pipe, init_image, only_masked
):
    box = (24, 24, 39, 39)
    req = GenerationRequest(
        prompt="a dog",
        steps=4,
        seed=5,
        width=64,
        height=64,
        init_image=init_image,
        denoising_strength=0.9,
        batch_size=2,
    )
    settings = InpaintSettings(
        mask=square_mask(64, box), blur=2, only_masked=only_masked, padding=8
    )
    images = inpaint_images(pipe, req, settings)

    assert [g.seed for g in images] == [5, 6]
    for generated in images:
        assert generated.image.size == (64, 64)
        diff = changed(generated.image, init_image)
        assert diff[28:36, 28:36].mean() > 0.9  # redrawn inside
        assert not diff[outside(box, 3 * 2, 64)].any()  # untouched outside, byte for byte
    assert not np.array_equal(np.asarray(images[0].image), np.asarray(images[1].image))
    params = images[0].params
    assert params["Mask blur"] == 2 and params["Denoising strength"] == 0.9
    assert ("Inpaint area" in params) is only_masked


def test_inpaint_not_masked_redraws_the_outside_instead(pipe, init_image):
    box = (16, 16, 47, 47)
    req = GenerationRequest(
        prompt="a dog", steps=3, seed=2, width=64, height=64, init_image=init_image
    )
    image = inpaint_images(
        pipe, req, InpaintSettings(mask=square_mask(64, box), blur=0, invert=True)
    )[0]
    diff = changed(image.image, init_image)
    assert not diff[16:48, 16:48].any() and diff[:8].mean() > 0.9
    assert image.params["Mask mode"] == "Inpaint not masked"


def test_inpainting_refuses_a_request_without_init_image_or_with_hires(pipe, init_image):
    settings = InpaintSettings(mask=square_mask(64, (1, 1, 5, 5)))
    with pytest.raises(InvalidRequest, match="init image"):
        inpaint_images(pipe, GenerationRequest(prompt="x", width=64, height=64), settings)
    hires = GenerationRequest(prompt="x", init_image=init_image, width=64, height=64, hires={})
    with pytest.raises(InvalidRequest, match="hi-res"):
        inpaint_images(pipe, hires, settings)


# ---------------------------------------------------------------- the digits demo model


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_digits_demo_model_redraws_only_the_masked_pixels():
    """A1111's recipe for a normal checkpoint on the platform's own model: pixels further than
    the blur margin from the mask are the init image's exactly; the masked ones are redrawn."""
    from workers.imaging.demo_model import ensure_digits_pipeline
    from workers.imaging.pipeline import load_pipeline

    models = Path(settings.MODELS_DIR)  # the tests' own folder (tests/conftest.py)
    pipe = load_pipeline(ensure_digits_pipeline(models), device="cpu", dtype="float32")
    seven = generate_images(
        pipe,
        GenerationRequest(prompt="a handwritten digit 7", steps=20, seed=3, width=32, height=32),
    )[0].image
    box = (8, 14, 23, 29)  # the lower half, where a 7's stroke and a 1's differ
    images = inpaint_images(
        pipe,
        GenerationRequest(
            prompt="a handwritten digit 1",
            steps=20,
            seed=4,
            width=32,
            height=32,
            init_image=seven,
            denoising_strength=1.0,
        ),
        InpaintSettings(mask=square_mask(32, box), blur=1),
    )
    diff = changed(images[0].image, seven)
    assert diff[box[1] : box[3] + 1, box[0] : box[2] + 1].mean() > 0.5
    assert not diff[outside(box, 3, 32)].any()
