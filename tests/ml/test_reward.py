"""A tiny reward model (sequence classifier + LoRA + score head, trl RewardTrainer): it orders a
held-out pair correctly, reloads from its published folder to score texts, resumes exactly after
a cancel; and GRPO with it as the reward raises the reward of the policy's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.ml.finetune import complete_checkpoints
from workers.ml.preference import PolicyConfig, RewardConfig, load_reward_model, score_texts
from workers.ml.preference.data import render_text
from workers.ml.preference.policy import train_policy
from workers.ml.preference.reward import train_reward
from workers.ml.reporting import RecordingReporter

NAMES = ["Ann", "Bob", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu", "Mo", "Ned"]
PAIRS = [
    {"prompt": f"Greet {n}.", "chosen": f" Hello {n}, welcome!", "rejected": f" Go away, {n}."}
    for n in NAMES
]
HELD = [{"prompt": "Greet Zed.", "chosen": " Hello Zed, welcome!", "rejected": " Go away, Zed."}]
CONFIG = RewardConfig(
    max_steps=20,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    warmup_steps=0,
    logging_steps=2,
    save_steps=5,
    learning_rate=5e-3,
    max_seq_length=64,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny-llama", seed=0)


def _train(base: Path, out: Path, reporter):
    return train_reward(
        CONFIG,
        base_model_dir=base,
        train_rows=PAIRS,
        eval_rows=HELD,
        output_dir=out,
        reporter=reporter,
        card_info={"base_model": "tiny-llama"},
    )


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    reporter = RecordingReporter()
    return _train(base, tmp_path_factory.mktemp("reward"), reporter), reporter


@pytest.mark.slow
def test_a_tiny_reward_model_orders_a_held_out_pair_correctly(trained, base):
    result, reporter = trained
    assert result.status == "succeeded"
    m = result.metrics
    assert m["reward_accuracy_after"] == 1.0 and m["reward_margin_after"] > 1.0
    assert m["eval_loss_after"] < m["eval_loss_before"]
    logged = [metrics for _, metrics in reporter.metric_steps if "loss" in metrics]
    assert {"loss", "reward_accuracy", "reward_margin", "tokens_per_second"} <= set(logged[-1])

    # Reloaded from the published folder, it scores the held-out answers the right way round.
    model, tokenizer = load_reward_model(base, result.adapter_dir)
    good, bad = score_texts(
        model,
        tokenizer,
        [
            render_text(tokenizer, HELD[0]["prompt"], HELD[0]["chosen"]),
            render_text(tokenizer, HELD[0]["prompt"], HELD[0]["rejected"]),
        ],
    )
    assert good > bad + 1.0, (good, bad)
    card = (Path(result.adapter_dir) / "README.md").read_text()
    assert "tags: [lora, reward, atelier]" in card and "AutoModelForSequenceClassification" in card


@pytest.mark.slow
def test_a_cancelled_reward_run_resumes_to_the_uninterrupted_adapter(trained, base, tmp_path):
    from safetensors.torch import load_file

    stopper = RecordingReporter(stop_after_steps=8)
    stopped = _train(base, tmp_path, stopper)
    assert stopped.status == "cancelled" and not (tmp_path / "adapter").exists()
    assert complete_checkpoints(tmp_path / "checkpoints")[0].step == stopped.global_step

    resumed = _train(base, tmp_path, RecordingReporter())
    assert resumed.resumed_from_step == stopped.global_step
    full = load_file(str(Path(trained[0].adapter_dir) / "adapter_model.safetensors"))
    again = load_file(str(Path(resumed.adapter_dir) / "adapter_model.safetensors"))
    assert full.keys() == again.keys() and any("score" in k for k in full)  # the head is in it
    assert max((full[k] - again[k]).abs().max().item() for k in full) <= 1e-6


@pytest.mark.slow
def test_grpo_with_the_reward_model_raises_the_reward_of_greedy_answers(trained, base, tmp_path):
    config = PolicyConfig(
        max_steps=40,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        num_generations=4,
        max_completion_length=8,
        learning_rate=2e-2,
        logging_steps=4,
        save_steps=100,
        kl_beta=0.0,
        max_seq_length=64,
    )
    reporter = RecordingReporter()
    result = train_policy(
        config,
        base_model_dir=base,
        prompts=[p["prompt"] for p in PAIRS],
        eval_prompts=["Greet Zed.", "Greet Yul.", "Greet Xia."],
        reward_adapter_dir=trained[0].adapter_dir,
        output_dir=tmp_path,
        reporter=reporter,
    )
    assert result.status == "succeeded" and (tmp_path / "adapter.zip").is_file()
    m = result.metrics
    # Seeded, so deterministic on one machine; the margin leaves room for another CPU's ulps.
    assert m["mean_reward_after"] > m["mean_reward_before"] + 0.5, m
    logged = [metrics for _, metrics in reporter.metric_steps if "loss" in metrics]
    assert {"reward", "reward_std", "answer_length"} <= set(logged[-1])
    assert not [k for k in logged[-1] if "/" in k]
