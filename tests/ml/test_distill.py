"""Distillation on the tiny Llama: the student moves toward its teacher, reports live KL and loss,
and a stopped run resumes to the very student an uninterrupted run makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.ml.craft import DistillConfig
from workers.ml.craft.distill import distill
from workers.ml.finetune import complete_checkpoints
from workers.ml.reporting import JobFailed, RecordingReporter

TEMPLATE = "### 问题:{question}\n### 回答:{answer}"
ROWS = [
    {"question": f"{a} 加 {b} 等于几?", "answer": f"{a} 加 {b} 等于 {a + b}。"}
    for a in range(6)
    for b in range(6)
]
CONFIG = DistillConfig(
    max_steps=20,
    learning_rate=3e-3,
    warmup_steps=2,
    logging_steps=2,
    save_steps=5,
    per_device_train_batch_size=4,
    max_seq_length=64,
    eval_fraction=0.2,
    speed_tokens=4,
)
STOP_AT = 7


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """The tiny Llama after a short full fine-tune on the rows (a plain torch loop, not the
    code under test): a teacher whose predictions are worth copying."""
    import torch

    from workers.ml.finetune import encode_rows
    from workers.ml.models import build_tiny_llama, load_causal_lm

    base = build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny", seed=0)
    model, tokenizer = load_causal_lm(base, device="cpu")
    model.train()
    examples = encode_rows(ROWS, tokenizer, TEMPLATE, max_seq_length=64).examples
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for step in range(30):
        batch = examples[(step * 4) % len(examples) :][:4]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.tensor([e["input_ids"] + [0] * (width - len(e["input_ids"])) for e in batch])
        labels = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in batch])
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("teacher") / "teacher"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class StopAtStep(RecordingReporter):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def should_stop(self) -> bool:
        return any(step >= self.at for step, _, _ in self.steps)


def _run(teacher: Path, out: Path, reporter, **kw):
    return distill(
        kw.pop("config", CONFIG),
        teacher_dir=teacher,
        train_rows=ROWS,
        template=TEMPLATE,
        output_dir=out,
        reporter=reporter,
        card_info={"teacher": "tiny teacher"},
        **kw,
    )


@pytest.fixture(scope="module")
def full(teacher, tmp_path_factory):
    reporter = RecordingReporter()
    return _run(teacher, tmp_path_factory.mktemp("full"), reporter), reporter


def test_distillation_lowers_the_students_kl_to_the_teacher_on_held_out_rows(full):
    result, _ = full
    m = result.metrics

    assert result.status == "succeeded"
    assert result.details["student_layers"] == 1 and result.details["teacher_layers"] == 2
    assert result.details["student_parameters"] < result.details["teacher_parameters"]
    # Dropping one of two layers moves the student away from the teacher; 20 steps of
    # distillation bring most of it back (measured 0.53 -> 0.15; asked: at least a third less).
    assert m["kl_after"] < 0.67 * m["kl_before"]
    assert m["student_perplexity_after"] < m["student_perplexity_before"]
    for key in (
        "teacher_perplexity",
        "teacher_tokens_per_second",
        "student_tokens_per_second_after",
    ):
        assert m[key] > 0


def test_kl_and_loss_are_reported_live(full):
    _, reporter = full
    live = [metrics for _, metrics in reporter.metric_steps if "kl" in metrics]

    assert len(live) >= CONFIG.max_steps // CONFIG.logging_steps
    assert all({"loss", "kl", "ce"} <= set(metrics) for metrics in live)


def test_the_student_is_a_safetensors_model_the_platform_loads(full):
    import torch

    from workers.ml.models import inspect_folder, load_causal_lm

    result, _ = full
    folder = Path(result.student_dir)
    info = inspect_folder(folder)  # what registering it as a base model checks
    model, tokenizer = load_causal_lm(folder, device="cpu")
    ids = tokenizer("### 问题:1 加 2 等于几?\n### 回答:", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)

    assert info.num_layers == 1 and info.weight_files == ("model.safetensors",)
    assert not [p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
    assert "Student distilled from tiny teacher" in (folder / "README.md").read_text()
    assert (
        out.shape[1] == ids["input_ids"].shape[1] + 4 and torch.isfinite(model.lm_head.weight).all()
    )


def test_a_stopped_run_keeps_a_checkpoint_and_resumes_to_the_same_student(teacher, full, tmp_path):
    from safetensors.torch import load_file

    stopped = _run(teacher, tmp_path, StopAtStep(STOP_AT))
    kept = [cp.step for cp in complete_checkpoints(tmp_path / "checkpoints")]
    resumed = _run(teacher, tmp_path, RecordingReporter())

    assert stopped.status == "cancelled" and stopped.student_dir is None
    assert kept and max(kept) == STOP_AT
    assert resumed.status == "succeeded" and resumed.resumed_from_step == STOP_AT
    a = load_file(str(Path(full[0].student_dir) / "model.safetensors"))
    b = load_file(str(Path(resumed.student_dir) / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)  # on the CPU: bit for bit


def test_a_student_with_another_tokenizer_is_refused(teacher, tmp_path):
    from workers.ml.models import build_tiny_llama

    other = build_tiny_llama(tmp_path / "other", seed=1, vocab_size=300)

    with pytest.raises(JobFailed, match="tokenizer differs"):
        _run(teacher, tmp_path / "run", RecordingReporter(), student_dir=other)


def test_keeping_every_layer_is_refused_as_no_smaller(teacher, tmp_path):
    config = DistillConfig(**{**CONFIG.to_dict(), "keep_every": 1})

    with pytest.raises(JobFailed, match="keeps them all"):
        _run(teacher, tmp_path, RecordingReporter(), config=config)
