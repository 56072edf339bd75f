"""One training process: the only one, or one rank of a DDP run (ddp.py starts those).

`train_process` runs the steps in a fixed order (the seed is set first, and every step that draws
random numbers runs in the same order on every attempt, so a resumed run ends with the same
adapter as an uninterrupted one): load the base model, encode the rows, add LoRA, build the
Trainer, evaluate before training, train (resuming from a checkpoint), collect the metrics,
evaluate after training and publish the adapter folder.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.finetune.base_model import default_target_modules, load_base_model, quiet_peft
from workers.ml.finetune.callbacks import NoStopReporter, trainer_callbacks
from workers.ml.finetune.config import LoraFinetuneConfig, planned_steps
from workers.ml.finetune.data import (
    EncodedRows,
    ListDataset,
    PadCollator,
    answer_field,
    encode_rows,
)
from workers.ml.finetune.files import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    EVAL_BEFORE_NAME,
    replace_dir,
    write_json,
)
from workers.ml.finetune.ranks import any_rank, barrier, sum_across_ranks
from workers.ml.reporting import JobFailed, Reporter, trainer_callback

__all__ = ["eval_metrics", "mean_logged_loss", "train_process"]


@dataclass(frozen=True)
class _Process:
    """Where this process stands: its run folder, rank and device."""

    config: LoraFinetuneConfig
    output_dir: Path
    precision: str
    world_size: int
    local_rank: int
    is_main: bool
    on_cuda: bool


@timed("finetune.train_process")
def train_process(
    spec: dict[str, Any], reporter: Reporter, should_stop: Callable[[], bool]
) -> dict:
    """Train in this process (one rank of DDP, or the only process). Writes the adapter folder.

    `spec`: config (dict), base_model_dir, template, train_rows, eval_rows, output_dir,
    resume_from (checkpoint folder or None), precision (resolved), device_kind.
    """
    from transformers import set_seed

    proc = _Process(
        config=LoraFinetuneConfig.from_dict(spec["config"]),
        output_dir=Path(spec["output_dir"]),
        precision=spec["precision"],
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        is_main=int(os.environ.get("RANK", "0")) == 0,
        on_cuda=spec["device_kind"] == "cuda",
    )
    config = proc.config
    quiet_peft()
    set_seed(config.seed)
    model, tokenizer = load_base_model(
        spec["base_model_dir"],
        precision=proc.precision,
        load_in=config.load_in,
        device=f"cuda:{proc.local_rank}" if proc.on_cuda else "cpu",
    )
    train, evals = _encode(spec, tokenizer, proc, reporter)
    targets = config.target_modules or default_target_modules(spec["base_model_dir"], model)
    model = _add_lora(model, config, targets)
    sizes = {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
    }
    collator = PadCollator(tokenizer.pad_token_id, 8 if proc.on_cuda else None)
    trainer = _build_trainer(model, proc, train, evals, collator, reporter)
    max_steps, _ = planned_steps(len(train.examples), config, proc.world_size)
    resume_from = spec.get("resume_from")
    resumed_step = int(resume_from.rsplit("-", 1)[1]) if resume_from else 0

    metrics: dict[str, float] = {}
    if evals.examples:
        metrics.update(
            _evaluate_before(trainer, proc, reporter, resume_from, resumed_step, max_steps)
        )
    if any_rank(bool(should_stop()), trainer.args.device):
        return {"status": "cancelled", "global_step": resumed_step, "max_steps": max_steps}

    stop = trainer_callbacks().Stop(should_stop)
    if proc.is_main and resume_from:
        reporter.log(f"resuming from the checkpoint of step {resumed_step}")
    metrics.update(_train(trainer, stop, collator, reporter, resume_from))
    state = trainer.state
    outcome = {
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "metrics": metrics,
        "details": _details(spec, proc, sizes, targets, train, evals),
        "resumed_from_step": resumed_step or None,
    }
    if stop.stopped_at is not None:
        if proc.is_main:
            reporter.log(f"stopped at step {state.global_step}; checkpoint kept", "warning")
        return {"status": "cancelled", **outcome}

    _evaluate_after_and_publish(trainer, proc, reporter, metrics, bool(evals.examples))
    barrier()
    del trainer, model
    if proc.on_cuda:
        import torch

        torch.cuda.empty_cache()
    return {"status": "succeeded", **outcome}


def _encode(
    spec: dict[str, Any], tokenizer: Any, proc: _Process, reporter: Reporter
) -> tuple[EncodedRows, EncodedRows]:
    """Encode the train and eval rows; say how many examples and where the loss is."""
    config = proc.config
    train = encode_rows(
        spec["train_rows"],
        tokenizer,
        spec["template"],
        max_seq_length=config.max_seq_length,
        loss_on=config.loss_on,
    )
    evals = encode_rows(
        spec["eval_rows"],
        tokenizer,
        spec["template"],
        max_seq_length=config.max_seq_length,
        loss_on=config.loss_on,
    )
    if not train.examples:
        raise JobFailed("no training example is left after tokenization (all rows empty?)")
    target = answer_field(spec["template"], config.loss_on)
    if proc.is_main:
        reporter.log(
            f"{len(train.examples)} training and {len(evals.examples)} eval examples; loss on "
            + (f"{{{target}}} and EOS (prompt masked)" if target else "the whole text")
            + (
                f"; {train.truncated} cut to {config.max_seq_length} tokens"
                if train.truncated
                else ""
            )
            + (f"; {train.skipped} skipped (nothing to learn)" if train.skipped else "")
        )
    return train, evals


def _add_lora(model: Any, config: LoraFinetuneConfig, targets: tuple) -> Any:
    """Wrap the base model in a peft LoRA model (prepared for k-bit training when quantized)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.load_in != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model.config.use_cache = False
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        target_modules=list(targets),
        lora_dropout=config.lora_dropout,
        bias=config.bias,  # type: ignore[arg-type]  # one of BIASES, checked by the config
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _training_arguments(proc: _Process) -> Any:
    from transformers import TrainingArguments

    config, on_cuda, world_size = proc.config, proc.on_cuda, proc.world_size
    return TrainingArguments(
        output_dir=str(proc.output_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # CheckpointMarker prunes, counting complete checkpoints only
        eval_strategy="no",
        seed=config.seed,
        data_seed=config.seed,
        bf16=proc.precision == "bf16",
        fp16=proc.precision == "fp16",
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_cuda,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="none",
        disable_tqdm=True,
        ddp_backend=("nccl" if on_cuda else "gloo") if world_size > 1 else None,
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )


def _build_trainer(
    model: Any,
    proc: _Process,
    train: EncodedRows,
    evals: EncodedRows,
    collator: PadCollator,
    reporter: Reporter,
) -> Any:
    """A Trainer with the checkpoint and logging callbacks (the reporter and Stop come later)."""
    from transformers import PrinterCallback, ProgressCallback, Trainer

    callbacks = trainer_callbacks()
    trainer = Trainer(
        model=model,
        args=_training_arguments(proc),
        train_dataset=ListDataset(train.examples),
        eval_dataset=ListDataset(evals.examples) if evals.examples else None,
        data_collator=collator,
        callbacks=[
            callbacks.LogAtSaves(),
            callbacks.CheckpointMarker(proc.config.keep_checkpoints, reporter.flush),
            callbacks.Throughput(collator),
        ],
    )
    for noisy in (PrinterCallback, ProgressCallback):  # they print every log to stdout/stderr
        trainer.remove_callback(noisy)
    return trainer


@timed("finetune.eval")
def eval_metrics(trainer: Any, suffix: str) -> dict[str, float]:
    """eval_loss_<suffix> and perplexity_<suffix>; a non-finite loss is a JobFailed."""
    out = trainer.evaluate()
    loss = float(out["eval_loss"])
    if not math.isfinite(loss):
        raise JobFailed(
            f"the eval loss {suffix} training is {loss} (the model diverged or overflowed): "
            "lower the learning rate, or train in bf16/fp32 instead of fp16"
        )
    ppl = math.exp(loss) if loss < 700 else float("inf")
    return {f"eval_loss_{suffix}": loss, f"perplexity_{suffix}": ppl}


def _evaluate_before(
    trainer: Any,
    proc: _Process,
    reporter: Reporter,
    resume_from: str | None,
    resumed_step: int,
    max_steps: int,
) -> dict[str, float]:
    """The eval metrics before training: measured once, kept in the run folder for resumes."""
    before_path = proc.output_dir / EVAL_BEFORE_NAME
    saved = json.loads(before_path.read_text()) if resume_from and before_path.is_file() else None
    if saved is None:
        saved = eval_metrics(trainer, "before")
        if proc.is_main:
            write_json(before_path, saved)
    if proc.is_main:
        reporter.step(resumed_step, max_steps, dict(saved))
        reporter.log(
            f"before training: eval loss {saved['eval_loss_before']:.4f}, "
            f"perplexity {saved['perplexity_before']:.2f}"
        )
    return saved


def _train(
    trainer: Any, stop: Any, collator: PadCollator, reporter: Reporter, resume_from: str | None
) -> dict[str, float]:
    """Run Trainer.train with the reporter and Stop callbacks; return the training metrics."""
    reporter_cb = trainer_callback(NoStopReporter(reporter))
    trainer.add_callback(reporter_cb)
    trainer.add_callback(stop)
    tokens0 = collator.tokens
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - t0
    trainer.remove_callback(reporter_cb)
    tokens = sum_across_ranks(collator.tokens - tokens0, trainer.args.device)
    log_history = trainer.state.log_history
    losses = [e["loss"] for e in log_history if "loss" in e]
    metrics = {
        "train_seconds": round(train_seconds, 4),
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / train_seconds, 2) if train_seconds > 0 else 0.0,
    }
    if losses:
        metrics["train_loss_first"] = float(losses[0])
        metrics["train_loss_last"] = float(losses[-1])
    mean_loss = mean_logged_loss(log_history)
    if mean_loss is not None:
        metrics["train_loss"] = mean_loss
    return metrics


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over every step of the run, from Trainer's log history.

    Each log's `loss` is the mean since the previous log, so it is weighted by its window. Unlike
    Trainer's own `train_loss` (the mean over the steps of the last `train()` call only), this
    covers the steps before a resume too: the history is restored from the checkpoint.
    """
    total, previous = 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            step = int(entry["step"])
            total += float(entry["loss"]) * (step - previous)
            previous = step
    return total / previous if previous > 0 else None


def _details(
    spec: dict[str, Any],
    proc: _Process,
    sizes: dict[str, int],
    targets: tuple,
    train: EncodedRows,
    evals: EncodedRows,
) -> dict[str, Any]:
    """What the run was: device, sizes, targets, examples (for the result and the model card)."""
    target = answer_field(spec["template"], proc.config.loss_on)
    return {
        "precision": proc.precision,
        "device": spec["device_kind"],
        "world_size": proc.world_size,
        "target_modules": list(targets),
        **sizes,
        "train_examples": len(train.examples),
        "eval_examples": len(evals.examples),
        "loss_on": target or "all",
        "truncated_examples": train.truncated,
        "skipped_examples": train.skipped,
    }


def _evaluate_after_and_publish(
    trainer: Any, proc: _Process, reporter: Reporter, metrics: dict[str, float], evaluate: bool
) -> None:
    """Eval after training, report the final metrics, write the adapter folder (rank 0)."""
    if evaluate:
        metrics.update(eval_metrics(trainer, "after"))
    if not proc.is_main:
        return
    state = trainer.state
    final = {k: v for k, v in metrics.items() if not k.endswith("_before")}
    reporter.step(state.global_step, state.max_steps, final)
    if evaluate:
        reporter.log(
            f"after training: eval loss {metrics['eval_loss_after']:.4f}, "
            f"perplexity {metrics['perplexity_after']:.2f}"
        )
    output_dir = proc.output_dir
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=output_dir))
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    for stray in ("README.md",):  # peft's generic card; train_lora writes ours
        (tmp / stray).unlink(missing_ok=True)
    replace_dir(tmp, output_dir / ADAPTER_DIR)
