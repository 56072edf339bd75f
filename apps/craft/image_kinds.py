"""Job kinds of image model craft: image LoRA and textual-inversion training (gpu queue).

Both train on an approved image-caption dataset version of 5-50 images, on an image base model
of the Stable Diffusion 1.x/2.x family, and register what they made as an image asset (a LoRA
used with ``<lora:name:weight>``, an embedding used by writing its name).
"""

from __future__ import annotations

from apps.craft.image_schemas import ImageLoraParams, TextualInversionParams, asset_name
from apps.jobs.registry import JobKind, register, runner_at

MIN_IMAGES = 5
MAX_IMAGES = 50
NAME_FIELD = {"lora": "name", "embedding": "token"}


def training_rows(version) -> int:
    """The images a run trains on: the version's training split (all rows without one)."""
    if version.validation_fraction > 0 and version.split_counts:
        return int(version.split_counts.get("train", version.rows))
    return int(version.rows)


def _version_errors(project, version_id: int) -> dict[str, str]:
    from apps.datasets.models import DatasetVersion
    from apps.datasets.services import DatasetNotApproved, ensure_trainable

    version = (
        DatasetVersion.objects.select_related("dataset")
        .filter(pk=version_id, dataset__project=project)
        .first()
    )
    if version is None:
        return {"dataset_version_id": "No such dataset version in this project"}
    if version.dataset.schema != "image_caption":
        return {
            "dataset_version_id": "Image training takes an image dataset with captions "
            f"(a zip of images and captions), not {version.dataset.get_schema_display()}"
        }
    try:
        ensure_trainable(version)
    except DatasetNotApproved as exc:
        return {"dataset_version_id": str(exc)}
    count = training_rows(version)
    if not MIN_IMAGES <= count <= MAX_IMAGES:
        return {
            "dataset_version_id": f"{version} has {count} training images; image LoRA and "
            f"textual-inversion training take {MIN_IMAGES} to {MAX_IMAGES}"
        }
    return {}


def _base_errors(project, base_model_id: int) -> dict[str, str]:
    from apps.models.models import BaseModel

    base = (
        BaseModel.objects.filter(pk=base_model_id, kind="image", enabled=True)
        .usable_by(project.pk)
        .first()
    )
    if base is None:
        return {"base_model_id": "No such image model"}
    if base.status == "error":
        return {"base_model_id": f"{base.name} failed to prepare: {base.error[:300]}"}
    if (base.info or {}).get("family") == "sdxl":
        return {
            "base_model_id": f"{base.name} is an SDXL model; image LoRA and textual-inversion "
            "training take Stable Diffusion 1.x/2.x models"
        }
    return {}


def _name_errors(
    kind: str, asset_kind: str, name: str, *, job_id: int | None = None
) -> dict[str, str]:
    """The name must be free: no asset of this kind has it, and no other queued or running job
    of this kind will register it."""
    from apps.jobs.models import Job
    from apps.jobs.states import TERMINAL
    from apps.models.models import ImageAsset

    field = NAME_FIELD[asset_kind]
    if ImageAsset.objects.filter(kind=asset_kind, name=name).exists():
        return {field: f"An image asset of this kind named {name} exists; choose another name"}
    pending = Job.objects.filter(kind=kind, **{f"params__{field}": name}).exclude(
        state__in=TERMINAL
    )
    if job_id is not None:
        pending = pending.exclude(pk=job_id)
    if pending.exists():
        return {field: f"Another training job is making an asset named {name}"}
    return {}


def check_lora(project, params, *, user=None) -> dict[str, str]:
    errors = _base_errors(project, params.base_model_id)
    errors.update(_version_errors(project, params.dataset_version_id))
    errors.update(_name_errors("craft.image_lora", "lora", asset_name(params)))
    return errors


def check_embedding(project, params, *, user=None) -> dict[str, str]:
    errors = _base_errors(project, params.base_model_id)
    errors.update(_version_errors(project, params.dataset_version_id))
    errors.update(_name_errors("craft.textual_inversion", "embedding", asset_name(params)))
    return errors


register(
    JobKind(
        name="craft.image_lora",
        label="Image LoRA training",
        queue="gpu",
        params=ImageLoraParams,
        runner=runner_at("apps.craft.image_runners:run_image_lora"),
        check=check_lora,
        launchable=False,
        interruptible=True,
        prompt_fields=("sample_prompts",),
        description="Trains a LoRA of an image model on 5-50 captioned images and registers it "
        "for <lora:name:weight>.",
    )
)

register(
    JobKind(
        name="craft.textual_inversion",
        label="Textual-inversion training",
        queue="gpu",
        params=TextualInversionParams,
        runner=runner_at("apps.craft.image_runners:run_textual_inversion"),
        check=check_embedding,
        launchable=False,
        interruptible=True,
        prompt_fields=("sample_prompts",),
        description="Learns an embedding (a new word) of an image model from 5-50 captioned "
        "images; prompts use it by its name.",
    )
)
