"""Image generation (workers.imaging.pipeline) on the tiny random pipeline built in code.

Everything runs on CPU in a few seconds: 64 px images, 4-8 steps. What matters here is the
plumbing (seeds, sizes, passes, progress, cancel, batching), not what the images show; the demo
model's test (test_demo_model.py) checks that prompts turn into the right pictures.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.imaging.pixels import assert_same_up_to_rounding
from workers.imaging.infotext import parse_infotext, read_png_parameters, write_png
from workers.imaging.pipeline import (
    GeneratedImage,
    GenerationCancelled,
    GenerationRequest,
    InvalidRequest,
    ModelRefused,
    canny_image,
    generate_batch,
    generate_images,
    load_pipeline,
)
from workers.ml.reporting import JobCancelled

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


def request(**overrides) -> GenerationRequest:
    fields = {
        "prompt": "a (red:1.3) house on a [hill], sun",
        "negative_prompt": "blurry",
        "sampler": "Euler a",
        "steps": 5,
        "cfg_scale": 7.0,
        "seed": 1234,
        "width": 64,
        "height": 64,
    }
    fields.update(overrides)
    return GenerationRequest(**fields)


def png_pixels(result: GeneratedImage) -> bytes:
    """Write the image as the platform does (PNG with infotext), read it back: its pixel bytes."""
    buffer = io.BytesIO()
    write_png(result.image, buffer, result.infotext)
    buffer.seek(0)
    with Image.open(buffer) as png:
        return png.convert("RGB").tobytes()


class CountCalls:
    """Counts forward calls of a module (hooks fire for every __call__)."""

    def __init__(self, module) -> None:
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.calls += 1

    def close(self) -> None:
        self.handle.remove()


# ---------------------------------------------------------------- determinism and seeds


def test_same_seed_gives_identical_png_pixels_and_another_seed_differs(pipe):
    first = generate_images(pipe, request())
    again = generate_images(pipe, request())
    other = generate_images(pipe, request(seed=1235))
    assert len(first) == 1 and first[0].image.size == (64, 64)
    assert png_pixels(first[0]) == png_pixels(again[0])
    assert png_pixels(first[0]) != png_pixels(other[0])
    assert first[0].seed == 1234 and other[0].seed == 1235


def test_infotext_records_the_parameters(pipe):
    [result] = generate_images(pipe, request(sampler="DPM++ 2M Karras", cfg_scale=5.5))
    buffer = io.BytesIO()
    write_png(result.image, buffer, result.infotext)
    parsed = parse_infotext(read_png_parameters(buffer.getvalue()))
    assert parsed["Prompt"] == "a (red:1.3) house on a [hill], sun"
    assert parsed["Negative prompt"] == "blurry"
    assert parsed["Steps"] == "5"
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["CFG scale"] == "5.5"
    assert parsed["Seed"] == "1234"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("64", "64")


def test_random_seed_is_recorded_and_reproduces_the_image(pipe):
    results = generate_images(pipe, request(seed=-1, batch_size=2))
    seed = results[0].seed
    assert seed >= 0 and [r.seed for r in results] == [seed, seed + 1]
    assert results[0].params["Seed"] == seed
    [again] = generate_images(pipe, request(seed=seed))
    # The first image of a batch of two against the image alone: other shapes, so up to rounding
    # (tests/imaging/pixels.py).
    assert_same_up_to_rounding(again.image, results[0].image)


def test_batch_count_and_size_use_seed_plus_index_like_a1111(pipe):
    results = generate_images(pipe, request(seed=50, batch_count=2, batch_size=2, steps=4))
    assert [r.seed for r in results] == [50, 51, 52, 53]
    assert [r.index for r in results] == [0, 1, 2, 3]
    # The i-th image is the image that seed + i gives on its own (batches of two against one
    # image: other shapes, so up to rounding, see tests/imaging/pixels.py).
    for r in results:
        [alone] = generate_images(pipe, request(seed=r.seed, steps=4))
        assert_same_up_to_rounding(alone.image, r.image, f"seed {r.seed}")


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "UniPC", "Heun"])
def test_samplers_run_and_report_every_step(pipe, sampler):
    steps = []
    results = generate_images(
        pipe, request(sampler=sampler, steps=4), on_step=lambda s, t: steps.append((s, t))
    )
    assert results[0].image.size == (64, 64)
    total = steps[-1][1]
    assert [s for s, _ in steps] == list(range(1, total + 1))
    assert all(t == total for _, t in steps)


# ---------------------------------------------------------------- img2img, hi-res fix, ControlNet


def test_img2img_produces_the_requested_size(pipe):
    init = Image.new("RGB", (50, 40), "red")
    steps = []
    results = generate_images(
        pipe,
        request(init_image=init, width=64, height=32, steps=6, denoising_strength=0.5),
        on_step=lambda s, t: steps.append((s, t)),
    )
    assert results[0].image.size == (64, 32)
    assert steps[-1] == (3, 3)  # img2img runs steps × denoising strength
    assert results[0].params["Denoising strength"] == 0.5
    again = generate_images(
        pipe, request(init_image=init, width=64, height=32, steps=6, denoising_strength=0.5)
    )
    assert again[0].image.tobytes() == results[0].image.tobytes()


@pytest.mark.parametrize(
    ("upscaler", "base", "scale", "expected"),
    [("latent", 32, 2.0, (64, 64)), ("lanczos", 64, 1.5, (96, 96))],
)
def test_hires_fix_upscales_and_runs_a_second_pass(pipe, upscaler, base, scale, expected):
    steps = []
    hires = {"scale": scale, "steps": 4, "denoise": 0.5, "upscaler": upscaler}
    results = generate_images(
        pipe,
        request(width=base, height=base, steps=4, hires=hires),
        on_step=lambda s, t: steps.append((s, t)),
    )
    assert results[0].image.size == expected
    assert steps[-1] == (6, 6)  # 4 first-pass steps + 4 × 0.5 hi-res steps
    params = results[0].params
    assert params["Size"] == f"{base}x{base}"
    assert params["Hires upscaler"] == upscaler.capitalize()
    assert params["Hires resize"] == f"{expected[0]}x{expected[1]}"
    assert params["Denoising strength"] == 0.5


def _control_source() -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 48, 48), fill="white")
    return image


def test_canny_preprocessing_finds_edges():
    edges = np.asarray(canny_image(_control_source(), 100, 200))
    assert edges.shape == (64, 64, 3)
    assert edges[32, 32].sum() == 0  # inside the square: no edge
    assert edges[16, 16:48].max() == 255 or edges[15:18, 32].max() == 255


def test_controlnet_canny_runs_and_steers_the_image(pipe, tmp_path):
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(
        pipe.unet, conditioning_embedding_out_channels=(8, 16, 32, 32)
    )
    # from_unet zero-initialises the output convolutions (no effect yet): give them weights.
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            for p in block.parameters():
                p.normal_(0.0, 0.05)
    spec = {"type": "canny", "image": _control_source(), "low": 100, "high": 200}
    plain = generate_images(pipe, request(steps=4))
    controlled = generate_images(pipe, request(steps=4, controlnet={**spec, "model": controlnet}))
    assert controlled[0].image.size == (64, 64)
    assert controlled[0].image.tobytes() != plain[0].image.tobytes()
    assert "Module: canny" in controlled[0].params["ControlNet 0"]
    # A registered ControlNet is a folder of safetensors weights: same model, same image. Exact:
    # the same weights in aligned memory (load path), the same shapes, so the same operations.
    controlnet.save_pretrained(tmp_path / "cn", safe_serialization=True)
    from_folder = generate_images(
        pipe, request(steps=4, controlnet={**spec, "model": str(tmp_path / "cn")})
    )
    assert from_folder[0].image.tobytes() == controlled[0].image.tobytes()
    assert "Model: cn" in from_folder[0].params["ControlNet 0"]
    hires = generate_images(
        pipe,
        request(steps=4, width=32, height=32, hires={"scale": 2, "denoise": 0.5},
                controlnet={**spec, "model": controlnet}),
    )  # fmt: skip
    assert hires[0].image.size == (64, 64)
    # Without CFG a single image is one UNet row: padded to two, residuals included.
    no_cfg = generate_images(
        pipe, request(steps=3, cfg_scale=1.0, controlnet={**spec, "model": controlnet})
    )
    assert no_cfg[0].image.size == (64, 64)


# ---------------------------------------------------------------- progress, previews, cancel


def test_previews_are_small_images_during_denoising(pipe):
    previews, steps = [], []
    generate_images(
        pipe,
        request(steps=5),
        on_step=lambda s, t: steps.append(s),
        on_preview=previews.append,
        preview_interval=0.0,
    )
    assert steps == [1, 2, 3, 4, 5]
    assert 1 <= len(previews) <= 4  # never for the last step: the image itself follows
    assert all(isinstance(p, Image.Image) and max(p.size) <= 256 for p in previews)


def test_previews_are_throttled(pipe):
    previews = []
    generate_images(pipe, request(steps=5), on_preview=previews.append, preview_interval=3600)
    assert previews == []


def test_cancel_stops_at_the_next_step(pipe):
    counter = CountCalls(pipe.unet)
    steps = []
    try:
        with pytest.raises(GenerationCancelled) as info:
            generate_images(
                pipe,
                request(steps=10),
                on_step=lambda s, t: steps.append(s),
                should_stop=lambda: counter.calls >= 3,
            )
    finally:
        counter.close()
    assert isinstance(info.value, JobCancelled)
    assert counter.calls == 3  # no UNet call after the step that saw the stop
    assert steps == [1, 2, 3]
    assert info.value.steps_done == 3


def test_cancel_before_start_runs_nothing(pipe):
    counter = CountCalls(pipe.unet)
    try:
        with pytest.raises(JobCancelled):
            generate_images(pipe, request(), should_stop=lambda: True)
    finally:
        counter.close()
    assert counter.calls == 0


# ---------------------------------------------------------------- batching


def test_batch_gives_each_request_its_solo_images_in_one_call(pipe):
    requests = [
        request(prompt="a red house", seed=10, steps=6),
        request(prompt="(a blue:1.4) boat, sea", negative_prompt="", seed=20, batch_size=2, steps=6),
        request(prompt="数字七", seed=-1, steps=6),
        request(prompt="a tree", seed=30, steps=6, cfg_scale=1.0),  # no CFG: another group
        request(prompt="a cat", seed=40, steps=6,
                init_image=Image.new("RGB", (64, 64), "blue")),  # img2img: runs alone
    ]  # fmt: skip
    counter = CountCalls(pipe.unet)
    steps = []
    try:
        batched = generate_batch(pipe, requests, on_step=lambda s, t: steps.append((s, t)))
    finally:
        counter.close()
    # One call of 6 steps for the first three requests (4 images), one for the no-CFG request,
    # 6 × 0.75 = 4 img2img steps for the last.
    assert counter.calls == 6 + 6 + 4
    assert steps[-1] == (16, 16)
    assert [len(images) for images in batched] == [1, 2, 1, 1, 1]
    random_seed = batched[2][0].seed
    assert random_seed >= 0
    for req, images in zip(requests, batched, strict=True):
        if req.seed == -1:
            req = request(prompt=req.prompt, seed=random_seed, steps=6)
        alone = generate_images(pipe, req)
        assert [g.seed for g in images] == [g.seed for g in alone]
        assert [g.index for g in images] == [g.index for g in alone]
        assert [g.params for g in images] == [g.params for g in alone]
        # One call for several requests against each alone: other shapes (the UNet's batch, the
        # attention matrices), so up to rounding (tests/imaging/pixels.py).
        for got, solo in zip(images, alone, strict=True):
            assert_same_up_to_rounding(got.image, solo.image, f"seed {got.seed}")


def test_batch_respects_max_images_per_call(pipe):
    requests = [request(prompt=f"house {i}", seed=i, steps=3) for i in range(5)]
    counter = CountCalls(pipe.unet)
    try:
        batched = generate_batch(pipe, requests, max_images_per_call=2)
    finally:
        counter.close()
    assert counter.calls == 3 * 3  # ceil(5 / 2) calls of 3 steps
    assert [g.seed for images in batched for g in images] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- LoRAs


@pytest.fixture(scope="module")
def lora_file(tiny_path, tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = load_pipeline(tiny_path, device="cpu")
    torch.manual_seed(1)
    config = LoraConfig(
        r=4,
        lora_alpha=4,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,  # random B: the LoRA changes the output from the start
    )
    donor.unet.add_adapter(config)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(donor.unet))
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers)
    return folder / "pytorch_lora_weights.safetensors"


def test_lora_changes_the_image_and_is_unloaded_after(pipe, lora_file):
    base = generate_images(pipe, request(steps=4))[0].image.tobytes()
    with_lora = generate_images(pipe, request(steps=4, loras=[(str(lora_file), 1.0)]))
    assert with_lora[0].image.tobytes() != base
    again = generate_images(pipe, request(steps=4, loras=[(str(lora_file), 1.0)]))
    assert again[0].image.tobytes() == with_lora[0].image.tobytes()
    assert generate_images(pipe, request(steps=4))[0].image.tobytes() == base
    assert not any(pipe.get_list_adapters().values())


def test_lora_weight_is_applied(pipe, lora_file):
    full = generate_images(pipe, request(steps=4, loras=[(str(lora_file), 1.0)]))[0]
    half = generate_images(pipe, request(steps=4, loras=[(str(lora_file), 0.5)]))[0]
    assert full.image.tobytes() != half.image.tobytes()


def test_loaded_weights_and_loras_live_in_aligned_memory(pipe, lora_file):
    """safetensors tensors live at their offset in the mapped file, and CPU kernels may round by
    a weight's address: loaded weights are moved to torch's 64-byte aligned memory, so the same
    model gives the same pixels whatever file it came from (test_single_file.py)."""
    from workers.imaging.pipeline import read_lora

    for name in ("unet", "vae", "text_encoder"):
        tensors = [*getattr(pipe, name).parameters(), *getattr(pipe, name).buffers()]
        assert all(t.data_ptr() % 64 == 0 for t in tensors), name
    assert all(t.data_ptr() % 64 == 0 for t in read_lora(str(lora_file)).values())


def test_pickle_lora_is_refused(pipe, tmp_path):
    path = tmp_path / "style.pt"
    path.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelRefused, match="pickle"):
        generate_images(pipe, request(steps=2, loras=[(str(path), 1.0)]))


# ---------------------------------------------------------------- loading and validation


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.bin", "model.pth"])
def test_pickle_checkpoints_are_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    with pytest.raises(ModelRefused, match="pickle"):
        load_pipeline(path)


def test_folder_with_only_pickle_weights_is_refused(tiny_path, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_path, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelRefused, match="unet"):
        load_pipeline(folder)


def test_non_checkpoint_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelRefused, match="not a Stable Diffusion checkpoint"):
        load_pipeline(path)


def test_loaded_pipeline_is_safetensors_only_and_quiet(pipe):
    assert pipe.safety_checker is None
    assert pipe.device.type == "cpu"


@pytest.mark.parametrize(
    "overrides",
    [
        {"width": 65},
        {"height": 0},
        {"steps": 0},
        {"cfg_scale": 31},
        {"seed": -2},
        {"sampler": "Nonsense sampler"},
        {"denoising_strength": 0.0},
        {"batch_size": 0},
        {"hires": {"scale": 2, "upscaler": "esrgan-unknown"}},
        {"controlnet": {"type": "depth", "image": Image.new("RGB", (8, 8))}},
        {"loras": [("x.safetensors", "strong")]},
    ],
)
def test_invalid_requests_are_refused_with_a_message(overrides):
    with pytest.raises(InvalidRequest):
        request(**overrides)


def test_request_normalises_nested_settings():
    req = request(hires={"scale": 2, "upscaler": "Lanczos"}, loras=[["a.safetensors", 1]])
    assert req.hires.upscaler == "lanczos" and req.hires.target_size(64, 48) == (128, 96)
    assert req.loras == (("a.safetensors", 1.0),)


def test_img2img_and_hires_run_at_least_one_step_when_steps_times_denoise_is_below_one(pipe):
    # diffusers runs int(steps * strength) steps (none for 2 x 0.3); A1111 always runs one.
    base = generate_images(pipe, request(steps=2, width=32, height=32))[0].image
    seen: list[tuple[int, int]] = []
    out = generate_images(
        pipe,
        request(steps=2, width=32, height=32, init_image=base, denoising_strength=0.3),
        on_step=lambda step, total, *a: seen.append((step, total)),
    )
    assert out[0].image.size == (32, 32) and seen and seen[-1][0] == seen[-1][1]
    hires = generate_images(
        pipe, request(steps=2, width=32, height=32, hires={"scale": 2, "steps": 2, "denoise": 0.3})
    )
    assert hires[0].image.size == (64, 64)
