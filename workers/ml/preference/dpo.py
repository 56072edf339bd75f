"""`train_dpo`: LoRA DPO (trl DPOTrainer) on preference pairs, in an SFT-shaped run folder.

The reference model is never a second copy of the weights:
- from a base model: a new LoRA adapter is trained, and the reference is the same model with the
  adapter disabled (trl's PEFT path);
- from an SFT adapter (`parent_adapter_dir`): that adapter is loaded trainable and trl keeps a
  frozen copy of it as a second adapter named "ref", so the reference is the SFT model and the
  published adapter is the SFT adapter trained further (it loads on the base model alone).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.finetune.base_model import (
    default_target_modules,
    inspect_base_model,
    load_base_model,
    quiet_peft,
)
from workers.ml.finetune.data import split_eval
from workers.ml.finetune.run import FinetuneResult
from workers.ml.finetune.runtime import check_devices, check_quantization, resolve_precision
from workers.ml.preference.config import DpoConfig
from workers.ml.preference.data import check_pairs, datasets_quiet, render_pairs
from workers.ml.preference.folder import fingerprint, run_in_folder
from workers.ml.preference.loop import (
    CountingCollator,
    attach_callbacks,
    evaluate_before,
    finite,
    outcome,
    parameter_counts,
    planned_max_steps,
    save_adapter,
    step_of,
    train_or_stop,
    training_kwargs,
)
from workers.ml.preference.scoring import pair_logps, preference_accuracy
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["DPO_METRIC_NAMES", "train_dpo"]

# trl's log names -> the job page's; None: not reported (noise for a user).
DPO_METRIC_NAMES: dict[str, str | None] = {
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "logps/chosen": "logp_chosen",
    "logps/rejected": "logp_rejected",
    "logits/chosen": None,
    "logits/rejected": None,
    "num_tokens": None,
    "mean_token_accuracy": None,
    "entropy": None,
}


@timed("preference.train_dpo")
def train_dpo(
    config: DpoConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    parent_adapter_dir: str | os.PathLike[str] | None = None,
    template: str | None = None,
    resume: bool = True,
    card_info: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Train a DPO LoRA adapter on {prompt, chosen, rejected} rows (see the module doc).

    `eval_rows`: the version's validation pairs; None holds out `config.eval_fraction` of the
    training pairs. `template`: the SFT template prompts are rendered with (the parent adapter's);
    None: the chat template, else the raw prompt. Returns status "succeeded" (adapter written) or
    "cancelled" (stopped at the next step; checkpoint kept). A run in the same folder with the
    same inputs resumes from its newest complete checkpoint.
    """
    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base_model_dir = Path(base_model_dir).resolve()
    precision = resolve_precision(config.precision)
    check_quantization(config.load_in)
    device_kind = check_devices(1)
    inspect_base_model(base_model_dir)
    parent = str(Path(parent_adapter_dir).resolve()) if parent_adapter_dir else None
    if parent and not (Path(parent) / "adapter_config.json").is_file():
        raise JobFailed(f"the adapter to start from has no adapter_config.json ({parent})")

    rows = check_pairs(train_rows)
    if eval_rows is None:
        rows, held = split_eval(rows, config.eval_fraction, config.seed)
    else:
        held = check_pairs(eval_rows, what="validation row")
    if not rows:
        raise JobFailed("the dataset has no training pairs")
    run_id = fingerprint("dpo", config.to_dict(), str(base_model_dir), parent, template, rows, held)
    return run_in_folder(
        output_dir,
        method="dpo",
        config=config,
        run_id=run_id,
        resume=resume,
        reporter=reporter,
        start_message=(
            f"DPO ({config.loss_type}, beta={config.beta}) with LoRA r={config.r} on "
            f"{base_model_dir.name}"
            + (" from the SFT adapter" if parent else "")
            + f", {precision}"
        ),
        train=lambda resume_from: _train(
            config,
            base_model_dir=str(base_model_dir),
            rows=rows,
            held=held,
            output_dir=output_dir,
            parent=parent,
            template=template,
            precision=precision,
            on_cuda=device_kind == "cuda",
            resume_from=resume_from,
            reporter=reporter,
        ),
        card_info=card_info,
        base_model_dir=base_model_dir,
        template=template,
    )


def _dpo_model(model: Any, config: DpoConfig, base_model_dir: str, parent: str | None):
    """(model, peft_config for trl or None, targets): a new LoRA to add, or the parent loaded
    trainable (trl then adds its frozen "ref" copy)."""
    from peft import LoraConfig, PeftModel, prepare_model_for_kbit_training

    if config.load_in != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model.config.use_cache = False
    if parent:
        model = PeftModel.from_pretrained(model, parent, is_trainable=True)
        targets = tuple(sorted(model.peft_config["default"].target_modules or ()))
        return model, None, targets
    targets = config.target_modules or default_target_modules(base_model_dir, model)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        target_modules=list(targets),
        lora_dropout=config.lora_dropout,
        bias=config.bias,  # type: ignore[arg-type]  # one of BIASES, checked by the config
        task_type="CAUSAL_LM",
    )
    return model, lora, tuple(targets)


