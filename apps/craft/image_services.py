"""Writes of image model craft: a trained LoRA or embedding published under media and registered
as an image asset (usable by its name in every image form, as admin-registered assets are)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.models.models import ImageAsset
from apps.models.services import asset_register
from workers.imaging.assets import file_sha256


class AssetNameTaken(Exception):
    """The name was registered by someone else while the job ran; the message says so."""


def trained_file_path(*, project_id: int, job_id: int, name: str) -> Path:
    """Where a job's trained file lives under media: craft/<project>/<job>/<name>.safetensors."""
    return (
        Path(settings.MEDIA_ROOT) / "craft" / str(project_id) / str(job_id) / f"{name}.safetensors"
    )


def trained_asset_publish(
    *,
    job,
    kind: str,
    name: str,
    source: Path,
    base,
    version,
    config: dict[str, Any],
    metrics: dict[str, float],
) -> ImageAsset:
    """Copy the trained file under media and register it as an image asset of `kind` (lora or
    embedding) named `name`, recording where it came from in its info. A retry of a job that
    already registered its asset (it died before finishing) updates that asset."""
    target = trained_file_path(project_id=job.project_id, job_id=job.pk, name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    origin = {
        "project": job.project_id,
        "job": job.pk,
        "base_model": {"id": base.pk, "name": base.name},
        "dataset_version": {
            "id": version.pk,
            "dataset": version.dataset.name,
            "number": version.number,
            "sha256": version.sha256,
        },
        "config": config,
        "metrics": metrics,
    }
    with transaction.atomic():
        existing = ImageAsset.objects.select_for_update().filter(kind=kind, name=name).first()
        if existing is not None and (existing.info or {}).get("trained", {}).get("job") == job.pk:
            existing.path = str(target)
            existing.sha256 = file_sha256(target)
            existing.info = {**existing.info, "trained": origin}
            existing.save(update_fields=["path", "sha256", "info"])
            return existing
        try:
            asset = asset_register(
                kind=kind,
                name=name,
                path=str(target),
                actor=job.created_by,
                license=version.dataset.license,
                project=job.project,
            )
        except ValidationError as exc:
            messages = "; ".join(m for ms in exc.message_dict.values() for m in ms)
            raise AssetNameTaken(
                f"The trained file is kept at {target}, but it could not be registered as "
                f"{name}: {messages}"
            ) from exc
        asset.info = {**asset.info, "trained": origin}
        asset.save(update_fields=["info"])
    return asset
