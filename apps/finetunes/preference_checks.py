"""The database checks the preference job kinds share (a kind's `check`): the dataset version is
the project's, approved for training and of a schema the method trains on; the base model is a
ready text model; an adapter named in the params is the project's, of the right kind, on that
base model."""

from __future__ import annotations

from apps.datasets.models import DatasetVersion
from apps.datasets.services import DatasetNotApproved, ensure_trainable
from apps.models.models import Adapter, AdapterKind
from apps.models.models import BaseModel as Base

# Where a GRPO job reads its prompts, by dataset schema.
PROMPT_FIELDS = {"preference": "prompt", "qa": "question", "instruction": "instruction"}


def check_version(project, version_id: int, schemas: tuple[str, ...], what: str) -> dict:
    """{dataset_version_id: message} when the version cannot train `what` here."""
    version = (
        DatasetVersion.objects.select_related("dataset")
        .filter(pk=version_id, dataset__project=project)
        .first()
    )
    if version is None:
        return {"dataset_version_id": "No such dataset version in this project"}
    try:
        ensure_trainable(version)
    except DatasetNotApproved as exc:
        return {"dataset_version_id": str(exc)}
    if version.dataset.schema not in schemas:
        return {
            "dataset_version_id": f"{what} trains on {' or '.join(schemas)} data, not "
            f"{version.dataset.schema}"
        }
    return {}


def check_base(project, base_model_id: int) -> dict:
    base = (
        Base.objects.filter(pk=base_model_id, kind="text", enabled=True)
        .usable_by(project.pk)
        .first()
    )
    if base is None:
        return {"base_model_id": "No such text model"}
    if base.status == "error":
        return {"base_model_id": f"{base.name} failed to prepare: {base.error[:300]}"}
    return {}


def check_adapter(
    project, adapter_id: int | None, *, field: str, kinds: tuple[str, ...], base_model_id: int
) -> dict:
    """{field: message} unless the adapter is the project's, of one of `kinds`, on the base."""
    if adapter_id is None:
        return {}
    adapter = Adapter.objects.filter(pk=adapter_id, project=project).first()
    if adapter is None:
        return {field: "No such adapter in this project"}
    if adapter.kind not in kinds:
        labels = ", ".join(str(AdapterKind(k).label) for k in kinds)
        return {field: f"{adapter.name} is not a {labels} adapter"}
    if adapter.base_model_id != base_model_id:
        return {field: f"{adapter.name} was trained on another base model; choose that base model"}
    return {}
