"""LoRA DPO on the tiny Llama: it learns the pairs, reports readable metrics, keeps the SFT run
folder's contract (artifacts, cancel with a checkpoint, crash + resume = uninterrupted), and
starting from an SFT adapter uses that adapter as the reference."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from workers.ml.checkpoints import MARKER_NAME
from workers.ml.finetune import ConfigError, complete_checkpoints
from workers.ml.preference import DpoConfig, pair_logps, preference_accuracy, train_dpo
from workers.ml.preference.data import render_pairs
from workers.ml.reporting import RecordingReporter

# 16 pairs the tiny model has no reason to prefer either way: the answer follows the parity of a
# number it sees as a token. DPO must learn them by heart, which it does in a few dozen steps.
PAIRS = [
    {
        "prompt": f"Is {n} an even number?",
        "chosen": " Yes." if n % 2 == 0 else " No.",
        "rejected": " No." if n % 2 == 0 else " Yes.",
    }
    for n in range(16)
]
HELD = [
    {"prompt": "Is 20 an even number?", "chosen": " Yes.", "rejected": " No."},
    {"prompt": "Is 21 an even number?", "chosen": " No.", "rejected": " Yes."},
]
CONFIG = DpoConfig(
    max_steps=32,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    warmup_steps=0,
    logging_steps=2,
    save_steps=8,
    learning_rate=1e-2,
    beta=0.1,
    max_seq_length=64,
    max_prompt_length=48,
)
STOP_AT = 7


class StopAtStep(RecordingReporter):
    """Asks to stop once a step >= `at` has been reported (a user pressing cancel)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def should_stop(self) -> bool:
        return any(step >= self.at for step, _, _ in self.steps)


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


def _dpo(base: Path, out: Path, reporter, **kw):
    return train_dpo(
        kw.pop("config", CONFIG),
        base_model_dir=base,
        train_rows=PAIRS,
        eval_rows=HELD,
        output_dir=out,
        reporter=reporter,
        card_info={"base_model": "tiny-llama", "dataset_version": "prefs v1"},
        **kw,
    )


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo")
    reporter = RecordingReporter()
    return _dpo(base, out, reporter), reporter, out


