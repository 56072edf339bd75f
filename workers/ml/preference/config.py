"""The schemas of the preference jobs: LoraFinetuneConfig's knobs plus what DPO, a reward model
and GRPO add, each with its default, bounds, choices and help (the platform's params models,
forms and API are derived from them, as for SFT).

A subclass redeclares a few inherited fields to change their default or bounds (a field keeps its
place in the form): a smaller warm-up and learning rate suit a few hundred reviewer pairs, and
these jobs train in one process, so `num_gpus` is bounded to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.ml.finetune.config import BIG, ConfigError, LoraFinetuneConfig

__all__ = ["DPO_LOSSES", "DpoConfig", "PolicyConfig", "RewardConfig"]

# trl's DPO losses that need no extra knob (robust uses label_smoothing).
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust")


def _f(default: Any, help: str, *, title: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "title": title, **extra})


_ONE_DEVICE = _f(
    1,
    "Preference jobs train in one process on one device.",
    title="GPUs",
    ge=1,
    le=1,
)
_EVAL_PAIRS = _f(
    0.1,
    "Share of the pairs held out for the before/after evaluation when the dataset version has "
    "no validation split; 0 turns evaluation off.",
    title="Eval share",
    ge=0.0,
    le=0.5,
)
# SFT knobs these runs do not have: packing (pairs are scored as whole sequences) and the eval
# curve (they evaluate before and after); hidden from forms and params, defaults kept.
_NO_PACKING = _f(False, "Not used by preference training.", title="Sequence packing", hidden=True)
_NO_EVAL_CURVE = _f(
    0, "Not used by preference training.", title="Evaluate every N steps", hidden=True
)
# trl turns every dropout off in these trainers (disable_dropout=True: the policy and its
# reference must score the same text the same way), so a LoRA dropout knob would do nothing.
_NO_DROPOUT = _f(0.0, "Not used: trl turns dropout off.", title="LoRA dropout", hidden=True)
_WARMUP = _f(
    10, "Optimizer steps of linear learning-rate warm-up.", title="Warm-up steps", ge=0, le=BIG
)


@dataclass(frozen=True)
class DpoConfig(LoraFinetuneConfig):
    """A LoRA DPO run (trl DPOTrainer): the SFT knobs plus beta, the loss and the prompt length."""

    packing: bool = _NO_PACKING
    lora_dropout: float = _NO_DROPOUT
    eval_steps: int = _NO_EVAL_CURVE

    warmup_steps: int = _WARMUP
    learning_rate: float = _f(
        5e-5, "Peak learning rate (AdamW).", title="Learning rate", gt=0.0, le=1.0
    )
    eval_fraction: float = _EVAL_PAIRS
    num_gpus: int = _ONE_DEVICE
    beta: float = _f(
        0.1,
        "How far the model may move from the reference: higher keeps it closer. For the ipo "
        "loss this is its regularization strength.",
        title="Beta",
        gt=0.0,
        le=10.0,
    )
    loss_type: str = _f(
        "sigmoid",
        "sigmoid: the DPO loss; ipo: identity preference optimisation; hinge: the SLiC hinge "
        "loss; robust: DPO that expects some labels to be wrong (set label smoothing).",
        title="DPO loss",
        choices=DPO_LOSSES,
    )
    label_smoothing: float = _f(
        0.0,
        "For the robust loss: the share of pairs whose preference may be wrong.",
        title="Label smoothing",
        ge=0.0,
        le=0.49,
    )
    max_prompt_length: int = _f(
        256,
        "Prompts are cut to their last N tokens, so the answers keep room within the max "
        "sequence length.",
        title="Max prompt length",
        ge=8,
        le=65_536,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_prompt_length >= self.max_seq_length:
            raise ConfigError(
                "max_prompt_length",
                f"max_prompt_length ({self.max_prompt_length}) must be below max_seq_length "
                f"({self.max_seq_length}): the answers need room after the prompt",
            )


@dataclass(frozen=True)
class RewardConfig(LoraFinetuneConfig):
    """A LoRA reward model (trl RewardTrainer): one score per text, chosen above rejected."""

    packing: bool = _NO_PACKING
    lora_dropout: float = _NO_DROPOUT
    eval_steps: int = _NO_EVAL_CURVE

    warmup_steps: int = _WARMUP
    learning_rate: float = _f(
        1e-4, "Peak learning rate (AdamW).", title="Learning rate", gt=0.0, le=1.0
    )
    eval_fraction: float = _EVAL_PAIRS
    num_gpus: int = _ONE_DEVICE
    center_rewards_coefficient: float = _f(
        0.0,
        "Pulls the scores towards 0 (adds this x the mean squared score to the loss), so scores "
        "of different runs are comparable; 0 turns it off.",
        title="Centre rewards",
        ge=0.0,
        le=1.0,
    )


@dataclass(frozen=True)
class PolicyConfig(LoraFinetuneConfig):
    """Online policy optimisation with a reward model (trl GRPOTrainer): the model writes several
    answers per prompt, the reward model scores them, and the better ones are reinforced."""

    packing: bool = _NO_PACKING
    lora_dropout: float = _NO_DROPOUT
    eval_steps: int = _NO_EVAL_CURVE

    warmup_steps: int = _f(
        0, "Optimizer steps of linear learning-rate warm-up.", title="Warm-up steps", ge=0, le=BIG
    )
    learning_rate: float = _f(
        1e-5, "Peak learning rate (AdamW).", title="Learning rate", gt=0.0, le=1.0
    )
    eval_fraction: float = _f(
        0.1,
        "Share of the prompts held out for the mean reward before and after training; 0 turns "
        "evaluation off.",
        title="Eval share",
        ge=0.0,
        le=0.5,
    )
    num_gpus: int = _ONE_DEVICE
    num_generations: int = _f(
        4,
        "Answers written per prompt; their scores are compared with each other (GRPO).",
        title="Answers per prompt",
        ge=2,
        le=64,
    )
    max_completion_length: int = _f(
        64, "Tokens written per answer at most.", title="Max answer length", ge=1, le=8192
    )
    temperature: float = _f(
        1.0, "Sampling temperature of the answers.", title="Temperature", gt=0.0, le=5.0
    )
    kl_beta: float = _f(
        0.04,
        "Weight of the KL penalty that keeps the model near where it started; 0 turns it off.",
        title="KL weight",
        ge=0.0,
        le=10.0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ConfigError(
                "num_generations",
                f"the batch (batch size x accumulation = {batch}) must be a multiple of "
                f"num_generations ({self.num_generations}): each prompt's answers train together",
            )
