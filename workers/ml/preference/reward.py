"""`train_reward`: a reward model from preference pairs (trl RewardTrainer), in an SFT-shaped run
folder.

The base model is loaded as a sequence classifier with one output (transformers adds a score head
on the last token, drawn at random from the seed); LoRA (task SEQ_CLS) adapts the attention and
the score head is trained in full (peft's modules_to_save), so the published adapter holds both.
The loss is -log sigmoid(score(chosen) - score(rejected)); held-out accuracy is the share of pairs
scored the right way round.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.finetune.base_model import default_target_modules, inspect_base_model, quiet_peft
from workers.ml.finetune.data import split_eval
from workers.ml.finetune.run import FinetuneResult
from workers.ml.finetune.runtime import check_devices, check_quantization, resolve_precision
from workers.ml.preference.config import RewardConfig
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
from workers.ml.preference.scoring import encode_for_score, load_reward_base
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["REWARD_METRIC_NAMES", "train_reward"]

REWARD_METRIC_NAMES: dict[str, str | None] = {
    "accuracy": "reward_accuracy",
    "margin": "reward_margin",
    "mean_reward": "reward_mean",
    "min_reward": None,
    "max_reward": None,
    "num_tokens": None,
}


@timed("preference.train_reward")
def train_reward(
    config: RewardConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    template: str | None = None,
    resume: bool = True,
    card_info: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Train a LoRA reward model on {prompt, chosen, rejected} rows (see the module doc).

    Each text is the rendered prompt + answer + EOS, cut to its last max_seq_length tokens.
    `eval_rows`, `template`, `resume`, `card_info` and the result: as train_dpo's.
    """
    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base_model_dir = Path(base_model_dir).resolve()
    precision = resolve_precision(config.precision)
    check_quantization(config.load_in)
    device_kind = check_devices(1)
    inspect_base_model(base_model_dir)

    rows = check_pairs(train_rows)
    if eval_rows is None:
        rows, held = split_eval(rows, config.eval_fraction, config.seed)
    else:
        held = check_pairs(eval_rows, what="validation row")
    if not rows:
        raise JobFailed("the dataset has no training pairs")
    run_id = fingerprint("reward", config.to_dict(), str(base_model_dir), template, rows, held)
    return run_in_folder(
        output_dir,
        method="reward",
        config=config,
        run_id=run_id,
        resume=resume,
        reporter=reporter,
        start_message=(
            f"reward model: LoRA r={config.r} + score head on {base_model_dir.name}, {precision}"
        ),
        train=lambda resume_from: _train(
            config,
            base_model_dir=str(base_model_dir),
            rows=rows,
            held=held,
            output_dir=output_dir,
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


def _tokenized(pairs: list[dict[str, str]], tokenizer: Any, max_length: int) -> list[dict]:
    """chosen_ids / rejected_ids as the scorer reads texts (trl then skips its own tokenizing)."""
    return [
        {
            "chosen_ids": encode_for_score(tokenizer, p["prompt"] + p["chosen"], max_length),
            "rejected_ids": encode_for_score(tokenizer, p["prompt"] + p["rejected"], max_length),
        }
        for p in pairs
    ]


def _evaluate(trainer: Any, suffix: str) -> dict[str, float]:
    out = trainer.evaluate()
    return finite(
        {
            f"eval_loss_{suffix}": float(out["eval_loss"]),
            f"reward_accuracy_{suffix}": float(out.get("eval_accuracy", 0.0)),
            f"reward_margin_{suffix}": float(out.get("eval_margin", 0.0)),
        },
        suffix,
    )


def _describe(metrics: dict[str, float]) -> str:
    suffix = "before" if "eval_loss_before" in metrics else "after"
    return (
        f"eval loss {metrics[f'eval_loss_{suffix}']:.4f}, chosen scored above rejected in "
        f"{metrics[f'reward_accuracy_{suffix}']:.0%} of the held-out pairs"
    )


def _train(
    config: RewardConfig,
    *,
    base_model_dir: str,
    rows: list[dict[str, str]],
    held: list[dict[str, str]],
    output_dir: Path,
    template: str | None,
    precision: str,
    on_cuda: bool,
    resume_from: str | None,
    reporter: Reporter,
) -> dict[str, Any]:
    from datasets import Dataset  # type: ignore[import-untyped]
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    quiet_peft()
    datasets_quiet()
    set_seed(config.seed)  # before loading: the score head is drawn at random
    model, tokenizer = load_reward_base(
        base_model_dir,
        precision=precision,
        load_in=config.load_in,
        device="cuda:0" if on_cuda else "cpu",
    )
    train = render_pairs(rows, tokenizer, template=template)
    evals = render_pairs(held, tokenizer, template=template)
    if config.load_in != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model.config.use_cache = False
    targets = config.target_modules or default_target_modules(base_model_dir, model)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        target_modules=list(targets),
        lora_dropout=config.lora_dropout,
        bias=config.bias,  # type: ignore[arg-type]  # one of BIASES, checked by the config
        task_type="SEQ_CLS",
        modules_to_save=["score"],
    )
    args = TrlRewardConfig(
        **training_kwargs(config, output_dir, precision, on_cuda),
        max_length=None,  # cut by _tokenized (from the start, so the scored end stays)
        center_rewards_coefficient=config.center_rewards_coefficient or None,
        disable_dropout=True,
    )
    collator = CountingCollator(
        DataCollatorForPreference(
            pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=8 if on_cuda else None
        )
    )
    train_data = _tokenized(train.pairs, tokenizer, config.max_seq_length)
    eval_data = _tokenized(evals.pairs, tokenizer, config.max_seq_length)
    trainer = RewardTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_list(train_data),
        eval_dataset=Dataset.from_list(eval_data) if eval_data else None,
        processing_class=tokenizer,
        peft_config=lora,
    )
    attach_callbacks(trainer, config, reporter, collator)
    max_steps = planned_max_steps(trainer)
    resumed = step_of(resume_from)
    details = {
        "method": "reward",
        "precision": precision,
        "device": "cuda" if on_cuda else "cpu",
        "target_modules": list(targets),
        **parameter_counts(trainer.model),
        "train_pairs": len(train_data),
        "eval_pairs": len(eval_data),
    }
    metrics: dict[str, float] = {}
    if eval_data:
        metrics.update(
            evaluate_before(
                output_dir,
                resume_from,
                lambda: _evaluate(trainer, "before"),
                _describe,
                reporter,
                step=resumed,
                total=max_steps,
            )
        )
    stopped = train_or_stop(
        trainer,
        reporter=reporter,
        collator=collator,
        resume_from=resume_from,
        resumed=resumed,
        max_steps=max_steps,
        metrics=metrics,
        details=details,
        names=REWARD_METRIC_NAMES,
    )
    if stopped is not None:
        return stopped
    state = trainer.state
    if eval_data:
        after = _evaluate(trainer, "after")
        metrics.update(after)
        reporter.log("after training: " + _describe(after))
    reporter.step(
        state.global_step,
        state.max_steps,
        {k: v for k, v in metrics.items() if not k.endswith("_before")},
    )
    save_adapter(trainer.model, output_dir)
    return outcome("succeeded", state.global_step, state.max_steps, metrics, details, resumed)
