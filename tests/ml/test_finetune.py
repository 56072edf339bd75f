"""LoRA fine-tuning on the tiny Llama: loss, artifacts, merge, cancel, crash-safe resume, DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from workers.ml.checkpoints import MARKER_NAME
from workers.ml.finetune import (
    IGNORE_INDEX,
    ConfigError,
    LoraFinetuneConfig,
    complete_checkpoints,
    encode_rows,
    merge_and_export,
    resolve_precision,
    train_lora,
)
from workers.ml.reporting import JobFailed, RecordingReporter

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "### 问题:{question}\n### 回答:{answer}"
# A small repetitive QA set: the answer is a function of the question the model can pick up.
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
    learning_rate=1e-2,
    eval_fraction=0.2,
    max_seq_length=64,
)
CARD = {"base_model": "tiny-llama", "dataset_version": "ab" * 32}
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
    # Tiny matrices: OpenMP threads only add contention (100x slower on a busy 2-core machine).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny-llama", seed=0)


def _train(base: Path, out: Path, reporter, **kw):
    return train_lora(
        kw.pop("config", CONFIG),
        base_model_dir=base,
        train_rows=ROWS,
        template=TEMPLATE,
        output_dir=out,
        reporter=reporter,
        card_info=CARD,
        **kw,
    )


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    reporter = RecordingReporter()
    result = _train(base, out, reporter)
    return result, reporter, out


@pytest.fixture(scope="module")
def stopped(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("interrupted")
    result = _train(base, out, StopAtStep(STOP_AT))
    # What cancel left behind, recorded before the resume below changes the folder.
    seen = {
        "complete": [
            (cp.step, sorted(p.name for p in cp.path.iterdir()))
            for cp in complete_checkpoints(out / "checkpoints")
        ],
        "adapter": (out / "adapter").exists(),
    }
    return result, seen, out


@pytest.fixture(scope="module")
def resumed(stopped, base):
    _, _, out = stopped
    ckpts = out / "checkpoints"
    good = ckpts / f"checkpoint-{STOP_AT}"
    # A crash in the middle of a later save: the folder exists but has no marker...
    torn = ckpts / f"checkpoint-{STOP_AT + 2}"
    shutil.copytree(good, torn)
    (torn / MARKER_NAME).unlink()
    (torn / "optimizer.pt").write_bytes(b"torn")
    # ...and one whose marker does not match its files (a bit flip, a partial copy).
    corrupt = ckpts / f"checkpoint-{STOP_AT + 1}"
    shutil.copytree(good, corrupt)
    marker = json.loads((corrupt / MARKER_NAME).read_text())
    marker["step"] = STOP_AT + 1
    (corrupt / MARKER_NAME).write_text(json.dumps(marker))
    (corrupt / "adapter_model.safetensors").write_bytes(b"garbage")
    reporter = RecordingReporter()
    result = _train(base, out, reporter)
    return result, reporter, out


def _adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# ------------------------------------------------------------------------------------ training


def test_loss_goes_down_and_progress_is_reported(trained):
    result, reporter, _ = trained
    assert result.status == "succeeded"
    assert result.global_step == result.max_steps == CONFIG.max_steps
    logged = [m for _, m in reporter.metric_steps if "loss" in m]
    # Every logging step, and every checkpoint (a loss window closes there, so a resumed run's
    # windows are the same as an uninterrupted run's).
    every = set(range(CONFIG.logging_steps, CONFIG.max_steps + 1, CONFIG.logging_steps))
    saves = set(range(CONFIG.save_steps, CONFIG.max_steps + 1, CONFIG.save_steps))
    assert [s for s, m in reporter.metric_steps if "loss" in m] == sorted(every | saves)
    for metrics in logged:
        assert {"loss", "learning_rate", "grad_norm", "tokens_per_second"} <= set(metrics)
        assert metrics["tokens_per_second"] > 0
    first, last = logged[0]["loss"], logged[-1]["loss"]
    assert last < first - 0.3, (first, last)
    assert [s for s, _, _ in reporter.steps] == sorted(s for s, _, _ in reporter.steps)
    assert all(total == CONFIG.max_steps for _, total, _ in reporter.steps)


def test_eval_loss_and_perplexity_before_and_after(trained):
    result, reporter, _ = trained
    m = result.metrics
    for key in ("eval_loss_before", "perplexity_before", "eval_loss_after", "perplexity_after"):
        assert key in m
    assert m["eval_loss_after"] < m["eval_loss_before"]
    assert m["perplexity_after"] == pytest.approx(2.718281828 ** m["eval_loss_after"], rel=1e-6)
    reported = {k for _, metrics in reporter.metric_steps for k in metrics}
    assert {
        "eval_loss_before",
        "perplexity_before",
        "eval_loss_after",
        "perplexity_after",
    } <= reported
    assert m["train_tokens_per_second"] > 0 and m["train_tokens"] > 0
    assert result.details["precision"] == "fp32"
    assert result.details["target_modules"] == ["q_proj", "v_proj"]
    assert result.details["loss_on"] == "answer"


def test_artifacts_adapter_zip_and_model_card(trained):
    result, reporter, out = trained
    adapter = Path(result.adapter_dir)
    assert adapter == out / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.glob("*.bin"))
    card = (adapter / "README.md").read_text()
    assert "tiny-llama" in card and CARD["dataset_version"] in card
    assert "eval_loss_after" in card and "lora_alpha" in card and "PeftModel" in card
    with zipfile.ZipFile(result.adapter_zip) as zf:
        names = set(zf.namelist())
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= names
    assert (result.adapter_zip, "adapter.zip") in reporter.artifacts
    # Checkpoints every save_steps, pruned to keep_checkpoints, all complete.
    steps = [cp.step for cp in complete_checkpoints(out / "checkpoints")]
    assert steps[0] == CONFIG.max_steps and len(steps) == CONFIG.keep_checkpoints


def test_finished_run_is_not_trained_again(trained, base):
    result, _, out = trained
    reporter = RecordingReporter()
    again = _train(base, out, reporter)
    assert again.to_dict() == result.to_dict()
    assert not reporter.steps


PEFT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok("### 问题:3 加 4 等于几?\\n### 回答:", return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        before = model(ids).logits
    model = PeftModel.from_pretrained(model, adapter_dir)
    with torch.no_grad():
        after = model(ids).logits
    print(json.dumps({"diff": (after - before).abs().max().item()}))
    """
)


