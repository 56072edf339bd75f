"""What the preference trainers share with SFT's training loop (workers/ml/finetune/train.py): the
Trainer arguments of the recipe, the same callbacks (COMPLETE markers, loss windows aligned with
checkpoints, tokens/s, cooperative stop), readable metric names, and the adapter's atomic write.

trl's DPOTrainer, RewardTrainer and GRPOTrainer are transformers Trainers, so the checkpoint,
resume and cancel rules of an SFT run hold for them unchanged.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from workers.ml.finetune.callbacks import NoStopReporter, trainer_callbacks
from workers.ml.finetune.config import LoraFinetuneConfig
from workers.ml.finetune.files import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    EVAL_BEFORE_NAME,
    replace_dir,
    write_json,
)
from workers.ml.finetune.train import mean_logged_loss
from workers.ml.reporting import JobFailed, Reporter, trainer_callback

__all__ = [
    "CountingCollator",
    "MetricNames",
    "TokenCounter",
    "attach_callbacks",
    "evaluate_before",
    "finite",
    "outcome",
    "parameter_counts",
    "planned_max_steps",
    "save_adapter",
    "step_of",
    "train_steps",
    "training_kwargs",
]


class TokenCounter(Protocol):
    """What the Throughput callback reads: the real tokens handed to the training loop so far."""

    tokens: int


class CountingCollator:
    """Wraps a trl collator; counts the real (attention-mask) tokens it hands out, for tokens/s."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.inner = inner
        self.tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


# Trainer's own log keys, reported as they are whatever a trainer's names say.
TRAINER_KEYS = frozenset({"loss", "learning_rate", "grad_norm", "epoch", "tokens_per_second"})


class MetricNames(NoStopReporter):
    """Reports trl's logged metrics under names that read as words on the job page's charts
    (`rewards/margins` -> `reward_margin`); a name mapped to None is left out, and with
    `only_named` so is every key that is neither named nor one of Trainer's own."""

    def __init__(
        self, inner: Reporter, names: Mapping[str, str | None], *, only_named: bool = False
    ) -> None:
        super().__init__(inner)
        self.names = names
        self.only_named = only_named

    def rename(self, metrics: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for key, value in metrics.items():
            if key in self.names:
                name = self.names[key]
            elif self.only_named and key not in TRAINER_KEYS:
                name = None
            else:
                name = key
            if name is not None:
                out[name] = value
        return out

    def step(self, step: int, total: int, metrics: dict[str, float] | None = None) -> None:
        super().step(step, total, self.rename(metrics) if metrics else metrics)


def training_kwargs(
    config: LoraFinetuneConfig, output_dir: Path, precision: str, on_cuda: bool
) -> dict[str, Any]:
    """The TrainingArguments of the recipe (as SFT sets them), for a trl config class."""
    return {
        "output_dir": str(output_dir / CHECKPOINTS_DIR),
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": config.warmup_steps,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": None,  # CheckpointMarker prunes, counting complete checkpoints only
        "eval_strategy": "no",
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not on_cuda,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": on_cuda,
        "report_to": "none",
        "disable_tqdm": True,
        # trl turns it on by default; the recipe uses it only with 8-/4-bit loading, as SFT does.
        "gradient_checkpointing": config.load_in != "none",
    }


def attach_callbacks(
    trainer: Any, config: LoraFinetuneConfig, reporter: Reporter, collator: TokenCounter
) -> None:
    """SFT's callbacks on a trl trainer: loss windows closed at saves, COMPLETE markers, tokens/s;
    without transformers' printers (they print every log to stdout)."""
    from transformers import PrinterCallback, ProgressCallback

    callbacks = trainer_callbacks()
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    trainer.add_callback(callbacks.LogAtSaves())
    trainer.add_callback(callbacks.CheckpointMarker(config.keep_checkpoints, reporter.flush))
    trainer.add_callback(callbacks.Throughput(collator))


def train_steps(
    trainer: Any,
    *,
    reporter: Reporter,
    should_stop: Callable[[], bool],
    collator: TokenCounter,
    resume_from: str | None,
    names: Mapping[str, str | None],
    only_named: bool = False,
) -> tuple[dict[str, float], int | None]:
    """Run trainer.train (resuming from a checkpoint) with live, renamed metrics and the Stop
    callback. Returns (training metrics, the step it stopped at when asked to, else None)."""
    stop = trainer_callbacks().Stop(should_stop)
    renamer = MetricNames(reporter, names, only_named=only_named)
    reporter_cb = trainer_callback(renamer)
    trainer.add_callback(reporter_cb)
    trainer.add_callback(stop)
    tokens0 = collator.tokens
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - t0
    trainer.remove_callback(reporter_cb)
    trainer.remove_callback(stop)
    tokens = collator.tokens - tokens0
    history = trainer.state.log_history
    metrics: dict[str, float] = {
        "train_seconds": round(seconds, 4),
        "train_steps_per_second": (
            round((trainer.state.global_step - step_of(resume_from)) / seconds, 3)
            if seconds > 0
            else 0.0
        ),
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else 0.0,
    }
    mean_loss = mean_logged_loss(history)
    if mean_loss is not None:
        metrics["train_loss"] = mean_loss
    logged = [renamer.rename(e) for e in history if "loss" in e]
    if logged:
        for key, value in logged[-1].items():
            if key in ("reward_accuracy", "reward_margin", "reward"):
                metrics[f"train_{key}_last"] = float(value)
    return metrics, stop.stopped_at


def parameter_counts(model: Any) -> dict[str, int]:
    """Trainable and total parameters of the (PEFT) model, for the result and the model card."""
    params = list(model.parameters())
    return {
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "total_parameters": sum(p.numel() for p in params),
    }


def step_of(checkpoint: str | None) -> int:
    """The step of a checkpoint folder `checkpoint-N` (0 for None)."""
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def planned_max_steps(trainer: Any) -> int:
    """The optimizer steps the trainer will run (max_steps, or its arithmetic for epochs)."""
    args = trainer.args
    if args.max_steps > 0:
        return int(args.max_steps)
    batches = math.ceil(len(trainer.train_dataset) / args.per_device_train_batch_size)
    per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.num_train_epochs * per_epoch)


