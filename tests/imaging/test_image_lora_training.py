"""Image LoRA training (workers.imaging.training): generations move toward the training images,
the file loads in plain diffusers, crash + resume gives the same LoRA, cancel stops at a checkpoint.

The "moves toward" tests train on the digits demo model (trained once into the tests' models folder by the demo
model's own slow test, or here on first use; a few minutes on 2 cores) because a LoRA can only
nudge a model that already denoises: on the random tiny pipeline there is nothing to nudge. The
resume and cancel tests use the tiny random pipeline, where exact equality is what counts.

The metric: each generated image's mean absolute pixel difference (greyscale, 0..1) to the
nearest of the 8 training images, averaged over 8 seeds; and the digit a judge (an SVC trained on
digits the generator never saw) reads in each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from workers.imaging.training import (
    LORA_FILE,
    ConfigError,
    Example,
    ImageLoraConfig,
    train_image_lora,
)
from workers.ml.checkpoints import MARKER_NAME
from workers.ml.reporting import RecordingReporter

DIGIT = 3
PROMPT = "zwx, a handwritten digit"
SEEDS = 1000  # the 8 images of a comparison use seeds 1000..1007
# Seen on 2 AMD EPYC cores: 0.176 without, 0.108 with the LoRA (0.61x); the judge read 7 of 8
# as a 3 with it, 0 of 8 without. Asserted with room for another CPU's rounding.
LORA_MAX_RATIO = 0.8


def digit_set(folder: Path, digit: int = DIGIT, n: int = 8) -> list[Example]:
    """`n` scikit-learn digits of one class as 32 px PNGs (dark ink on white, as the demo model
    draws them), each captioned "a handwritten digit" without saying which."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    examples = []
    for i, ink in enumerate(digits.images[digits.target == digit][-n:] / 16.0):
        image = Image.fromarray((255 * (1 - ink)).astype(np.uint8)).resize((32, 32), Image.BILINEAR)
        path = folder / f"{digit}-{i}.png"
        image.convert("RGB").save(path)
        examples.append(Example(path, "a handwritten digit"))
    return examples


def greys(images) -> np.ndarray:
    return np.stack([np.asarray(img.convert("L"), dtype=np.float32) / 255 for img in images])


def nearest_distance(images, examples: list[Example]) -> float:
    """Mean over `images` of the mean |pixel difference| to the nearest training image."""
    train = greys([Image.open(e.image) for e in examples])
    got = greys(images)
    return float(np.abs(got[:, None] - train[None]).mean(axis=(2, 3)).min(axis=1).mean())


def platform_images(pipe, prompt: str, **extra) -> list:
    from workers.imaging.pipeline import GenerationRequest, generate_images

    request = GenerationRequest(
        prompt=prompt,
        sampler="DDIM",
        steps=20,
        cfg_scale=5.0,
        seed=SEEDS,
        width=32,
        height=32,
        batch_size=8,
        **extra,
    )
    return [g.image for g in generate_images(pipe, request)]


def plain_diffusers_images(pipe, prompt: str) -> list:
    """What a user's own script does: the pipeline's call with seeded generators."""
    import torch

    generators = [torch.Generator().manual_seed(SEEDS + i) for i in range(8)]
    return pipe(
        [prompt] * 8,
        num_inference_steps=20,
        guidance_scale=5.0,
        height=32,
        width=32,
        generator=generators,
    ).images


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ on the digits demo model


@pytest.fixture(scope="module")
def digits_model() -> Path:
    from workers.imaging.demo_model import ensure_digits_pipeline

    return ensure_digits_pipeline(Path(settings.MODELS_DIR))


