import subprocess
import sys
from types import SimpleNamespace

import pytest

from workers.ml.reporting import (
    JobCancelled,
    NullReporter,
    RecordingReporter,
    Reporter,
    ThrottledReporter,
    diffusers_step_callback,
    numeric_metrics,
    trainer_callback,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- reporters ---------------------------------------------------------------------------------


def test_null_and_recording_reporters_satisfy_the_protocol():
    assert isinstance(NullReporter(), Reporter)
    assert isinstance(RecordingReporter(), Reporter)
    assert isinstance(ThrottledReporter(NullReporter()), Reporter)


def test_null_reporter_accepts_everything_and_never_stops():
    reporter = NullReporter()
    reporter.step(1, 10, {"loss": 1.0})
    reporter.log("hello", level="warning")
    reporter.preview(object())
    reporter.artifact("/tmp/x.png", name="x")
    assert reporter.should_stop() is False


def test_recording_reporter_keeps_every_call():
    reporter = RecordingReporter()
    reporter.step(1, 3)
    reporter.step(2, 3, {"loss": 0.5})
    reporter.log("saved")
    reporter.preview("image")
    reporter.artifact("/out/a.safetensors", "adapter")

    assert reporter.steps == [(1, 3, None), (2, 3, {"loss": 0.5})]
    assert reporter.metric_steps == [(2, {"loss": 0.5})]
    assert reporter.logs == [("saved", "info")]
    assert reporter.previews == ["image"]
    assert reporter.artifacts == [("/out/a.safetensors", "adapter")]


def test_recording_reporter_asks_to_stop_after_the_given_number_of_steps():
    reporter = RecordingReporter(stop_after_steps=2)
    reporter.step(1, 5)
    assert not reporter.should_stop()
    reporter.step(2, 5)
    assert reporter.should_stop()


def test_recording_reporter_copies_metrics_so_later_mutation_does_not_change_history():
    reporter = RecordingReporter()
    metrics = {"loss": 1.0}
    reporter.step(1, 2, metrics)
    metrics["loss"] = 99.0
    assert reporter.steps[0][2] == {"loss": 1.0}


def test_job_cancelled_is_an_exception():
    with pytest.raises(JobCancelled):
        raise JobCancelled("stopped at step 3")


# ---- throttling --------------------------------------------------------------------------------


def test_throttled_reporter_drops_bare_steps_that_come_too_often():
    clock = FakeClock()
    inner = RecordingReporter()
    reporter = ThrottledReporter(inner, min_interval=0.25, clock=clock)

    reporter.step(1, 100)  # first one always goes through
    clock.now += 0.1
    reporter.step(2, 100)
    clock.now += 0.1
    reporter.step(3, 100)
    clock.now += 0.1
    reporter.step(4, 100)  # 0.3 s after the last forwarded one

    assert [s for s, _, _ in inner.steps] == [1, 4]


def test_throttled_reporter_keeps_every_metric_point():
    clock = FakeClock()
    inner = RecordingReporter()
    reporter = ThrottledReporter(inner, min_interval=10.0, clock=clock)

    for step in range(1, 21):
        clock.now += 0.01
        reporter.step(step, 100, {"loss": 1.0 / step})

    assert [s for s, _ in inner.metric_steps] == list(range(1, 21))


def test_throttled_reporter_always_forwards_the_last_step():
    clock = FakeClock()
    inner = RecordingReporter()
    reporter = ThrottledReporter(inner, min_interval=10.0, clock=clock)

    for step in range(1, 11):
        clock.now += 0.01
        reporter.step(step, 10)

    assert inner.steps == [(1, 10, None), (10, 10, None)]


def test_throttled_reporter_passes_logs_previews_artifacts_and_stop_through():
    inner = RecordingReporter(stop_after_steps=1)
    reporter = ThrottledReporter(inner, min_interval=10.0, clock=FakeClock())

    reporter.log("one", "warning")
    reporter.log("two")
    reporter.preview("img")
    reporter.artifact("/a", "a")
    assert not reporter.should_stop()
    reporter.step(1, 5)

    assert inner.logs == [("one", "warning"), ("two", "info")]
    assert inner.previews == ["img"]
    assert inner.artifacts == [("/a", "a")]
    assert reporter.should_stop()


# ---- transformers ------------------------------------------------------------------------------


def test_numeric_metrics_keeps_real_numbers_as_floats_and_drops_the_rest():
    import numpy as np

    logs = {"loss": 1.5, "epoch": 2, "lr": np.float32(0.5), "note": "x", "flag": True, "n": None}
    metrics = numeric_metrics(logs)
    assert metrics == {"loss": 1.5, "epoch": 2.0, "lr": 0.5}
    assert all(type(v) is float for v in metrics.values())
    assert numeric_metrics(None) == {}


def test_importing_reporting_does_not_import_torch_or_transformers():
    code = (
        "import sys, workers.ml.reporting, workers.ml.checkpoints\n"
        "bad = [m for m in ('torch', 'transformers', 'diffusers', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_trainer_callback_reports_metrics_from_on_log_without_non_numerics():
    reporter = RecordingReporter()
    callback = trainer_callback(reporter)
    state = SimpleNamespace(global_step=3, max_steps=10)
    control = SimpleNamespace(should_log=False, should_training_stop=False)

    callback.on_log(None, state, control, logs={"loss": 2.0, "note": "warmup", "epoch": 0.3})

    assert reporter.steps == [(3, 10, {"loss": 2.0, "epoch": 0.3})]


def _tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=64,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def _token_dataset(rows: int = 8, length: int = 12):
    import torch

    generator = torch.Generator().manual_seed(0)
    data = []
    for _ in range(rows):
        ids = torch.randint(0, 64, (length,), generator=generator)
        data.append(
            {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        )
    return data


def _run_trainer(tmp_path, reporter, **overrides):
    from transformers import Trainer, TrainingArguments

    options = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    options.update(overrides)
    trainer = Trainer(
        model=_tiny_llama(),
        args=TrainingArguments(**options),
        train_dataset=_token_dataset(),
        callbacks=[trainer_callback(reporter)],
    )
    trainer.train()
    return trainer


def test_trainer_callback_records_every_step_with_its_loss(tmp_path):
    reporter = RecordingReporter()
    trainer = _run_trainer(tmp_path, reporter)

    assert trainer.state.global_step == 6
    loss_steps = [(step, m["loss"]) for step, m in reporter.metric_steps if "loss" in m]
    assert [step for step, _ in loss_steps] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(loss, float) and loss > 0 for _, loss in loss_steps)
    assert all(total == 6 for _, total, _ in reporter.steps)
    # With logging_steps=1 every step is reported by on_log, so there are no bare duplicates.
    assert all(metrics for _, _, metrics in reporter.steps)


def test_trainer_callback_reports_bare_steps_between_logs_and_saves(tmp_path):
    reporter = RecordingReporter()
    _run_trainer(tmp_path, reporter, logging_steps=3, save_strategy="steps", save_steps=3)

    bare = [step for step, _, metrics in reporter.steps if metrics is None]
    logged = [step for step, m in reporter.metric_steps if "loss" in m]
    assert bare == [1, 2, 4, 5]
    assert logged == [3, 6]
    assert ("checkpoint saved at step 3", "info") in reporter.logs
    assert ("checkpoint saved at step 6", "info") in reporter.logs


def test_trainer_callback_stops_training_when_the_reporter_says_stop(tmp_path):
    reporter = RecordingReporter(stop_after_steps=2)
    trainer = _run_trainer(tmp_path, reporter)

    assert trainer.state.global_step < 6
    assert trainer.state.global_step == 3
    assert max(step for step, _, _ in reporter.steps) == 3


# ---- diffusers ---------------------------------------------------------------------------------


def test_diffusers_callback_reports_steps_and_returns_the_kwargs_unchanged():
    reporter = RecordingReporter()
    callback = diffusers_step_callback(reporter)
    pipe = SimpleNamespace(num_timesteps=4, _interrupt=False)
    kwargs = {"latents": "L"}

    for index in range(4):
        assert callback(pipe, index, 999 - index, kwargs) is kwargs

    assert reporter.steps == [(1, 4, None), (2, 4, None), (3, 4, None), (4, 4, None)]
    assert pipe._interrupt is False


def test_diffusers_callback_uses_the_given_total_over_the_pipeline_one():
    reporter = RecordingReporter()
    callback = diffusers_step_callback(reporter, total_steps=20)
    callback(SimpleNamespace(num_timesteps=4, _interrupt=False), 0, 999, {})
    assert reporter.steps == [(1, 20, None)]


def _tiny_stable_diffusion():
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
        )
    )
    # transformers v5 tokenizers can be built from an in-memory vocab: no files, no hub.
    specials = ["<|startoftext|>", "<|endoftext|>", "<|pad|>"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {token: i for i, token in enumerate(specials + letters + [f"{c}</w>" for c in letters])}
    tokenizer = CLIPTokenizer(
        vocab=vocab, merges=[], pad_token="<|endoftext|>", model_max_length=77
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, reporter, steps: int):
    import torch

    unet_calls = []
    hook = pipe.unet.register_forward_hook(lambda *args: unet_calls.append(1))
    try:
        result = pipe(
            "a red fox",
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            callback_on_step_end=diffusers_step_callback(reporter),
        )
    finally:
        hook.remove()
    return result, len(unet_calls)


def test_diffusers_callback_reports_every_denoising_step_of_a_real_pipeline():
    pipe = _tiny_stable_diffusion()
    reporter = RecordingReporter()

    result, unet_calls = _generate(pipe, reporter, steps=5)

    assert reporter.steps == [(i, 5, None) for i in range(1, 6)]
    assert unet_calls == 5
    assert result.images.shape == (1, 16, 16, 3)


def test_diffusers_callback_interrupts_a_real_pipeline_when_the_reporter_says_stop():
    pipe = _tiny_stable_diffusion()
    reporter = RecordingReporter(stop_after_steps=3)

    result, unet_calls = _generate(pipe, reporter, steps=8)

    assert [step for step, _, _ in reporter.steps] == [1, 2, 3]
    assert unet_calls == 3
    assert pipe.interrupt is True
    # The pipeline still decodes the partly denoised latents: callers check should_stop() after.
    assert result.images.shape == (1, 16, 16, 3)
