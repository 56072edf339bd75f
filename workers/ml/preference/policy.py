"""`train_policy`: online policy optimisation (trl GRPOTrainer) with a reward-model adapter as the
reward, in an SFT-shaped run folder.

For each prompt the model samples `num_generations` answers (transformers' generate; no vLLM),
the reward model scores prompt + answer, and GRPO reinforces the answers that scored above their
group's mean; a KL term (kl_beta) keeps the model near the base (the adapter disabled). Held-out
prompts are answered greedily before and after training and their mean reward is reported.
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
from workers.ml.preference.config import PolicyConfig
from workers.ml.preference.data import datasets_quiet
from workers.ml.preference.folder import fingerprint, run_in_folder
from workers.ml.preference.loop import (
    attach_callbacks,
    evaluate_before,
    finite,
    outcome,
    planned_max_steps,
    save_adapter,
    step_of,
    train_or_stop,
    training_kwargs,
)
from workers.ml.preference.scoring import load_reward_model, score_texts
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["POLICY_METRIC_NAMES", "train_policy"]

POLICY_METRIC_NAMES: dict[str, str | None] = {
    "reward": "reward",
    "reward_std": "reward_std",
    "kl": "kl",
    "completions/mean_length": "answer_length",
}


class _Tokens:
    """GRPO builds its batches itself (no collator): tokens/s counts the prompt and answer tokens
    its logs report, through the same `tokens` counter the Throughput callback reads."""

    def __init__(self) -> None:
        self.tokens = 0


@timed("preference.train_policy")
def train_policy(
    config: PolicyConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    prompts: Iterable[str],
    eval_prompts: Iterable[str] | None = None,
    reward_adapter_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    template: str | None = None,
    resume: bool = True,
    card_info: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter with GRPO, rewarded by the reward model at `reward_adapter_dir` (a
    reward adapter of the same base model). `prompts` are user prompts, rendered as the model is
    prompted when it generates (`template`: an SFT template; None: the chat template or raw).
    `eval_prompts`: None holds out `config.eval_fraction` of the prompts. Result: as train_dpo's.
    """
    reporter = reporter or NullReporter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base_model_dir = Path(base_model_dir).resolve()
    reward_dir = str(Path(reward_adapter_dir).resolve())
    precision = resolve_precision(config.precision)
    check_quantization(config.load_in)
    device_kind = check_devices(1)
    inspect_base_model(base_model_dir)
    if not (Path(reward_dir) / "adapter_config.json").is_file():
        raise JobFailed(f"the reward model has no adapter_config.json ({reward_dir})")
    rows = [{"prompt": p} for p in prompts if isinstance(p, str) and p.strip()]
    if eval_prompts is None:
        rows, held = split_eval(rows, config.eval_fraction, config.seed)
    else:
        held = [{"prompt": p} for p in eval_prompts if isinstance(p, str) and p.strip()]
    if not rows:
        raise JobFailed("the dataset has no prompts to train on")
    run_id = fingerprint(
        "grpo", config.to_dict(), str(base_model_dir), reward_dir, template, rows, held
    )
    return run_in_folder(
        output_dir,
        method="grpo",
        config=config,
        run_id=run_id,
        resume=resume,
        reporter=reporter,
        start_message=(
            f"GRPO: {config.num_generations} answers per prompt scored by the reward model, LoRA "
            f"r={config.r} on {base_model_dir.name}, {precision}"
        ),
        train=lambda resume_from: _train(
            config,
            base_model_dir=str(base_model_dir),
            rows=rows,
            held=held,
            reward_dir=reward_dir,
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


def _reward_function(scorer: Any, tokenizer: Any, max_length: int, counter: _Tokens):
    """trl's reward-function shape: (prompts, completions) -> one float per completion."""

    def reward_model(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        counter.tokens += sum(len(tokenizer(t)["input_ids"]) for t in texts)
        return score_texts(scorer, tokenizer, texts, max_length=max_length)

    return reward_model


def _mean_reward(model: Any, tokenizer: Any, scorer: Any, prompts: list[str], config) -> float:
    """The reward model's mean score of greedy answers to `prompts`."""
    import torch

    texts = []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for prompt in prompts:
                ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=config.max_completion_length,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
                answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
                texts.append(prompt + answer)
    finally:
        model.train(was_training)
    scores = score_texts(scorer, tokenizer, texts, max_length=config.max_seq_length)
    return sum(scores) / len(scores)


def _train(
    config: PolicyConfig,
    *,
    base_model_dir: str,
    rows: list[dict[str, str]],
    held: list[dict[str, str]],
    reward_dir: str,
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
    from trl import GRPOConfig, GRPOTrainer

    from workers.ml.textgen import build_prompt

    quiet_peft()
    datasets_quiet()
    set_seed(config.seed)
    device = "cuda:0" if on_cuda else "cpu"
    model, tokenizer = load_base_model(
        base_model_dir, precision=precision, load_in=config.load_in, device=device
    )
    scorer, _ = load_reward_model(base_model_dir, reward_dir, device=device, precision=precision)

    def render(p: str) -> str:
        return build_prompt(tokenizer, p, template=template, use_chat_template=template is None)

    train = [{"prompt": render(r["prompt"])} for r in rows]
    evals = [render(r["prompt"]) for r in held]
    if config.load_in != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    targets = config.target_modules or default_target_modules(base_model_dir, model)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        target_modules=list(targets),
        lora_dropout=config.lora_dropout,
        bias=config.bias,  # type: ignore[arg-type]  # one of BIASES, checked by the config
        task_type="CAUSAL_LM",
    )
    counter = _Tokens()
    args = GRPOConfig(
        **training_kwargs(config, output_dir, precision, on_cuda),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.kl_beta,
        disable_dropout=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=_reward_function(scorer, tokenizer, config.max_seq_length, counter),
        args=args,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
        peft_config=lora,
    )
    attach_callbacks(trainer, config, reporter, counter)
    max_steps = planned_max_steps(trainer)
    resumed = step_of(resume_from)
    details = {
        "method": "grpo",
        "reward_model": Path(reward_dir).name,
        "precision": precision,
        "device": "cuda" if on_cuda else "cpu",
        "target_modules": list(targets),
        "train_prompts": len(train),
        "eval_prompts": len(evals),
    }
    metrics: dict[str, float] = {}
    if evals:
        metrics.update(
            evaluate_before(
                output_dir,
                resume_from,
                lambda: finite(
                    {
                        "mean_reward_before": _mean_reward(
                            trainer.model, tokenizer, scorer, evals, config
                        )
                    },
                    "before",
                ),
                lambda m: f"mean reward of greedy answers {m['mean_reward_before']:.4f}",
                reporter,
                step=resumed,
                total=max_steps,
            )
        )
    stopped = train_or_stop(
        trainer,
        reporter=reporter,
        collator=counter,
        resume_from=resume_from,
        resumed=resumed,
        max_steps=max_steps,
        metrics=metrics,
        details=details,
        names=POLICY_METRIC_NAMES,
        only_named=True,
    )
    if stopped is not None:
        return stopped
    state = trainer.state
    if evals:
        after = _mean_reward(trainer.model, tokenizer, scorer, evals, config)
        metrics["mean_reward_after"] = finite({"mean_reward": after}, "after")["mean_reward"]
        reporter.log(f"after training: mean reward of greedy answers {after:.4f}")
    reporter.step(
        state.global_step,
        state.max_steps,
        {k: v for k, v in metrics.items() if not k.endswith("_before")},
    )
    save_adapter(trainer.model, output_dir)
    return outcome("succeeded", state.global_step, state.max_steps, metrics, details, resumed)
