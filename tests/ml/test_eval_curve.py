"""The eval-loss curve: eval loss and perplexity every eval_steps, without changing the training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workers.ml.finetune import ConfigError, LoraFinetuneConfig, train_lora
from workers.ml.reporting import RecordingReporter

TEMPLATE = "### 问题:{question}\n### 回答:{answer}"
ROWS = [
    {"question": f"{a} 加 {b} 等于几?", "answer": f"{a} 加 {b} 等于 {a + b}。"}
    for a in range(6)
    for b in range(6)
]
CONFIG = LoraFinetuneConfig(
    max_steps=24,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    warmup_steps=2,
    logging_steps=2,
    save_steps=5,
    eval_steps=5,
    learning_rate=1e-2,
    eval_fraction=0.2,
    max_seq_length=64,
)
CURVE_STEPS = [0, 5, 10, 15, 20, 24]  # before, every 5 steps, after (24, not an extra 25)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only add contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny-llama", seed=0)


def _train(base, out, config, reporter):
    result = train_lora(
        config,
        base_model_dir=base,
        train_rows=ROWS,
        template=TEMPLATE,
        output_dir=out,
        reporter=reporter,
    )
    return result, reporter


def _curve(reporter) -> list[tuple[int, float]]:
    return [(step, m["eval_loss"]) for step, m in reporter.metric_steps if "eval_loss" in m]


def _weights(result) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(result.adapter_dir) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def curve(base, tmp_path_factory):
    return _train(base, tmp_path_factory.mktemp("curve"), CONFIG, RecordingReporter())


@pytest.fixture(scope="module")
def ends_only(base, tmp_path_factory):
    config = LoraFinetuneConfig(**{**CONFIG.to_dict(), "eval_steps": 0})
    return _train(base, tmp_path_factory.mktemp("ends"), config, RecordingReporter())


def test_eval_loss_and_perplexity_are_reported_every_eval_steps(curve):
    result, reporter = curve
    points = _curve(reporter)
    assert [step for step, _ in points] == CURVE_STEPS
    assert points[0][1] == result.metrics["eval_loss_before"]
    assert points[-1][1] == result.metrics["eval_loss_after"]
    assert points[-1][1] < points[0][1] - 0.2  # the curve goes down as the model learns
    for step, metrics in reporter.metric_steps:
        if "eval_loss" in metrics:
            assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
        if "eval_loss" in metrics and 0 < step < CONFIG.max_steps:  # no eval_runtime and such
            assert set(metrics) <= {"eval_loss", "perplexity", "epoch"}


def test_eval_steps_zero_gives_only_the_points_before_and_after(ends_only):
    _, reporter = ends_only
    assert [step for step, _ in _curve(reporter)] == [0, CONFIG.max_steps]


def test_evaluating_during_training_does_not_change_what_is_trained(curve, ends_only):
    """Evaluations put the RNG back: the adapter and the before/after figures are the same."""
    with_curve, without = curve[0], ends_only[0]
    a, b = _weights(with_curve), _weights(without)
    assert all(a[k].equal(b[k]) for k in b)
    for key in ("eval_loss_before", "eval_loss_after", "train_loss"):
        assert with_curve.metrics[key] == without.metrics[key]
    # The time spent evaluating is not training time: tokens/s counts training only.
    assert with_curve.metrics["train_tokens"] == without.metrics["train_tokens"]


def test_a_resumed_run_keeps_the_curve_and_ends_bit_identical(base, curve, tmp_path):
    class StopAt(RecordingReporter):
        def should_stop(self) -> bool:
            return any(step >= 7 for step, _, _ in self.steps)

    stopped, first = _train(base, tmp_path, CONFIG, StopAt())
    assert stopped.status == "cancelled"
    resumed, second = _train(base, tmp_path, CONFIG, RecordingReporter())
    at = resumed.resumed_from_step
    assert at == stopped.global_step
    # Together the two attempts report the uninterrupted run's curve (same steps, same values).
    assert _curve(first) + _curve(second) == _curve(curve[1])
    assert all(step <= at for step, _ in _curve(first))
    a, b = _weights(resumed), _weights(curve[0])
    assert all(a[k].equal(b[k]) for k in b)


def test_eval_steps_is_documented_with_a_default_and_bounds():
    described = {f["name"]: f for f in LoraFinetuneConfig.describe()}
    assert described["eval_steps"]["default"] == 50 and described["eval_steps"]["ge"] == 0
    assert "0" in described["eval_steps"]["help"]
    with pytest.raises(ConfigError) as info:
        LoraFinetuneConfig(eval_steps=-1)
    assert info.value.field == "eval_steps"
