"""One training process: the only one, or one rank of a DDP run (ddp.py starts those).

`train_process` runs the steps in a fixed order (the seed is set first, and every step that draws
random numbers runs in the same order on every attempt, so a resumed run ends with the same
adapter as an uninterrupted one): load the base model, encode the rows, add LoRA, build the
Trainer, evaluate before training, train (resuming from a checkpoint), collect the metrics,
evaluate after training and publish the adapter folder.

Evaluations (before, every `eval_steps` during, after) put the RNG state back when they end, so
how often a run evaluates never changes its adapter. With `packing`, the examples of each
optimizer step go through the model as one packed row (data.PackCollator) in one forward and
backward pass: Trainer runs with a batch of batch size x accumulation examples and no
accumulation, which draws the same examples per step in the same order (the sampler's order
does not depend on the batch size, and ceil(ceil(n/b)/g) = ceil(n/(b*g)) steps per epoch). The
loss is the mean over the step's label tokens either way (Trainer passes num_items_in_batch, the
step's label count, to the loss), so the optimizer follows the unpacked run up to float
rounding (and LoRA dropout, whose random masks are drawn for differently shaped tensors).

Attention in a packed row: transformers alone would build a block-diagonal L x L mask for sdpa
(L = all the step's tokens), quadratic in L: on CPU a packed step of 16 short rows then took
1.4x the time of its 4 padded micro-batches. A model on sdpa therefore trains packed with
PACKED_ATTENTION: the row split at the example boundaries (from position_ids) and causal sdpa on
each example, what flash-attention's varlen kernel does (a model on flash-attention keeps it; one
on eager keeps transformers' block mask).
"""

from __future__ import annotations

import functools
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
    PackCollator,
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
    if config.packing and getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(packed_attention())
    train, evals = _encode(spec, tokenizer, proc, reporter)
    targets = config.target_modules or default_target_modules(spec["base_model_dir"], model)
    model = _add_lora(model, config, targets)
    sizes = {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
    }
    if config.packing:
        _check_packing(model)
    pad_to = 8 if proc.on_cuda else None
    # Separate collators: the train one counts the tokens trained on (tokens/s), evaluations
    # during training must not add to it.
    collator: PadCollator | PackCollator = (
        PackCollator() if config.packing else PadCollator(tokenizer.pad_token_id, pad_to)
    )
    eval_collator = PadCollator(tokenizer.pad_token_id, pad_to)
    trainer = _build_trainer(model, proc, train, evals, collator, eval_collator, reporter)
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


PACKED_ATTENTION = "atelier_packed_sdpa"


