"""The platform side of a LoRA fine-tune: data and model in, Adapter row and artifacts out."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.datasets.models import DatasetVersion
from apps.datasets.services import ensure_trainable
from apps.datasets.storage import media_path
from apps.finetunes.schemas import to_config
from apps.jobs.models import Job
from apps.jobs.selectors import job_retry_chain, job_workdir
from apps.models.models import Adapter, BaseModel
from apps.models.services import model_folder
from workers.common.timing import timed


def template_for(version: DatasetVersion, requested: str) -> str:
    from workers.data.canonical import DEFAULT_TEMPLATES

    return requested or version.template or DEFAULT_TEMPLATES.get(version.dataset.schema, "")


def earlier_runs(job_id: int) -> list[tuple[str, Path]]:
    """("job N", run folder) of the jobs this one retries, nearest first: a retry continues from
    the newest complete checkpoint among them (train_lora's continue_from)."""
    from workers.ml.finetune.files import JOB_RUN_DIR

    job = Job.objects.only("pk", "project_id", "kind", "retry_of_id").get(pk=job_id)
    return [(f"job {pk}", job_workdir(pk) / JOB_RUN_DIR) for pk in job_retry_chain(job=job)]


@timed("finetunes.run")
def run_finetune(ctx) -> dict:
    """Train (or resume) the adapter in the job's folder, then publish it under media. A retry
    of a cancelled or failed fine-tune continues from that job's newest complete checkpoint
    when the run is the same (parameters, data, model, template)."""
    from workers.data.canonical import iter_split
    from workers.ml.finetune import train_lora
    from workers.ml.finetune.files import JOB_RUN_DIR
    from workers.ml.reporting import JobCancelled, JobFailed

    p = ctx.params
    version = DatasetVersion.objects.select_related("dataset").get(
        pk=p.dataset_version_id, dataset__project_id=ctx.project_id
    )
    ensure_trainable(version)  # approval could have been withdrawn since the job was queued
    base = BaseModel.objects.get(pk=p.base_model_id)
    folder = model_folder(base, log_to=ctx.reporter.log)
    path = media_path(version.storage_path)
    template = template_for(version, p.template)
    has_split = version.validation_fraction > 0
    train = list(
        iter_split(path, "train", seed=version.split_seed, fraction=version.validation_fraction)
    )
    evals = (
        list(
            iter_split(
                path, "validation", seed=version.split_seed, fraction=version.validation_fraction
            )
        )
        if has_split
        else None
    )
    if not train:
        raise JobFailed(f"{version} has no training rows")
    ctx.reporter.log(
        f"{base.name} on {version} ({len(train)} training rows"
        f"{f', {len(evals)} validation rows' if evals else ''})"
    )
    from apps.finetunes.lineage import build_lineage

    lineage = build_lineage(base=base, versions=[version], job_id=ctx.job_id)
    result = train_lora(
        to_config(p),
        base_model_dir=folder,
        train_rows=train,
        eval_rows=evals,
        template=template,
        output_dir=ctx.workdir / JOB_RUN_DIR,
        reporter=ctx.reporter,
        resume=True,
        continue_from=earlier_runs(ctx.job_id),
        card_info={
            "base_model": base.name,
            "base_model_path": str(folder),
            "dataset": version.dataset.name,
            "dataset_version": version.number,
            "dataset_sha256": version.sha256,
            "dataset_license": version.dataset.license,
            "job": ctx.job_id,
            "lineage": lineage,
        },
    )
    if result.status != "succeeded":
        raise JobCancelled()
    adapter = publish_adapter(
        ctx=ctx,
        base=base,
        version=version,
        template=template,
        params=p,
        result=result,
        lineage=lineage,
    )
    ctx.reporter.artifact(
        str(Path(settings.MEDIA_ROOT) / Path(adapter.storage_path).parent / "adapter.zip"),
        name="adapter.zip",
    )
    return {
        "adapter_id": adapter.pk,
        "metrics": result.metrics,
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step,
    }


@timed("finetunes.publish_adapter")
def publish_adapter(
    *, ctx, base, version, template, params, result, kind="sft", parent=None, lineage=None
) -> Adapter:
    """Copy the run's adapter folder (and zip) under media and record the Adapter row.

    `kind`: sft, dpo or reward (Adapter.kind); `parent`: the adapter the run started from;
    `lineage`: apps.finetunes.lineage.build_lineage(...) (built here when None)."""
    from apps.finetunes.lineage import build_lineage

    if lineage is None:
        lineage = build_lineage(base=base, versions=[version], parent=parent, job_id=ctx.job_id)
    rel = Path("adapters") / str(ctx.project_id) / str(ctx.job_id)
    target = Path(settings.MEDIA_ROOT) / rel
    if target.exists():  # a previous attempt died after copying: start clean
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copytree(result.adapter_dir, target / "adapter")
    if result.adapter_zip:
        shutil.copy2(result.adapter_zip, target / "adapter.zip")
    job = Job.objects.get(pk=ctx.job_id)
    with transaction.atomic():
        adapter, _ = Adapter.objects.update_or_create(
            job=job,
            defaults={
                "project_id": ctx.project_id,
                "name": params.name or f"{base.name} · {version} · job {ctx.job_id}",
                "base_model": base,
                "dataset_version": version,
                "storage_path": str(rel / "adapter"),
                "template": template,
                "config": params.model_dump(),
                "metrics": result.metrics,
                "kind": kind,
                "parent": parent,
                "lineage": lineage,
                "created_by": job.created_by,
            },
        )
        audit_record(
            action="adapter.create",
            actor=job.created_by,
            project=job.project,
            target=adapter,
            data={"job": ctx.job_id, "base_model": base.name, "dataset_sha256": version.sha256},
        )
    return adapter


def run_merge(ctx) -> dict:
    """The adapter merged into its base model, zipped under media; each stage and its sizes in
    the job's log (the merge is a long wait on large models)."""
    from workers.data.limits import human_bytes
    from workers.ml.finetune import merge_and_export

    adapter = Adapter.objects.select_related("base_model", "dataset_version").get(
        pk=ctx.params.adapter_id, project_id=ctx.project_id
    )
    ctx.reporter.log(f"merging adapter {adapter.name} into {adapter.base_model.name}")
    folder = model_folder(adapter.base_model, log_to=ctx.reporter.log)
    adapter_dir = Path(settings.MEDIA_ROOT) / adapter.storage_path
    out_rel = Path(adapter.storage_path).parent / "merged"
    out = Path(settings.MEDIA_ROOT) / out_rel
    ctx.reporter.step(1, 3)
    merge_and_export(
        folder,
        adapter_dir,
        ctx.workdir / "merged",
        card_info={
            "base_model": adapter.base_model.name,
            "adapter": adapter.name,
            "dataset_sha256": adapter.dataset_version.sha256 if adapter.dataset_version else "",
            "lineage": adapter.lineage or None,
        },
        reporter=ctx.reporter,
    )
    ctx.reporter.step(2, 3)
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(ctx.workdir / "merged"), out)
    ctx.reporter.log("zipping the merged model for download")
    archive = Path(shutil.make_archive(str(out), "zip", root_dir=out))
    ctx.reporter.log(f"{archive.name}: {human_bytes(archive.stat().st_size)}")
    Adapter.objects.filter(pk=adapter.pk).update(merged_path=str(out_rel))
    ctx.reporter.artifact(str(archive), name="merged-model.zip")
    ctx.reporter.step(3, 3)
    return {"adapter_id": adapter.pk, "merged_path": str(out_rel)}
