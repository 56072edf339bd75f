"""Job kinds of reward models: `finetune.reward` trains one (LoRA + score head) on an approved
preference version; `outputs.score` scores a gallery's text outputs with one; `finetune.policy`
trains a LoRA adapter with GRPO, rewarded by one.

`outputs.score` runs on the gpu queue: a reward model is a whole language model (the size of the
base model that wrote the outputs), which the gpu workers load and keep warm for generation
anyway; the cpu queue's imports and scans would wait behind loading it there."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from apps.finetunes.schemas import params_model
from apps.jobs.registry import JobKind, register, runner_at
from workers.ml.preference.config import PolicyConfig, RewardConfig

# Outputs one scoring job may rank (a gallery page shows 48; a filtered gallery may hold more).
MAX_SCORED = 500

_BASE: dict[str, Any] = {
    "base_model_id": (int, Field(..., ge=1, title="Base model")),
    "dataset_version_id": (int, Field(..., ge=1, title="Dataset version")),
}
_NAME: dict[str, Any] = {"name": (str, Field("", max_length=200, title="Adapter name"))}
_REWARD_ADAPTER: dict[str, Any] = {
    "reward_adapter_id": (int, Field(..., ge=1, title="Reward model")),
}

RewardParams = params_model("RewardParams", RewardConfig, {**_BASE, **_NAME})
PolicyParams = params_model("PolicyParams", PolicyConfig, {**_BASE, **_REWARD_ADAPTER, **_NAME})


def check_reward(project, params, *, user=None) -> dict[str, str]:
    from apps.finetunes.preference_checks import check_base, check_version

    return {
        **check_version(project, params.dataset_version_id, ("preference",), "A reward model"),
        **check_base(project, params.base_model_id),
    }


def check_policy(project, params, *, user=None) -> dict[str, str]:
    from apps.finetunes.preference_checks import (
        PROMPT_FIELDS,
        check_adapter,
        check_base,
        check_version,
    )

    return {
        **check_version(project, params.dataset_version_id, tuple(PROMPT_FIELDS), "GRPO"),
        **check_base(project, params.base_model_id),
        **check_adapter(
            project,
            params.reward_adapter_id,
            field="reward_adapter_id",
            kinds=("reward",),
            base_model_id=params.base_model_id,
        ),
    }


def budget(project, params, rules) -> dict[str, str]:
    from apps.finetunes.jobkinds import budget as sft_budget

    return sft_budget(project, params, rules)


class ScoreParams(BaseModel):
    model_config = {"extra": "forbid"}

    adapter_id: int = Field(..., ge=1, title="Reward model")
    output_ids: list[int] = Field(
        ..., min_length=1, max_length=MAX_SCORED, title="Text outputs to score"
    )


def check_score(project, params: ScoreParams, *, user=None) -> dict[str, str]:
    """A reward adapter of the project; text outputs this user may see (the outputs' one rule)."""
    from apps.models.models import Adapter, AdapterKind
    from apps.outputs.selectors import visible_outputs_for

    errors: dict[str, str] = {}
    adapter = Adapter.objects.filter(pk=params.adapter_id, project=project).first()
    if adapter is None:
        errors["adapter_id"] = "No such adapter in this project"
    elif adapter.kind != AdapterKind.REWARD:
        errors["adapter_id"] = f"{adapter.name} is not a reward model"
    wanted = set(params.output_ids)
    seen = set(
        visible_outputs_for(project=project, user=user)
        .filter(pk__in=wanted, kind="text")
        .values_list("pk", flat=True)
    )
    if wanted - seen:
        errors["output_ids"] = f"No such text output: {min(wanted - seen)}"
    return errors


register(
    JobKind(
        name="finetune.reward",
        label="Reward model",
        queue="gpu",
        params=RewardParams,
        runner=runner_at("apps.finetunes.preference_runners:run_reward"),
        check=check_reward,
        budget=budget,
        launchable=False,
        description="Trains a reward model (LoRA + score head) on an approved preference version.",
        interruptible=True,
    )
)

register(
    JobKind(
        name="finetune.policy",
        label="GRPO with a reward model",
        queue="gpu",
        params=PolicyParams,
        runner=runner_at("apps.finetunes.preference_runners:run_policy"),
        check=check_policy,
        budget=budget,
        launchable=False,
        description="Trains a LoRA adapter with GRPO: answers scored by a reward model.",
        interruptible=True,
    )
)

register(
    JobKind(
        name="outputs.score",
        label="Score outputs",
        queue="gpu",
        params=ScoreParams,
        runner=runner_at("apps.finetunes.preference_runners:run_score"),
        check=check_score,
        launchable=False,
        description="Scores text outputs with a reward model; the gallery sorts by the score.",
    )
)