@pytest.fixture(scope="module")
def stopped(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo-stopped")
    result = _dpo(base, out, StopAtStep(STOP_AT))
    kept = [
        (cp.step, sorted(p.name for p in cp.path.iterdir()))
        for cp in complete_checkpoints(out / "checkpoints")
    ]
    return result, kept, (out / "adapter").exists(), out


def _model_with(base: Path, adapter: Path | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    return model, tokenizer


def _accuracy(base: Path, adapter: Path | None) -> float:
    model, tokenizer = _model_with(base, adapter)
    rendered = render_pairs(PAIRS, tokenizer).pairs  # as train_dpo renders them
    return preference_accuracy(pair_logps(model, tokenizer, rendered))


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.slow
def test_dpo_on_16_pairs_raises_reward_accuracy_on_the_training_pairs(trained, base):
    result, reporter, _ = trained
    assert result.status == "succeeded" and result.global_step == CONFIG.max_steps

    before = _accuracy(base, None)
    after = _accuracy(base, Path(result.adapter_dir))
    # The policy's own preference on the 16 training pairs: about a coin toss before, all (or
    # all but one) of them after.
    assert before <= 0.75 and after >= 0.9, (before, after)
    # trl's reward accuracy (implicit reward of chosen above rejected) in the live metrics.
    logged = [m for _, m in reporter.metric_steps if "loss" in m]
    assert logged[0]["reward_accuracy"] <= 0.75 and logged[-1]["reward_accuracy"] == 1.0
    assert logged[-1]["loss"] < logged[0]["loss"] - 0.05
    assert logged[-1]["reward_margin"] > 0


def test_live_metrics_have_readable_names_and_eval_before_and_after(trained):
    result, reporter, _ = trained
    logged = [m for _, m in reporter.metric_steps if "loss" in m]
    names = set().union(*logged)
    assert {
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "reward_margin",
        "reward_accuracy",
        "reward_chosen",
        "reward_rejected",
    } <= names
    assert not [n for n in names if "/" in n]  # trl's rewards/margins etc. are renamed
    m = result.metrics
    assert m["eval_loss_before"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert m["reward_accuracy_before"] == 0.0 and m["reward_margin_before"] == 0.0
    assert m["reward_margin_after"] > 0 and m["eval_loss_after"] < m["eval_loss_before"]
    assert "preference_accuracy_after" in m and m["train_tokens_per_second"] > 0
    assert [s for s, _, _ in reporter.steps] == sorted(s for s, _, _ in reporter.steps)


def test_adapter_zip_and_model_card(trained):
    result, reporter, out = trained
    adapter = Path(result.adapter_dir)
    assert {p.name for p in adapter.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
    }
    card = (adapter / "README.md").read_text()
    assert "tags: [lora, dpo, atelier]" in card and "prefs v1" in card and "beta" in card
    with zipfile.ZipFile(result.adapter_zip) as zf:
        assert "adapter/adapter_model.safetensors" in zf.namelist()
    assert (result.adapter_zip, "adapter.zip") in reporter.artifacts
    assert (out / "result.json").is_file()


@pytest.mark.slow
def test_cancel_keeps_a_checkpoint_and_resume_gives_the_uninterrupted_adapter(
    stopped, trained, base
):
    result, kept, had_adapter, out = stopped
    assert result.status == "cancelled" and result.global_step == STOP_AT
    assert kept[0][0] == STOP_AT and not had_adapter
    for name in ("adapter_model.safetensors", "optimizer.pt", "rng_state.pth", MARKER_NAME):
        assert name in kept[0][1]

    reporter = RecordingReporter()  # the worker came back: same folder, same inputs
    resumed = _dpo(base, out, reporter)
    assert resumed.status == "succeeded" and resumed.resumed_from_step == STOP_AT
    assert min(s for s, _, m in reporter.steps if m and "loss" in m) > STOP_AT
    full, again = _weights(Path(trained[0].adapter_dir)), _weights(Path(resumed.adapter_dir))
    assert full.keys() == again.keys()
    assert max((full[k] - again[k]).abs().max().item() for k in full) <= 1e-6
    assert resumed.metrics["train_loss"] == pytest.approx(
        trained[0].metrics["train_loss"], abs=1e-6
    )


@pytest.mark.slow
def test_from_an_sft_adapter_the_reference_is_that_adapter_and_it_trains_further(base, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)  # an "SFT" adapter with nonzero weights: the model differs from base
    sft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    sft.save_pretrained(str(tmp_path / "sft"))
    config = DpoConfig(**{**CONFIG.to_dict(), "max_steps": 6, "save_steps": 100})

    result = _dpo(
        base,
        tmp_path / "run",
        RecordingReporter(),
        config=config,
        parent_adapter_dir=tmp_path / "sft",
    )

    m = result.metrics
    # At step 0 the policy is the reference exactly (the SFT adapter, not the base model).
    assert m["reward_margin_before"] == 0.0 and m["eval_loss_before"] == pytest.approx(
        0.6931, abs=1e-4
    )
    assert result.details["reference"].startswith("the SFT adapter")
    out = Path(result.adapter_dir)
    assert not (out / "ref").exists()  # the frozen copy is not published
    parent, trained_w = _weights(tmp_path / "sft"), _weights(out)
    assert parent.keys() == trained_w.keys()  # the same LoRA (r=4), trained further
    assert max((parent[k] - trained_w[k]).abs().max().item() for k in parent) > 1e-4


def test_config_bounds_and_rules_are_config_errors():
    with pytest.raises(ConfigError) as err:
        DpoConfig(max_seq_length=64, max_prompt_length=64)
    assert err.value.field == "max_prompt_length"
    with pytest.raises(ConfigError) as err:
        DpoConfig(loss_type="kto")
    assert err.value.field == "loss_type"
    with pytest.raises(ConfigError) as err:
        DpoConfig(num_gpus=2)
    assert err.value.field == "num_gpus"
    assert DpoConfig.from_dict({"beta": 0.5}).beta == 0.5
    names = [f["name"] for f in DpoConfig.describe()]
    assert names[-4:] == ["beta", "loss_type", "label_smoothing", "max_prompt_length"]
