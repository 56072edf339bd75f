"""Writes of text model craft: a produced model (distilled student, quantized copy) is copied
onto the models volume and registered as a text BaseModel the playground can use."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.jobs.models import Job
from apps.models.models import BaseModel


def crafted_folder(job_id: int) -> Path:
    """Where a craft job's model lives on the shared models volume."""
    return Path(settings.MODELS_DIR) / "craft" / f"job-{job_id}"


def crafted_model_register(
    *, job_id: int, folder: str | Path, name: str, info: dict[str, Any]
) -> BaseModel:
    """Copy `folder` to the models volume and register it as a text model; a retried job that
    already registered its model gets the same row back."""
    from apps.models.services import model_register_folder

    target = crafted_folder(job_id)
    existing = BaseModel.objects.filter(reference=str(target)).first()
    if existing is not None:
        return existing
    job = Job.objects.select_related("project").get(pk=job_id)
    if target.exists():  # a previous attempt died while copying
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    tmp.rename(target)
    unique = name
    if BaseModel.objects.filter(name=unique).exists():
        unique = f"{name} (job {job_id})"
    with transaction.atomic():
        model = model_register_folder(name=unique[:200], path=str(target), actor=job.created_by)
        BaseModel.objects.filter(pk=model.pk).update(
            info={**model.info, "craft": {**info, "job": job_id, "project": job.project_id}},
            project=job.project,  # made from the project's data: offered only there
        )
        audit_record(
            action="craft.model_register",
            actor=job.created_by,
            project=job.project,
            target=model,
            data={
                "job": job_id,
                "kind": job.kind,
                **{k: v for k, v in info.items() if k != "report"},
            },
        )
    model.refresh_from_db()
    return model
