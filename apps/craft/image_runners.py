"""The platform side of image LoRA and textual-inversion training: the version's images and the
base model's folder in, a registered image asset out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from apps.craft.image_kinds import MAX_IMAGES, MIN_IMAGES
from apps.craft.image_schemas import asset_name, to_config
from apps.craft.image_services import AssetNameTaken, trained_asset_publish
from apps.datasets.models import DatasetVersion
from apps.datasets.services import DatasetNotApproved, ensure_trainable
from apps.datasets.storage import media_path
from apps.jobs.models import Job
from apps.models.models import AssetKind, BaseModel
from apps.models.services import model_folder
from workers.common.timing import timed


def training_examples(version: DatasetVersion) -> list[Any]:
    """The version's training images (its train split) with their captions."""
    from workers.data.canonical import IMAGES_DIR, iter_split
    from workers.imaging.training import Example

    path = media_path(version.storage_path)
    images = path.parent / IMAGES_DIR
    rows = iter_split(path, "train", seed=version.split_seed, fraction=version.validation_fraction)
    examples = []
    for row in rows:
        image = (images / str(row["image"])).resolve()
        if image.parent != images.resolve():  # a canonical row names a file in images/ only
            raise ValueError(f"{version}: image {row['image']!r} is outside its images folder")
        examples.append(Example(image=image, caption=str(row.get("caption") or "")))
    return examples


def _train(ctx, train: Callable[..., Any], asset_kind: str) -> dict:
    from workers.imaging.training import TrainingRefused
    from workers.ml.models import ModelRefused
    from workers.ml.reporting import JobCancelled, JobFailed

    p = ctx.params
    version = DatasetVersion.objects.select_related("dataset").get(
        pk=p.dataset_version_id, dataset__project_id=ctx.project_id
    )
    try:
        ensure_trainable(version)  # approval could have been withdrawn since the job was queued
    except DatasetNotApproved as exc:
        raise JobFailed(str(exc)) from None
    examples = training_examples(version)
    if not MIN_IMAGES <= len(examples) <= MAX_IMAGES:
        raise JobFailed(
            f"{version} has {len(examples)} training images; {MIN_IMAGES} to {MAX_IMAGES} are needed"
        )
    base = BaseModel.objects.get(pk=p.base_model_id)
    folder = model_folder(
        base,
        log_to=ctx.reporter.log,
        progress=ctx.reporter.step,
        should_stop=ctx.reporter.should_stop,
    )
    config = to_config(p)
    ctx.reporter.log(f"{base.name} on {version} ({len(examples)} images)")
    try:
        result = train(
            config,
            base_model_dir=folder,
            examples=examples,
            output_dir=ctx.workdir / "run",
            reporter=ctx.reporter,
            checkpoints=ctx.checkpoints,
            single_file_config=base.config_path or None,
        )
    except (TrainingRefused, ModelRefused) as exc:
        raise JobFailed(str(exc)) from None
    if result.status != "succeeded":
        raise JobCancelled()
    job = Job.objects.select_related("created_by").get(pk=ctx.job_id)
    name = asset_name(p)
    try:
        asset = trained_asset_publish(
            job=job,
            kind=asset_kind,
            name=name,
            source=Path(result.artifact),
            base=base,
            version=version,
            config=config.to_dict(),
            metrics=result.metrics,
        )
    except AssetNameTaken as exc:
        raise JobFailed(str(exc)) from None
    ctx.reporter.artifact(asset.path, name=Path(asset.path).name)
    usage = f"<lora:{name}:1>" if asset_kind == AssetKind.LORA else name
    ctx.reporter.log(f"registered as {name}: write {usage} in an image prompt to use it")
    return {
        "asset_id": asset.pk,
        "asset_name": name,
        "usage": usage,
        "sha256": asset.sha256,
        "metrics": result.metrics,
        "global_step": result.global_step,
        "resumed_from_step": result.resumed_from_step,
    }


@timed("craft.image_lora")
def run_image_lora(ctx) -> dict:
    """Train (or resume) an image LoRA, then register it for ``<lora:name:weight>``."""
    from workers.imaging.training import train_image_lora

    return _train(ctx, train_image_lora, AssetKind.LORA)


@timed("craft.textual_inversion")
def run_textual_inversion(ctx) -> dict:
    """Train (or resume) a textual-inversion embedding, then register it under its name."""
    from workers.imaging.training import train_textual_inversion

    return _train(ctx, train_textual_inversion, AssetKind.EMBEDDING)
