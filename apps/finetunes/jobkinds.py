"""Job kind: LoRA fine-tune of a base model on an approved dataset version (gpu queue)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from apps.finetunes.schemas import LoraParams
from apps.jobs.registry import JobKind, register, runner_at


def check(project, params: LoraParams, *, user=None) -> dict[str, str]:
    from apps.datasets.models import DatasetVersion
    from apps.datasets.services import DatasetNotApproved, ensure_trainable
    from apps.models.models import BaseModel as Base

    errors: dict[str, str] = {}
    version = (
        DatasetVersion.objects.select_related("dataset")
        .filter(pk=params.dataset_version_id, dataset__project=project)
        .first()
    )
    if version is None:
        errors["dataset_version_id"] = "No such dataset version in this project"
    else:
        try:
            ensure_trainable(version)
        except DatasetNotApproved as exc:
            errors["dataset_version_id"] = str(exc)
        if version.dataset.schema not in ("qa", "instruction", "chat"):
            errors["dataset_version_id"] = (
                f"A LoRA SFT trains on qa, instruction or chat data, not {version.dataset.schema}"
            )
    base = (
        Base.objects.filter(pk=params.base_model_id, kind="text", enabled=True)
        .usable_by(project.pk)
        .first()
    )
    if base is None:
        errors["base_model_id"] = "No such text model"
    elif base.status == "error":
        errors["base_model_id"] = f"{base.name} failed to prepare: {base.error[:300]}"
    return errors


def budget(project, params: LoraParams, rules) -> dict[str, str]:
    """Optimizer steps x sequence length against the platform's budget (apps/quotas)."""
    import math

    from apps.datasets.models import DatasetVersion

    steps = params.max_steps
    if steps <= 0:  # epochs: the steps Trainer will plan from the version's training rows
        rows = (
            DatasetVersion.objects.filter(pk=params.dataset_version_id, dataset__project=project)
            .values_list("rows", flat=True)
            .first()
        ) or 0
        per_step = params.per_device_train_batch_size * params.gradient_accumulation_steps
        steps = math.ceil(params.num_train_epochs * max(math.ceil(rows / per_step), 1))
    asked = steps * params.max_seq_length
    if asked > rules.finetune_max_step_tokens:
        return {
            "max_steps": (
                f"{steps:,} steps at {params.max_seq_length} tokens is {asked:,} step-tokens; "
                f"the limit per fine-tune is {rules.finetune_max_step_tokens:,}: fewer steps or "
                "epochs, or a shorter sequence length"
            )
        }
    return {}


register(
    JobKind(
        name="finetune.lora",
        label="LoRA fine-tune",
        queue="gpu",
        params=LoraParams,
        runner=runner_at("apps.finetunes.runners:run_finetune"),
        check=check,
        budget=budget,
        launchable=False,
        description="Fine-tunes a base model with LoRA on an approved dataset version.",
        interruptible=True,
    )
)


class MergeParams(BaseModel):
    model_config = {"extra": "forbid"}

    adapter_id: int = Field(..., ge=1)


def check_merge(project, params: MergeParams, *, user=None) -> dict[str, str]:
    from apps.models.models import Adapter

    if not Adapter.objects.filter(pk=params.adapter_id, project=project).exists():
        return {"adapter_id": "No such adapter in this project"}
    return {}


register(
    JobKind(
        name="adapter.merge",
        label="Merge and export",
        queue="gpu",
        params=MergeParams,
        runner=runner_at("apps.finetunes.runners:run_merge"),
        check=check_merge,
        launchable=False,
        description="Merges a LoRA adapter into its base model and exports a full safetensors folder.",
    )
)

# Preference training registers its kinds from its own modules (DPO; reward model and scoring).
from apps.finetunes import dpo_kinds, reward_kinds  # noqa: E402, F401