def test_adapter_loads_in_a_separate_peft_script(trained, base, tmp_path):
    result, _, _ = trained
    with zipfile.ZipFile(result.adapter_zip) as zf:  # what a user downloads
        zf.extractall(tmp_path)
    script = tmp_path / "load_adapter.py"
    script.write_text(PEFT_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(base), str(tmp_path / "adapter")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    diff = json.loads(proc.stdout.strip().splitlines()[-1])["diff"]
    assert diff > 1e-3  # the adapter changes the model's output


def test_merge_gives_the_same_logits_as_base_plus_adapter(trained, base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _, _ = trained
    merged_dir = merge_and_export(base, result.adapter_dir, tmp_path / "merged", card_info=CARD)
    assert (merged_dir / "model.safetensors").is_file()
    assert (merged_dir / "tokenizer.json").is_file() and (merged_dir / "README.md").is_file()
    assert not list(merged_dir.glob("*.bin")) and not list(merged_dir.glob("adapter_*"))
    assert CARD["dataset_version"] in (merged_dir / "README.md").read_text()

    tok = AutoTokenizer.from_pretrained(base)
    ids = tok(["### 问题:2 加 5 等于几?\n### 回答:2 加 5 等于 7。"], return_tensors="pt").input_ids
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base), result.adapter_dir
        )
        expected = peft_model(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)
        got = merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    assert (got - expected).abs().max().item() < 1e-4
    assert (got - plain).abs().max().item() > 1e-3


# ------------------------------------------------------------------------- cancel and resume


def test_cancel_stops_at_the_next_step_and_keeps_a_complete_checkpoint(stopped):
    result, seen, out = stopped
    assert result.status == "cancelled"
    assert STOP_AT <= result.global_step <= STOP_AT + 1
    assert result.checkpoint == str(out / "checkpoints" / f"checkpoint-{result.global_step}")
    assert seen["complete"][0][0] == result.global_step
    files = seen["complete"][0][1]
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        assert name in files
    assert MARKER_NAME in files
    assert not seen["adapter"]  # no final artifacts for a cancelled run


def test_resume_ignores_incomplete_checkpoints_and_matches_uninterrupted(resumed, stopped, trained):
    result, reporter, out = resumed
    stopped_result = stopped[0]
    assert result.status == "succeeded"
    assert result.resumed_from_step == stopped_result.global_step == STOP_AT
    assert any(f"checkpoint of step {STOP_AT}" in msg for msg, _ in reporter.logs)
    # The step never went back past the checkpoint it resumed from.
    assert min(s for s, _, m in reporter.steps if m and "loss" in m) > STOP_AT
    # The torn and the corrupt checkpoints were swept, not used.
    names = {p.name for p in (out / "checkpoints").iterdir()}
    assert f"checkpoint-{STOP_AT + 1}" not in names and f"checkpoint-{STOP_AT + 2}" not in names

    full = _adapter_weights(Path(trained[0].adapter_dir))
    again = _adapter_weights(Path(result.adapter_dir))
    assert full.keys() == again.keys()
    worst = max((full[k] - again[k]).abs().max().item() for k in full)
    assert worst <= 1e-5
    assert result.metrics["eval_loss_after"] == pytest.approx(
        trained[0].metrics["eval_loss_after"], abs=1e-5
    )
    # The run's mean loss covers the steps before the resume too (Trainer's own train_loss
    # would be the mean of the resumed steps only).
    assert result.metrics["train_loss"] == pytest.approx(trained[0].metrics["train_loss"], abs=1e-5)