@functools.cache
def packed_attention() -> str:
    """Register PACKED_ATTENTION with transformers (once per process) and return its name.

    Its mask function builds no mask for a row without padding (causality comes from sdpa's
    is_causal), and the same sdpa mask as "sdpa" otherwise (padded eval batches, sliding
    windows, custom overlays). The attention splits a packed row (batch of one, no mask,
    position_ids restarting at 0) into its examples and runs causal sdpa on each, so no token
    can attend across a boundary; everything else goes to transformers' sdpa unchanged.
    """
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    def mask(*args: Any, **kwargs: Any) -> Any:
        plain = kwargs.get("attention_mask") is None and kwargs.get("local_size") is None
        if plain and not kwargs.get("use_vmap"):
            return None
        return sdpa_mask(*args, **kwargs)

    def attention(
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        position_ids: Any = None,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        if attention_mask is None and query.shape[0] == 1 and query.shape[2] > 1:
            if position_ids is None and module.training:
                raise JobFailed(
                    f"sequence packing needs position ids in attention, which {type(module).__name__}"
                    " does not pass on: turn packing off"
                )
            lengths = _example_lengths(position_ids, query.shape[2])
            if len(lengths) > 1:
                parts = [
                    sdpa_attention_forward(module, q, k, v, None, **kwargs)[0]
                    for q, k, v in zip(
                        query.split(lengths, dim=2),
                        key.split(lengths, dim=2),
                        value.split(lengths, dim=2),
                        strict=True,
                    )
                ]
                return torch.cat(parts, dim=1), None  # (batch, tokens, heads, head_dim)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(PACKED_ATTENTION, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, mask)
    return PACKED_ATTENTION


def _example_lengths(position_ids: Any, total: int) -> list[int]:
    """The lengths of the examples of one packed row: each starts where its position is 0."""
    if position_ids is None or position_ids.dim() != 2:
        return [total]
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        return [total]
    return [end - start for start, end in zip(starts, [*starts[1:], total], strict=True)]


def _check_packing(model: Any) -> None:
    """Packing relies on PACKED_ATTENTION, or on transformers building the per-example mask
    (or flash-attention's varlen boundaries) from position_ids: refuse a model whose attention
    would do neither, rather than train it across example boundaries."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:  # sdpa, eager, flex, flash
        raise JobFailed(
            f"sequence packing needs eager, sdpa, flex or flash attention; this model uses "
            f"{impl!r}: turn packing off"
        )
    if getattr(model.config, "use_cache", False):
        raise JobFailed("sequence packing needs use_cache off during training")  # _add_lora


def _training_arguments(proc: _Process) -> Any:
    from transformers import TrainingArguments

    config, on_cuda, world_size = proc.config, proc.on_cuda, proc.world_size
    # Packed: one row per optimizer step holds the batch x accumulation examples (module doc).
    batch, accumulation = config.per_device_train_batch_size, config.gradient_accumulation_steps
    if config.packing:
        batch, accumulation = batch * accumulation, 1
    return TrainingArguments(
        output_dir=str(proc.output_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation,
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


@functools.cache
def _trainer_class() -> type:
    """Trainer with a collator of its own for training, and evaluations that are timed and
    leave the RNG state as they found it (built on first use: imports transformers)."""
    from transformers import Trainer

    class FinetuneTrainer(Trainer):
        def __init__(self, *args: Any, train_collator: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.train_collator = train_collator
            self.eval_seconds = 0.0

        def get_train_dataloader(self) -> Any:
            # Trainer builds every dataloader with self.data_collator: the eval one (padding)
            # stays there, the train one (padding or packing) is swapped in for this call only.
            eval_collator, self.data_collator = self.data_collator, self.train_collator
            try:
                return super().get_train_dataloader()
            finally:
                self.data_collator = eval_collator

        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            import torch

            # A dataloader draws its base seed from the global torch RNG: without fork_rng an
            # evaluation would shift the dropout masks of every later step.
            device = self.args.device
            devices = [device.index or 0] if device.type == "cuda" else []
            t0 = time.perf_counter()
            try:
                with torch.random.fork_rng(devices=devices):
                    return super().evaluate(*args, **kwargs)
            finally:
                self.eval_seconds += time.perf_counter() - t0

    return FinetuneTrainer


def _build_trainer(
    model: Any,
    proc: _Process,
    train: EncodedRows,
    evals: EncodedRows,
    collator: PadCollator | PackCollator,
    eval_collator: PadCollator,
    reporter: Reporter,
) -> Any:
    """A Trainer with the checkpoint, eval and logging callbacks (the reporter and Stop come
    later, so the logs they see already carry tokens/s and perplexity)."""
    from transformers import PrinterCallback, ProgressCallback

    callbacks = trainer_callbacks()
    own = [
        callbacks.LogAtSaves(),
        callbacks.CheckpointMarker(proc.config.keep_checkpoints, reporter.flush),
    ]
    if evals.examples and proc.config.eval_steps > 0:
        own.append(callbacks.EvalCurve(proc.config.eval_steps))
    trainer = _trainer_class()(
        model=model,
        args=_training_arguments(proc),
        train_dataset=ListDataset(train.examples),
        eval_dataset=ListDataset(evals.examples) if evals.examples else None,
        data_collator=eval_collator,
        train_collator=collator,
        callbacks=own,
    )
    trainer.add_callback(callbacks.Throughput(collator, lambda: trainer.eval_seconds))
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
        point = dict(saved)
        if not resume_from:  # the eval curve's first point (eval_loss, as during training)
            point.update(eval_loss=saved["eval_loss_before"], perplexity=saved["perplexity_before"])
        reporter.step(resumed_step, max_steps, point)
        reporter.log(
            f"before training: eval loss {saved['eval_loss_before']:.4f}, "
            f"perplexity {saved['perplexity_before']:.2f}"
        )
    return saved


def _train(
    trainer: Any,
    stop: Any,
    collator: PadCollator | PackCollator,
    reporter: Reporter,
    resume_from: str | None,
) -> dict[str, float]:
    """Run Trainer.train with the reporter and Stop callbacks; return the training metrics
    (the time and tokens/s of training, evaluations during it left out)."""
    reporter_cb = trainer_callback(NoStopReporter(reporter))
    trainer.add_callback(reporter_cb)
    trainer.add_callback(stop)
    tokens0, eval0 = collator.tokens, trainer.eval_seconds
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - t0 - (trainer.eval_seconds - eval0)
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
    if evaluate:  # the eval curve's last point
        final.update(eval_loss=metrics["eval_loss_after"], perplexity=metrics["perplexity_after"])
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
