"""The platform side of text craft jobs: rows and model folders in, models and reports out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from apps.craft.text_schemas import to_config
from apps.craft.text_services import crafted_model_register
from apps.datasets.models import DatasetVersion
from apps.datasets.services import ensure_trainable
from apps.datasets.storage import media_path
from apps.models.models import Adapter, BaseModel
from apps.models.services import model_folder
from workers.common.timing import timed


def template_for(version: DatasetVersion, requested: str) -> str:
    from workers.data.canonical import DEFAULT_TEMPLATES

    return requested or version.template or DEFAULT_TEMPLATES.get(version.dataset.schema, "")


def _split(version: DatasetVersion, side: str) -> list[dict[str, Any]]:
    from workers.data.canonical import iter_split

    return list(
        iter_split(
            media_path(version.storage_path),
            side,
            seed=version.split_seed,
            fraction=version.validation_fraction,
        )
    )


def _version(ctx) -> DatasetVersion:
    return DatasetVersion.objects.select_related("dataset").get(
        pk=ctx.params.dataset_version_id, dataset__project_id=ctx.project_id
    )


def _adapter(ctx, adapter_id: int) -> Adapter | None:
    if not adapter_id:
        return None
    return Adapter.objects.select_related("base_model").get(
        pk=adapter_id, project_id=ctx.project_id
    )


def _adapter_dir(adapter: Adapter | None) -> Path | None:
    return Path(settings.MEDIA_ROOT) / adapter.storage_path if adapter is not None else None


@timed("craft.run_distill")
def run_distill(ctx) -> dict:
    """Distill (or resume distilling) in the job's folder, then register the student."""
    from workers.ml.craft.distill import distill
    from workers.ml.reporting import JobCancelled, JobFailed

    p = ctx.params
    version = _version(ctx)
    ensure_trainable(version)  # approval could have been withdrawn since the job was queued
    teacher = BaseModel.objects.get(pk=p.teacher_model_id)
    adapter = _adapter(ctx, p.teacher_adapter_id)
    student = BaseModel.objects.get(pk=p.student_model_id) if p.student == "model" else None
    train = _split(version, "train")
    # None: distill() holds out eval_fraction of the rows (no split, or an empty one).
    evals = (_split(version, "validation") if version.validation_fraction > 0 else None) or None
    if not train:
        raise JobFailed(f"{version} has no training rows")
    teacher_dir = model_folder(teacher, log_to=ctx.reporter.log)
    student_dir = model_folder(student, log_to=ctx.reporter.log) if student else None
    teacher_label = f"{teacher.name} + {adapter.name}" if adapter else teacher.name
    result = distill(
        to_config(p),
        teacher_dir=teacher_dir,
        teacher_adapter_dir=_adapter_dir(adapter),
        student_dir=student_dir,
        train_rows=train,
        eval_rows=evals,
        template=template_for(version, p.template),
        output_dir=ctx.workdir / "run",
        reporter=ctx.reporter,
        resume=True,
        card_info={
            "teacher": teacher_label,
            "student": student.name if student else f"every {p.keep_every}. layer of the teacher",
            "dataset": version.dataset.name,
            "dataset_version": version.number,
            "dataset_sha256": version.sha256,
            "job": ctx.job_id,
        },
    )
    if result.status != "succeeded" or result.student_dir is None:
        raise JobCancelled()
    model = crafted_model_register(
        job_id=ctx.job_id,
        folder=result.student_dir,
        name=p.name or f"{teacher.name} · distilled · job {ctx.job_id}",
        info={
            "kind": "distill",
            "teacher": teacher_label,
            "teacher_model_id": teacher.pk,
            "dataset_version_id": version.pk,
        },
    )
    ctx.reporter.artifact(str(Path(model.path) / "README.md"), name="student model card")
    return {
        "model_id": model.pk,
        "model_name": model.name,
        "teacher": teacher_label,
        "metrics": result.metrics,
        "details": result.details,
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step,
    }


@timed("craft.run_quantize")
def run_quantize(ctx) -> dict:
    """Quantize the model (adapter merged), measure it on the validation split, register it."""
    from workers.ml.craft.quantize import quantize
    from workers.ml.finetune.data import split_eval

    p = ctx.params
    version = _version(ctx)
    base = BaseModel.objects.get(pk=p.base_model_id)
    adapter = _adapter(ctx, p.adapter_id)
    if version.validation_fraction > 0:
        rows = _split(version, "validation")
    else:
        # No validation split: hold out a seeded tenth of the rows (said in the log and report).
        _, rows = split_eval(_split(version, "train"), 0.1, version.split_seed)
        ctx.reporter.log(
            f"{version} has no validation split: measuring on {len(rows)} rows held out by seed",
            "warning",
        )
    label = f"{base.name} + {adapter.name}" if adapter else base.name
    result = quantize(
        to_config(p),
        model_dir=model_folder(base, log_to=ctx.reporter.log),
        adapter_dir=_adapter_dir(adapter),
        eval_rows=rows,
        template=template_for(version, p.template),
        output_dir=ctx.workdir / "run",
        reporter=ctx.reporter,
        source_info={"model": label, "dataset_version": str(version), "job": ctx.job_id},
    )
    model = crafted_model_register(
        job_id=ctx.job_id,
        folder=result.model_dir,
        name=p.name or f"{base.name} · {p.method} · job {ctx.job_id}",
        info={
            "kind": "quantize",
            "method": p.method,
            "source": label,
            "source_model_id": base.pk,
            "report": result.report,
        },
    )
    ctx.reporter.artifact(str(Path(model.path) / "report.json"), name="report.json")
    return {
        "model_id": model.pk,
        "model_name": model.name,
        "source": label,
        "report": result.report,
    }


@timed("craft.run_bias_probe")
def run_bias_probe(ctx) -> dict:
    """Score the base model and each adapter on the shipped counterfactual probes."""
    from workers.ml.craft.bias import run_bias_probe as probe

    p = ctx.params
    base = BaseModel.objects.get(pk=p.base_model_id)
    found = {
        a.pk: a
        for a in Adapter.objects.filter(
            pk__in=p.adapter_ids, project_id=ctx.project_id, base_model=base
        )
    }
    adapters = [found[i] for i in p.adapter_ids if i in found]
    report = probe(
        to_config(p),
        model_dir=model_folder(base, log_to=ctx.reporter.log),
        adapters=[(a.name, str(_adapter_dir(a))) for a in adapters],
        base_name=base.name,
        reporter=ctx.reporter,
    )
    out = report.to_dict()
    for entry, adapter in zip(out["models"][1:], adapters, strict=True):
        entry["adapter_id"] = adapter.pk
    return {"base_model": base.name, "base_model_id": base.pk, **out}