# ------------------------------------------------------------------------------ runtime checks


def test_precision_auto():
    import torch

    if not torch.cuda.is_available():
        assert resolve_precision("auto") == "fp32"
    assert resolve_precision("auto", cuda_available=False) == "fp32"
    assert resolve_precision("auto", cuda_available=True, bf16_supported=True) == "bf16"
    assert resolve_precision("auto", cuda_available=True, bf16_supported=False) == "fp16"
    with pytest.raises(JobFailed, match="CUDA"):
        resolve_precision("fp16", cuda_available=False)


def test_4bit_without_cuda_is_a_clear_error(base, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = LoraFinetuneConfig(load_in="4bit", max_steps=1)
    with pytest.raises(
        JobFailed, match=r"4bit loading \(QLoRA through bitsandbytes\) needs a CUDA GPU"
    ):
        _train(base, tmp_path, RecordingReporter(), config=config)
    assert not (tmp_path / "checkpoints").exists()


def test_config_defaults_are_the_team_recipe_and_validate():
    c = LoraFinetuneConfig()
    assert (c.r, c.lora_alpha, c.lora_dropout, c.bias, c.target_modules) == (
        8,
        32,
        0.1,
        "none",
        None,
    )
    assert (c.per_device_train_batch_size, c.gradient_accumulation_steps) == (4, 4)
    assert (c.warmup_steps, c.num_train_epochs, c.logging_steps) == (100, 3.0, 10)
    assert (c.learning_rate, c.max_seq_length, c.save_steps, c.seed) == (2e-4, 512, 200, 42)
    assert (c.precision, c.load_in, c.max_steps, c.num_gpus) == ("auto", "none", -1, 1)
    assert all(item["help"] and item["title"] for item in LoraFinetuneConfig.describe())
    assert LoraFinetuneConfig.from_dict(c.to_dict()) == c
    assert LoraFinetuneConfig(target_modules="q_proj, k_proj").target_modules == (
        "q_proj",
        "k_proj",
    )
    for bad in (
        {"r": 0},
        {"lora_dropout": 1.5},
        {"precision": "fp8"},
        {"load_in": "2bit"},
        {"max_steps": 0},
        {"bias": "some"},
        {"eval_fraction": 0.9},
        {"r": "8"},
        {"r": 1025},
        {"learning_rate": 0},
        {"num_train_epochs": 0},
        {"seed": -1},
        {"lr_scheduler_type": "warmup_stable_decay"},
        {"num_gpus": 2, "load_in": "4bit"},
    ):
        with pytest.raises(ConfigError) as info:
            LoraFinetuneConfig(**bad)
        assert info.value.field in bad  # the error names the field the form shows it on
    with pytest.raises(ValueError, match="unknown fine-tune parameter"):
        LoraFinetuneConfig.from_dict({"rank": 8})


def test_prompt_is_masked_when_the_template_ends_with_the_answer(base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    row = {"question": "天空是什么颜色?", "answer": "蓝色"}
    ex = encode_rows([row], tok, TEMPLATE, max_seq_length=64).examples[0]
    learned = [
        t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE_INDEX
    ]
    assert tok.decode(learned[:-1]) == "蓝色" and learned[-1] == tok.eos_token_id
    assert ex["labels"][0] == IGNORE_INDEX
    # No answer placeholder at the end, or loss_on="all": the whole text carries the loss.
    for template, loss_on in (("Q: {question} A: {answer}.", "auto"), (TEMPLATE, "all")):
        ex = encode_rows([row], tok, template, max_seq_length=64, loss_on=loss_on).examples[0]
        assert ex["labels"] == ex["input_ids"]
    cut = encode_rows([row], tok, TEMPLATE, max_seq_length=8)
    assert cut.skipped == 1 and not cut.examples  # the answer was cut off entirely


# ---------------------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_ddp_two_gloo_processes_complete_and_report_from_rank_zero(base, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU/gloo path; GPUs are covered by make gpu-check")
    config = LoraFinetuneConfig(
        max_steps=6,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        warmup_steps=0,
        logging_steps=2,
        save_steps=3,
        learning_rate=1e-2,
        eval_fraction=0.2,
        max_seq_length=64,
        num_gpus=2,
    )
    reporter = RecordingReporter()
    result = _train(base, tmp_path, reporter, config=config)
    assert result.status == "succeeded", result
    assert result.details["world_size"] == 2 and result.global_step == 6
    logged = [s for s, m in reporter.metric_steps if "loss" in m]
    # Once per logging step and at each checkpoint (3: LogAtSaves closes the loss window there),
    # from rank 0 only.
    assert logged == [2, 3, 4, 6]
    assert "eval_loss_after" in result.metrics and "eval_loss_before" in result.metrics
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    cp = complete_checkpoints(tmp_path / "checkpoints")[0]
    assert cp.step == 6 and (cp.path / "rng_state_1.pth").is_file()
