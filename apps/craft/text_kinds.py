"""Job kinds of text model craft: distillation, quantization, bias probe (gpu queue)."""

from __future__ import annotations

from typing import Any

from apps.craft.text_schemas import BiasProbeParams, DistillParams, QuantizeParams
from apps.jobs.registry import JobKind, register, register_page_extra, runner_at

TEXT_KINDS = ("craft.distill", "craft.quantize", "craft.bias_probe")
TEXT_SCHEMAS = ("qa", "instruction", "chat")


def _text_model(project, model_id: int, field: str, errors: dict[str, str]) -> Any:
    from apps.models.models import BaseModel as Base

    model = (
        Base.objects.filter(pk=model_id, kind="text", enabled=True).usable_by(project.pk).first()
    )
    if model is None:
        errors[field] = "No such text model"
    elif model.status == "error":
        errors[field] = f"{model.name} failed to prepare: {model.error[:300]}"
    return model


def _adapter(project, adapter_id: int, base, field: str, errors: dict[str, str]) -> Any:
    from apps.models.models import Adapter

    if not adapter_id:
        return None
    adapter = Adapter.objects.filter(pk=adapter_id, project=project).first()
    if adapter is None:
        errors[field] = "No such adapter in this project"
    elif adapter.kind == "reward":
        errors[field] = "A reward model's adapter scores texts; it cannot be merged for generation"
    elif base is not None and adapter.base_model_id != base.pk:
        errors[field] = f"{adapter.name} was trained on {adapter.base_model.name}, not {base.name}"
    return adapter


def _version(project, version_id: int, errors: dict[str, str], *, trainable: bool) -> Any:
    from apps.datasets.models import DatasetVersion
    from apps.datasets.services import DatasetNotApproved, ensure_trainable

    version = (
        DatasetVersion.objects.select_related("dataset")
        .filter(pk=version_id, dataset__project=project)
        .first()
    )
    if version is None:
        errors["dataset_version_id"] = "No such dataset version in this project"
        return None
    if version.dataset.schema not in TEXT_SCHEMAS:
        errors["dataset_version_id"] = (
            f"Text craft reads qa, instruction or chat data, not {version.dataset.schema}"
        )
    elif trainable:
        try:
            ensure_trainable(version)
        except DatasetNotApproved as exc:
            errors["dataset_version_id"] = str(exc)
    return version


def check_distill(project, params, *, user=None) -> dict[str, str]:
    errors: dict[str, str] = {}
    teacher = _text_model(project, params.teacher_model_id, "teacher_model_id", errors)
    _adapter(project, params.teacher_adapter_id, teacher, "teacher_adapter_id", errors)
    if params.student == "model":
        if not params.student_model_id:
            errors["student_model_id"] = "Choose the student model (or build it from the teacher)"
        elif params.student_model_id == params.teacher_model_id:
            errors["student_model_id"] = "The student must be another, smaller model"
        else:
            _text_model(project, params.student_model_id, "student_model_id", errors)
    _version(project, params.dataset_version_id, errors, trainable=True)
    return errors


def budget_distill(project, params, rules) -> dict[str, str]:
    """Steps x sequence length, as for a fine-tune (apps/quotas)."""
    asked = params.max_steps * params.max_seq_length
    if asked > rules.finetune_max_step_tokens:
        return {
            "max_steps": (
                f"{params.max_steps:,} steps at {params.max_seq_length} tokens is {asked:,} "
                f"step-tokens; the limit per training job is {rules.finetune_max_step_tokens:,}"
            )
        }
    return {}


def check_quantize(project, params, *, user=None) -> dict[str, str]:
    errors: dict[str, str] = {}
    base = _text_model(project, params.base_model_id, "base_model_id", errors)
    _adapter(project, params.adapter_id, base, "adapter_id", errors)
    # Only the validation rows are read, to measure: no training, so no approval gate.
    _version(project, params.dataset_version_id, errors, trainable=False)
    return errors


def check_bias_probe(project, params, *, user=None) -> dict[str, str]:
    errors: dict[str, str] = {}
    base = _text_model(project, params.base_model_id, "base_model_id", errors)
    if len(set(params.adapter_ids)) != len(params.adapter_ids):
        errors["adapter_ids"] = "An adapter is listed twice"
    for adapter_id in params.adapter_ids:
        _adapter(project, adapter_id, base, "adapter_ids", errors)
    from workers.ml.craft.bias import load_probes
    from workers.ml.reporting import JobFailed

    try:
        load_probes(language=params.language, attributes=to_attributes(params.attributes))
    except JobFailed as exc:  # a broken shipped file, or attributes that match nothing
        errors["attributes"] = str(exc)
    return errors


def to_attributes(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


register(
    JobKind(
        name="craft.distill",
        label="Distillation",
        queue="gpu",
        params=DistillParams,
        runner=runner_at("apps.craft.text_runners:run_distill"),
        check=check_distill,
        budget=budget_distill,
        launchable=False,
        description="Trains a smaller student on a teacher's soft labels over a dataset version.",
        interruptible=True,
    )
)
register(
    JobKind(
        name="craft.quantize",
        label="Quantization",
        queue="gpu",
        params=QuantizeParams,
        runner=runner_at("apps.craft.text_runners:run_quantize"),
        check=check_quantize,
        launchable=False,
        description="Quantizes a text model (int8, or 8-/4-bit on a GPU) and measures the cost.",
    )
)
register(
    JobKind(
        name="craft.bias_probe",
        label="Bias probe",
        queue="gpu",
        params=BiasProbeParams,
        runner=runner_at("apps.craft.text_runners:run_bias_probe"),
        check=check_bias_probe,
        launchable=False,
        description="Compares a base model and its adapters on counterfactual prompts.",
    )
)


@register_page_extra
def craft_report_link(*, access, user, job) -> dict[str, Any]:
    """The job page links a text craft job to its report (templates/jobs/job_detail.html)."""
    if job.kind not in TEXT_KINDS:
        return {}
    from django.urls import reverse

    return {"craft_report_url": reverse("craft:text_report", args=[job.project_id, job.pk])}