@pytest.fixture(scope="module")
def digit_examples(tmp_path_factory) -> list[Example]:
    return digit_set(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def trained(digits_model, digit_examples, tmp_path_factory):
    config = ImageLoraConfig(
        resolution=32,
        steps=150,
        batch_size=4,
        learning_rate=1e-3,
        rank=4,
        trigger_word="zwx",
        sample_prompts=(PROMPT, "a handwritten digit 7"),
        sample_every=50,
        sample_steps=10,
        save_every=1000,
        log_every=10,
    )
    reporter = RecordingReporter()
    out = tmp_path_factory.mktemp("lora-run")
    result = train_image_lora(
        config,
        base_model_dir=digits_model,
        examples=digit_examples,
        output_dir=out,
        reporter=reporter,
        device="cpu",
    )
    return result, reporter, out


@pytest.mark.slow
def test_the_lora_moves_generations_toward_the_training_images(
    trained, digits_model, digit_examples
):
    from workers.imaging.demo_model import judge_digits
    from workers.imaging.pipeline import load_pipeline

    result, _, _ = trained
    pipe = load_pipeline(digits_model, device="cpu", dtype="float32")

    without = platform_images(pipe, PROMPT)
    with_lora = platform_images(pipe, PROMPT, loras=[(result.artifact, 1.0)])

    far, near = (
        nearest_distance(without, digit_examples),
        nearest_distance(with_lora, digit_examples),
    )
    assert near <= LORA_MAX_RATIO * far, (near, far)
    read_with, read_without = judge_digits(with_lora), judge_digits(without)
    assert read_with.count(DIGIT) >= 5 and read_with.count(DIGIT) > read_without.count(DIGIT), (
        read_with,
        read_without,
    )


@pytest.mark.slow
def test_the_lora_loads_in_a_plain_diffusers_script(trained, digits_model, digit_examples):
    import torch
    from diffusers import StableDiffusionPipeline

    result, _, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(digits_model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    without = plain_diffusers_images(pipe, PROMPT)

    pipe.load_lora_weights(str(Path(result.artifact).parent), weight_name=LORA_FILE)
    with_lora = plain_diffusers_images(pipe, PROMPT)

    far, near = (
        nearest_distance(without, digit_examples),
        nearest_distance(with_lora, digit_examples),
    )
    assert near <= LORA_MAX_RATIO * far, (near, far)


@pytest.mark.slow
def test_loss_samples_and_the_file_are_reported(trained):
    from workers.imaging.assets import inspect_lora

    result, reporter, out = trained
    assert result.status == "succeeded" and result.global_step == 150
    logged = reporter.metric_steps
    assert [step for step, _ in logged] == list(range(10, 151, 10))
    assert all({"loss", "learning_rate", "steps_per_second"} <= set(m) for _, m in logged)
    # Two prompts side by side, every 50 steps, enlarged from 32 px so the page can show them.
    assert len(reporter.previews) == 3
    assert reporter.previews[0].size == (2 * 128, 128)
    info = inspect_lora(result.artifact)
    assert info["rank"] == 4 and info["format"] == "diffusers"
    assert Path(result.artifact) == out / "lora" / LORA_FILE


# ------------------------------------------------------------------ resume and cancel (tiny)

TINY = ImageLoraConfig(
    resolution=32,
    steps=12,
    batch_size=2,
    learning_rate=1e-2,
    rank=2,
    alpha=4,
    random_flip=True,
    lr_scheduler="cosine",
    warmup_steps=2,
    save_every=4,
    log_every=3,
    sample_prompts=("a box",),
    sample_every=5,
    sample_steps=2,
)


def boxes(folder: Path) -> list[Example]:
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for i in range(5):
        path = folder / f"box-{i}.png"
        Image.new("RGB", (40, 48), (40 * i, 100, 200)).save(path)
        examples.append(Example(path, f"a box {i}"))
    return examples


class CrashAt(RecordingReporter):
    """A worker killed after step `at` (anything raised there ends the run, as a crash does)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def step(self, step, total, metrics=None):
        super().step(step, total, metrics)
        if step == self.at:
            raise SystemExit("worker killed")


class StopAt(RecordingReporter):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def should_stop(self) -> bool:
        return any(step >= self.at for step, _, _ in self.steps)


def _train(tiny_path, examples, out, reporter):
    return train_image_lora(
        TINY,
        base_model_dir=tiny_path,
        examples=examples,
        output_dir=out,
        reporter=reporter,
        device="cpu",
    )


def _weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def tiny_runs(tiny_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-lora")
    examples = boxes(root / "images")
    full = _train(tiny_path, examples, root / "full", RecordingReporter())
    with pytest.raises(SystemExit):
        _train(tiny_path, examples, root / "crashed", CrashAt(7))
    resumed_reporter = RecordingReporter()
    resumed = _train(tiny_path, examples, root / "crashed", resumed_reporter)
    stopped = _train(tiny_path, examples, root / "stopped", StopAt(5))
    stopped_files = sorted(p.name for p in Path(stopped.checkpoint).iterdir())
    lora_after_stop = (root / "stopped" / "lora").exists()
    after_stop = _train(tiny_path, examples, root / "stopped", RecordingReporter())
    return {
        "full": full,
        "resumed": resumed,
        "resumed_reporter": resumed_reporter,
        "stopped": stopped,
        "stopped_files": stopped_files,
        "lora_after_stop": lora_after_stop,
        "after_stop": after_stop,
    }


def test_a_crashed_run_resumes_from_its_checkpoint_with_the_same_lora(tiny_runs):
    full, resumed = tiny_runs["full"], tiny_runs["resumed"]
    assert resumed.status == "succeeded" and resumed.resumed_from_step == 4  # saved at 4, died at 7
    steps = [step for step, _, _ in tiny_runs["resumed_reporter"].steps]
    assert steps[0] == 5 and steps[-1] == 12  # no step was trained twice or skipped
    a, b = _weights(full.artifact), _weights(resumed.artifact)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # bit for bit on CPU
    assert resumed.metrics["train_loss"] == full.metrics["train_loss"]


def test_cancel_stops_at_the_next_step_with_a_checkpoint_and_no_lora(tiny_runs):
    stopped = tiny_runs["stopped"]
    assert stopped.status == "cancelled" and stopped.global_step == 5
    assert stopped.artifact is None and not tiny_runs["lora_after_stop"]
    assert MARKER_NAME in tiny_runs["stopped_files"]
    assert "trained.safetensors" in tiny_runs["stopped_files"]
    again = tiny_runs["after_stop"]
    assert again.resumed_from_step == 5
    a, b = _weights(tiny_runs["full"].artifact), _weights(again.artifact)
    assert all(a[k].equal(b[k]) for k in a)


def test_a_finished_run_is_not_trained_again(tiny_runs, tiny_path, tmp_path):
    full = tiny_runs["full"]
    again = _train(tiny_path, [], Path(full.artifact).parents[1], RecordingReporter())
    assert again.artifact == full.artifact and again.status == "succeeded"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"resolution": 100}, "resolution"),
        ({"sample_prompts": "a\nb\nc\nd\ne"}, "sample_prompts"),
        ({"rank": 0}, "rank"),
        ({"lr_scheduler": "warp"}, "lr_scheduler"),
        ({"random_flip": "yes"}, "random_flip"),
    ],
)
def test_the_config_refuses_bad_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        ImageLoraConfig.from_dict(changes)
    assert info.value.field == field
