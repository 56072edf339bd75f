"""Teacher-student distillation of a causal LM on a dataset version's rendered rows.

`distill()` trains every weight of a smaller student with
    loss = alpha * KL(softmax(teacher/T) || softmax(student/T)) * T^2 + (1 - alpha) * CE
on the tokens SFT would train on (workers.ml.finetune.data.encode_rows: the answer, or all of
the text). The teacher is a base model, optionally with a LoRA adapter merged in; the student is a
registered model with the same tokenizer, or built from the teacher by keeping every k-th layer.

It runs in transformers' Trainer with the fine-tune's callbacks (COMPLETE-marked checkpoints,
aligned loss windows, tokens/s, cooperative stop), so a run stopped or crashed resumes from its
newest complete checkpoint and, on the CPU, ends with the same student as an uninterrupted one.
The run folder holds:

    checkpoints/checkpoint-N/   resumable Trainer checkpoints (student, optimizer, RNG)
    student/                    the trained student: safetensors, tokenizer, README.md card
    eval_before.json            what was measured before training (kept for resumes)
    result.json                 what distill() returned
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.craft.config import DistillConfig
from workers.ml.craft.evaluation import (
    held_out_kl,
    load_text_model,
    perplexity,
    prompt_ids,
    same_tokenizer,
    tokens_per_second,
)
from workers.ml.craft.runfolder import RESULT_NAME, fingerprint, prepare_run_folder, write_card
from workers.ml.finetune.checkpoints import complete_checkpoints
from workers.ml.finetune.data import EncodedRows, PadCollator, encode_rows, split_eval
from workers.ml.finetune.files import replace_dir, write_json
from workers.ml.finetune.runtime import resolve_precision
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["DistillResult", "distill"]

CHECKPOINTS_DIR = "checkpoints"
STUDENT_DIR = "student"
EVAL_BEFORE = "eval_before.json"
SPEED_PROMPTS = 4


@dataclass
class DistillResult:
    """status: succeeded (student written) or cancelled (checkpoint kept)."""

    status: str
    global_step: int
    max_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    student_dir: str | None = None
    checkpoint: str | None = None
    resumed_from_step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Models:
    teacher: Any
    student: Any
    tokenizer: Any
    details: dict[str, Any]


@timed("craft.distill")
def distill(
    config: DistillConfig,
    *,
    teacher_dir: str | os.PathLike[str],
    train_rows: Iterable[Mapping[str, Any]],
    template: str,
    output_dir: str | os.PathLike[str],
    teacher_adapter_dir: str | os.PathLike[str] | None = None,
    student_dir: str | os.PathLike[str] | None = None,
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    reporter: Reporter | None = None,
    resume: bool = True,
    card_info: Mapping[str, Any] | None = None,
) -> DistillResult:
    """Distill the teacher into a student (see the module doc). `student_dir` None builds the
    student from the teacher (config.keep_every); `eval_rows` None holds out
    config.eval_fraction of the rows."""
    from transformers import set_seed

    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    rows = [dict(r) for r in train_rows]
    if eval_rows is None:
        rows, held = split_eval(rows, config.eval_fraction, config.seed)
    else:
        held = [dict(r) for r in eval_rows]
    if not rows:
        raise JobFailed("the dataset version has no training rows")
    sources = [
        str(Path(p).resolve()) if p else None
        for p in (teacher_dir, teacher_adapter_dir, student_dir)
    ]
    done = prepare_run_folder(
        output_dir,
        fingerprint(config.to_dict(), sources, template, rows, held),
        resume=resume,
        reporter=reporter,
        produced=(CHECKPOINTS_DIR, STUDENT_DIR, EVAL_BEFORE),
    )
    if done is not None:
        return DistillResult(**done)
    precision = resolve_precision(config.precision)
    set_seed(config.seed)
    models = _load_models(
        config, teacher_dir, teacher_adapter_dir, student_dir, precision, reporter
    )
    train, evals = _encode(config, models.tokenizer, rows, held, template, reporter)
    latest = complete_checkpoints(output_dir / CHECKPOINTS_DIR)
    resume_from = str(latest[0].path) if latest else None
    resumed_step = latest[0].step if latest else 0
    before = _measure_before(config, models, evals, output_dir, resume_from is not None, reporter)
    trainer, stop, collator = _build_trainer(config, models, train, precision, output_dir, reporter)
    reporter.step(resumed_step, config.max_steps, dict(before))
    if resume_from:
        reporter.log(f"resuming from the checkpoint of step {resumed_step}")
    trainer.train(resume_from_checkpoint=resume_from)
    state = trainer.state
    details = {
        **models.details,
        "precision": precision,
        "train_examples": len(train.examples),
        "eval_examples": len(evals.examples),
        "truncated_examples": train.truncated,
    }
    if stop.stopped_at is not None or state.global_step < state.max_steps:
        reporter.log(f"stopped at step {state.global_step}; checkpoint kept", "warning")
        return DistillResult(
            status="cancelled",
            global_step=state.global_step,
            max_steps=state.max_steps,
            metrics=before,
            checkpoint=_latest(output_dir),
            resumed_from_step=resumed_step or None,
            details=details,
        )
    metrics = {**before, **_train_metrics(state.log_history)}
    metrics.update(_measure_after(config, models, evals))
    reporter.step(
        state.global_step,
        state.max_steps,
        {k: v for k, v in metrics.items() if not k.endswith("_before")},
    )
    reporter.log(
        f"held-out KL to the teacher {metrics.get('kl_before', 0):.4f} -> "
        f"{metrics.get('kl_after', 0):.4f}; student perplexity "
        f"{metrics.get('student_perplexity_before', 0):.2f} -> "
        f"{metrics.get('student_perplexity_after', 0):.2f}"
    )
    student = _publish_student(models, output_dir, config, metrics, details, dict(card_info or {}))
    result = DistillResult(
        status="succeeded",
        global_step=state.global_step,
        max_steps=state.max_steps,
        metrics=metrics,
        student_dir=str(student),
        checkpoint=_latest(output_dir),
        resumed_from_step=resumed_step or None,
        details=details,
    )
    write_json(output_dir / RESULT_NAME, result.to_dict())
    return result


def _latest(output_dir: Path) -> str | None:
    latest = complete_checkpoints(output_dir / CHECKPOINTS_DIR)
    return str(latest[0].path) if latest else None


def _load_models(
    config: DistillConfig,
    teacher_dir: Any,
    teacher_adapter_dir: Any,
    student_dir: Any,
    precision: str,
    reporter: Reporter,
) -> _Models:
    """The frozen teacher (adapter merged) and the float32 student, with their sizes."""
    import torch

    from workers.ml.craft.student import shrink_by_layers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher, tokenizer = load_text_model(
        teacher_dir,
        adapter_dir=teacher_adapter_dir,
        device=device,
        dtype="bf16" if precision == "bf16" else "fp32",
    )
    teacher.requires_grad_(False)
    details: dict[str, Any] = {}
    if student_dir is None:
        student, details = shrink_by_layers(teacher, config.keep_every)
        reporter.log(
            f"student: layers {details['kept_layers']} of the teacher's {details['teacher_layers']}"
        )
    else:
        student, student_tokenizer = load_text_model(student_dir, device="cpu", dtype="fp32")
        if not same_tokenizer(tokenizer, student_tokenizer):
            raise JobFailed(
                "the student's tokenizer differs from the teacher's: soft labels need the same "
                "vocabulary. Choose a student of the same family, or build it from the teacher."
            )
    student.train()
    student.config.use_cache = False
    details["teacher_parameters"] = sum(p.numel() for p in teacher.parameters())
    details["student_parameters"] = sum(p.numel() for p in student.parameters())
    if details["student_parameters"] >= details["teacher_parameters"]:
        reporter.log("the student is not smaller than the teacher", "warning")
    return _Models(teacher, student, tokenizer, details)


def _encode(
    config: DistillConfig,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    held: list[dict[str, Any]],
    template: str,
    reporter: Reporter,
) -> tuple[EncodedRows, EncodedRows]:
    def enc(items: list[dict[str, Any]]) -> EncodedRows:
        return encode_rows(
            items, tokenizer, template, max_seq_length=config.max_seq_length, loss_on=config.loss_on
        )

    train, evals = enc(rows), enc(held)
    if not train.examples:
        raise JobFailed("no training example is left after tokenization (all rows empty?)")
    if not evals.examples:
        raise JobFailed("no held-out example to measure the student on: raise the eval share")
    reporter.log(f"{len(train.examples)} training and {len(evals.examples)} held-out examples")
    return train, evals


def _speed(model: Any, tokenizer: Any, evals: EncodedRows, config: DistillConfig) -> float:
    was_training = model.training
    model.eval()
    model.config.use_cache = True
    try:
        prompts = prompt_ids(evals.examples, SPEED_PROMPTS)
        return round(
            tokens_per_second(model, tokenizer, prompts, new_tokens=config.speed_tokens), 2
        )
    finally:
        model.config.use_cache = False
        model.train(was_training)


def _measure(
    config: DistillConfig, models: _Models, evals: EncodedRows, suffix: str, *, teacher: bool
) -> dict[str, float]:
    pad = models.tokenizer.pad_token_id
    student = models.student
    was_training = student.training
    student.eval()
    try:
        out = {
            f"kl_{suffix}": held_out_kl(models.teacher, student, evals.examples, pad_id=pad),
            f"student_perplexity_{suffix}": perplexity(student, evals.examples, pad_id=pad),
            f"student_tokens_per_second_{suffix}": _speed(student, models.tokenizer, evals, config),
        }
        if teacher:
            out["teacher_perplexity"] = perplexity(models.teacher, evals.examples, pad_id=pad)
            out["teacher_tokens_per_second"] = _speed(
                models.teacher, models.tokenizer, evals, config
            )
    finally:
        student.train(was_training)
    return out


def _measure_before(
    config: DistillConfig,
    models: _Models,
    evals: EncodedRows,
    output_dir: Path,
    resuming: bool,
    reporter: Reporter,
) -> dict[str, float]:
    """Before training: measured once, then kept in the run folder (a resume reports the same)."""
    path = output_dir / EVAL_BEFORE
    if resuming and path.is_file():
        return json.loads(path.read_text())
    import torch

    with torch.random.fork_rng(devices=[]):  # measuring draws no numbers the training would see
        before = _measure(config, models, evals, "before", teacher=True)
    write_json(path, before)
    reporter.log(
        f"before: teacher perplexity {before['teacher_perplexity']:.2f}, student "
        f"{before['student_perplexity_before']:.2f}, KL {before['kl_before']:.4f}"
    )
    return before


def _measure_after(config: DistillConfig, models: _Models, evals: EncodedRows) -> dict[str, float]:
    return _measure(config, models, evals, "after", teacher=False)


def _train_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    logs = [e for e in log_history if "loss" in e]
    out: dict[str, float] = {}
    if logs:
        out["train_loss_first"] = float(logs[0]["loss"])
        out["train_loss_last"] = float(logs[-1]["loss"])
        for key in ("kl", "ce"):
            if key in logs[-1]:
                out[f"train_{key}_last"] = float(logs[-1][key])
    return out


def _trainer_class() -> type:
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    from workers.ml.finetune.data import IGNORE_INDEX

    class DistillTrainer(Trainer):
        """Trainer whose loss mixes the teacher's soft labels with the hard labels, and whose
        logs carry the mean KL and cross-entropy since the previous log."""

        def __init__(
            self, *args: Any, teacher: Any, alpha: float, temperature: float, **kwargs: Any
        ):
            super().__init__(*args, **kwargs)
            self.teacher = teacher.to(self.args.device)
            self.alpha = alpha
            self.temperature = temperature
            # The loss is a per-token mean already: let Trainer divide it by the accumulation.
            self.model_accepts_loss_kwargs = False
            self._window = [0.0, 0.0, 0]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            outputs = model(input_ids=ids, attention_mask=mask)
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids=ids, attention_mask=mask).logits
            labels = inputs["labels"][:, 1:]
            keep = labels != IGNORE_INDEX
            vocab = min(outputs.logits.shape[-1], teacher_logits.shape[-1])
            s = outputs.logits[:, :-1][keep][:, :vocab].float()
            t = teacher_logits[:, :-1][keep][:, :vocab].float()
            temp = self.temperature
            kl = F.kl_div(
                F.log_softmax(s / temp, dim=-1),
                F.log_softmax(t / temp, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            ce = F.cross_entropy(s, labels[keep])
            loss = self.alpha * kl * temp * temp + (1 - self.alpha) * ce
            if model.training:
                self._window[0] += float(kl.detach())
                self._window[1] += float(ce.detach())
                self._window[2] += 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs and self._window[2]:
                logs["kl"] = self._window[0] / self._window[2]
                logs["ce"] = self._window[1] / self._window[2]
                self._window = [0.0, 0.0, 0]
            super().log(logs, start_time)

    return DistillTrainer


def _build_trainer(
    config: DistillConfig,
    models: _Models,
    train: EncodedRows,
    precision: str,
    output_dir: Path,
    reporter: Reporter,
) -> tuple[Any, Any, PadCollator]:
    import torch
    from transformers import PrinterCallback, ProgressCallback, TrainingArguments

    from workers.ml.finetune.callbacks import NoStopReporter, trainer_callbacks
    from workers.ml.finetune.data import ListDataset
    from workers.ml.reporting import trainer_callback

    on_cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # CheckpointMarker prunes, counting complete checkpoints only
        eval_strategy="no",
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_cuda,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="none",
        disable_tqdm=True,
    )
    callbacks = trainer_callbacks()
    collator = PadCollator(models.tokenizer.pad_token_id, 8 if on_cuda else None)
    stop = callbacks.Stop(reporter.should_stop)
    trainer = _trainer_class()(
        model=models.student,
        args=args,
        train_dataset=ListDataset(train.examples),
        data_collator=collator,
        callbacks=[
            callbacks.LogAtSaves(),
            callbacks.CheckpointMarker(config.keep_checkpoints, reporter.flush),
            callbacks.Throughput(collator),
            trainer_callback(NoStopReporter(reporter)),
            stop,
        ],
        teacher=models.teacher,
        alpha=config.alpha,
        temperature=config.temperature,
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    return trainer, stop, collator


def _publish_student(
    models: _Models,
    output_dir: Path,
    config: DistillConfig,
    metrics: dict[str, float],
    details: dict[str, Any],
    card_info: dict[str, Any],
) -> Path:
    """student/: safetensors weights, tokenizer, card; written to a temp folder, then renamed."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-student-", dir=output_dir))
    student = models.student
    student.config.use_cache = True
    student.eval()
    student.save_pretrained(str(tmp), safe_serialization=True)
    models.tokenizer.save_pretrained(str(tmp))
    write_card(
        tmp / "README.md",
        title=f"Student distilled from {card_info.get('teacher', 'the teacher')}",
        tags=("distillation", "atelier"),
        intro=(
            "Produced by Atelier: every weight of the student trained on "
            f"alpha={config.alpha} x KL(teacher/T || student/T) x T^2 + (1-alpha) x cross-entropy, "
            f"T={config.temperature}."
        ),
        tables={
            "Provenance": card_info,
            "Run": details,
            "Parameters": config.to_dict(),
            "Metrics": metrics,
        },
    )
    target = output_dir / STUDENT_DIR
    replace_dir(tmp, target)
    return target