def outcome(
    status: str,
    step: int,
    max_steps: int,
    metrics: dict[str, float],
    details: dict[str, Any],
    resumed: int,
) -> dict[str, Any]:
    """What a training process hands back to its train_* function."""
    return {
        "status": status,
        "global_step": step,
        "max_steps": max_steps,
        "metrics": metrics,
        "details": details,
        "resumed_from_step": resumed or None,
    }


def evaluate_before(
    output_dir: Path,
    resume_from: str | None,
    measure: Callable[[], dict[str, float]],
    describe: Callable[[dict[str, float]], str],
    reporter: Reporter,
    *,
    step: int,
    total: int,
) -> dict[str, float]:
    """The evaluation before training: measured once, kept in the run folder for resumes (the
    model has moved since), reported as the first metrics point."""
    path = output_dir / EVAL_BEFORE_NAME
    saved = json.loads(path.read_text()) if resume_from and path.is_file() else None
    if saved is None:
        saved = measure()
        write_json(path, saved)
    reporter.step(step, total, dict(saved))
    reporter.log("before training: " + describe(saved))
    return saved


def finite(metrics: Mapping[str, float], when: str) -> dict[str, float]:
    """`metrics`, or JobFailed when one is not finite (the model diverged or overflowed)."""
    for key, value in metrics.items():
        if not math.isfinite(float(value)):
            raise JobFailed(
                f"{key} {when} training is {value} (the model diverged or overflowed): lower the "
                "learning rate, or train in bf16/fp32 instead of fp16"
            )
    return dict(metrics)


def save_adapter(model: Any, output_dir: Path) -> Path:
    """Write the trained adapter ("default"; a frozen reference copy is left out) to
    output_dir/adapter, atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=output_dir))
    model.save_pretrained(str(tmp), safe_serialization=True, selected_adapters=["default"])
    (tmp / "README.md").unlink(missing_ok=True)  # peft's generic card; publish writes ours
    replace_dir(tmp, output_dir / ADAPTER_DIR)
    return output_dir / ADAPTER_DIR


def train_or_stop(
    trainer: Any,
    *,
    reporter: Reporter,
    collator: Any,
    resume_from: str | None,
    resumed: int,
    max_steps: int,
    metrics: dict[str, float],
    details: dict[str, Any],
    names: Mapping[str, str | None],
    only_named: bool = False,
) -> dict[str, Any] | None:
    """Train (resuming), adding the training metrics to `metrics`; the "cancelled" outcome when
    the job was cancelled before or during training (a checkpoint kept), else None."""
    if reporter.should_stop():
        return outcome("cancelled", resumed, max_steps, metrics, details, resumed)
    if resume_from:
        reporter.log(f"resuming from the checkpoint of step {resumed}")
    trained, stopped_at = train_steps(
        trainer,
        reporter=reporter,
        should_stop=reporter.should_stop,
        collator=collator,
        resume_from=resume_from,
        names=names,
        only_named=only_named,
    )
    metrics.update(trained)
    state = trainer.state
    if stopped_at is not None:
        reporter.log(f"stopped at step {state.global_step}; checkpoint kept", "warning")
        return outcome("cancelled", state.global_step, state.max_steps, metrics, details, resumed)
    return None