def _evaluate(trainer: Any, tokenizer: Any, held: list[dict[str, str]], suffix: str) -> dict:
    """Eval loss, reward accuracy and margin (trl, against the reference) and the policy's own
    preference: the share of held-out pairs whose chosen answer it finds more likely."""
    out = trainer.evaluate()
    logps = pair_logps(
        trainer.model, tokenizer, held, batch_size=trainer.args.per_device_eval_batch_size
    )
    margin = sum(c - r for c, r in logps) / len(logps)
    return finite(
        {
            f"eval_loss_{suffix}": float(out["eval_loss"]),
            f"reward_accuracy_{suffix}": float(out.get("eval_rewards/accuracies", 0.0)),
            f"reward_margin_{suffix}": float(out.get("eval_rewards/margins", 0.0)),
            f"preference_accuracy_{suffix}": preference_accuracy(logps),
            f"logp_margin_{suffix}": margin,
        },
        suffix,
    )


def _describe(metrics: dict[str, float]) -> str:
    suffix = "before" if "eval_loss_before" in metrics else "after"
    return (
        f"eval loss {metrics[f'eval_loss_{suffix}']:.4f}, reward accuracy "
        f"{metrics[f'reward_accuracy_{suffix}']:.2f}, chosen more likely than rejected in "
        f"{metrics[f'preference_accuracy_{suffix}']:.0%} of the held-out pairs"
    )


def _train(
    config: DpoConfig,
    *,
    base_model_dir: str,
    rows: list[dict[str, str]],
    held: list[dict[str, str]],
    output_dir: Path,
    parent: str | None,
    template: str | None,
    precision: str,
    on_cuda: bool,
    resume_from: str | None,
    reporter: Reporter,
) -> dict[str, Any]:
    """Load, render, build the DPOTrainer, evaluate, train (resuming), evaluate, save."""
    from datasets import Dataset  # type: ignore[import-untyped]
    from transformers import set_seed
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    quiet_peft()
    datasets_quiet()
    set_seed(config.seed)
    model, tokenizer = load_base_model(
        base_model_dir,
        precision=precision,
        load_in=config.load_in,
        device="cuda:0" if on_cuda else "cpu",
    )
    train = render_pairs(
        rows, tokenizer, template=template, max_prompt_length=config.max_prompt_length
    )
    evals = render_pairs(
        held, tokenizer, template=template, max_prompt_length=config.max_prompt_length
    )
    if train.truncated:
        reporter.log(
            f"{train.truncated} prompts cut to their last {config.max_prompt_length} tokens"
        )
    model, lora, targets = _dpo_model(model, config, base_model_dir, parent)
    args = TrlDPOConfig(
        **training_kwargs(config, output_dir, precision, on_cuda),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        max_length=config.max_seq_length,
        disable_dropout=True,
    )
    collator = CountingCollator(
        DataCollatorForPreference(
            pad_token_id=tokenizer.pad_token_id,
            max_length=config.max_seq_length,
            pad_to_multiple_of=8 if on_cuda else None,
        )
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_list(train.pairs),
        eval_dataset=Dataset.from_list(evals.pairs) if evals.pairs else None,
        processing_class=tokenizer,
        peft_config=lora,
    )
    attach_callbacks(trainer, config, reporter, collator)
    max_steps = planned_max_steps(trainer)
    resumed = step_of(resume_from)
    sizes = parameter_counts(trainer.model)
    metrics: dict[str, float] = {}
    if evals.pairs:
        metrics.update(
            evaluate_before(
                output_dir,
                resume_from,
                lambda: _evaluate(trainer, tokenizer, evals.pairs, "before"),
                _describe,
                reporter,
                step=resumed,
                total=max_steps,
            )
        )
    details = {
        "method": "dpo",
        "reference": "the SFT adapter (frozen copy)" if parent else "the base model",
        "precision": precision,
        "device": "cuda" if on_cuda else "cpu",
        "target_modules": list(targets),
        **sizes,
        "train_pairs": len(train.pairs),
        "eval_pairs": len(evals.pairs),
        "truncated_prompts": train.truncated,
    }
    stopped = train_or_stop(
        trainer,
        reporter=reporter,
        collator=collator,
        resume_from=resume_from,
        resumed=resumed,
        max_steps=max_steps,
        metrics=metrics,
        details=details,
        names=DPO_METRIC_NAMES,
    )
    if stopped is not None:
        return stopped
    state = trainer.state
    if evals.pairs:
        after = _evaluate(trainer, tokenizer, evals.pairs, "after")
        metrics.update(after)
        reporter.log("after training: " + _describe(after))
    reporter.step(
        state.global_step,
        state.max_steps,
        {k: v for k, v in metrics.items() if not k.endswith("_before")},
    )
    save_adapter(trainer.model, output_dir)
    return outcome("succeeded", state.global_step, state.max_steps, metrics, details, resumed)
