"""Preference training: DPO, reward models and GRPO on pairs that reviewers decided.

Each run has the run folder of an SFT run (workers/ml/finetune: checkpoints with COMPLETE
markers, resume after a crash with the same adapter, cancel at the next step with a checkpoint
kept, adapter/ + README.md card + adapter.zip, result.json) and reports live metrics through a
Reporter under readable names (loss, reward_margin, reward_accuracy, ...).

    config.py    DpoConfig, RewardConfig, PolicyConfig: LoraFinetuneConfig + their own knobs
    data.py      {prompt, chosen, rejected} rows checked, prompts rendered as the model is
                 prompted when it generates, cut to a token budget
    dpo.py       train_dpo: trl DPOTrainer + LoRA; from a base model (reference: adapter off)
                 or from an SFT adapter (reference: its frozen copy)
    reward.py    train_reward: sequence classifier + LoRA + score head, trl RewardTrainer
    policy.py    train_policy: trl GRPOTrainer, answers scored by a reward-model adapter
    scoring.py   pair log-likelihoods, preference accuracy, reward-model loading and scores
    loop.py      what they share with SFT's loop: arguments, callbacks, metric names, saving
    folder.py    the run folder: fingerprint, resume-or-start-over, card, zip, result

Nothing here imports Django; torch, transformers and trl are imported only when a function needs
them.
"""

from __future__ import annotations

from workers.ml.preference.config import DPO_LOSSES, DpoConfig, PolicyConfig, RewardConfig
from workers.ml.preference.dpo import train_dpo
from workers.ml.preference.scoring import (
    load_reward_model,
    pair_logps,
    preference_accuracy,
    score_texts,
)

__all__ = [
    "DPO_LOSSES",
    "DpoConfig",
    "PolicyConfig",
    "RewardConfig",
    "load_reward_model",
    "pair_logps",
    "preference_accuracy",
    "score_texts",
    "train_dpo",
]
