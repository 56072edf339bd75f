"""Job kind `finetune.dpo`: LoRA DPO on an approved preference version (gpu queue, resumable).

Its params are the worker's DpoConfig fields (apps/finetunes/schemas.py derives them) plus what
only the platform knows: the base model, the version and, optionally, the project's SFT adapter
to start from (its weights are trained further; its frozen copy is the reference)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from apps.finetunes.schemas import params_model
from apps.jobs.registry import JobKind, register, runner_at
from workers.ml.preference.config import DpoConfig

KIND = "finetune.dpo"
# The adapters a DPO run may start from.
PARENT_KINDS = ("sft", "dpo")

PLATFORM_FIELDS: dict[str, Any] = {
    "base_model_id": (int, Field(..., ge=1, title="Base model")),
    "dataset_version_id": (int, Field(..., ge=1, title="Dataset version")),
    "parent_adapter_id": (
        int | None,
        Field(
            None,
            ge=1,
            title="Start from adapter",
            description="An SFT adapter of this project on the same base model; empty: the base",
        ),
    ),
    "name": (str, Field("", max_length=200, title="Adapter name")),
}

DpoParams = params_model("DpoParams", DpoConfig, PLATFORM_FIELDS)


def check(project, params, *, user=None) -> dict[str, str]:
    from apps.finetunes.preference_checks import check_adapter, check_base, check_version

    return {
        **check_version(project, params.dataset_version_id, ("preference",), "DPO"),
        **check_base(project, params.base_model_id),
        **check_adapter(
            project,
            params.parent_adapter_id,
            field="parent_adapter_id",
            kinds=PARENT_KINDS,
            base_model_id=params.base_model_id,
        ),
    }


def budget(project, params, rules) -> dict[str, str]:
    """The SFT budget (optimizer steps x sequence length), counted on the version's pairs."""
    from apps.finetunes.jobkinds import budget as sft_budget

    return sft_budget(project, params, rules)


register(
    JobKind(
        name=KIND,
        label="DPO fine-tune",
        queue="gpu",
        params=DpoParams,
        runner=runner_at("apps.finetunes.preference_runners:run_dpo"),
        check=check,
        budget=budget,
        launchable=False,
        description="Trains a LoRA adapter with DPO on an approved preference dataset version.",
        interruptible=True,
    )
)
