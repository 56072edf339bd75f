from __future__ import annotations

from django.http import Http404

from apps.models.models import Adapter, BaseModel, ImageAsset
from apps.projects.selectors import ProjectAccess, project_access


def text_models() -> list[BaseModel]:
    return list(BaseModel.objects.filter(kind="text", enabled=True))


def image_models() -> list[BaseModel]:
    return list(BaseModel.objects.filter(kind="image", enabled=True))


def image_assets(kind: str | None = None) -> list[ImageAsset]:
    assets = ImageAsset.objects.filter(enabled=True)
    return list(assets.filter(kind=kind) if kind else assets)


def project_adapters(*, access: ProjectAccess) -> list[Adapter]:
    return list(
        Adapter.objects.filter(project=access.project).select_related(
            "base_model", "dataset_version__dataset", "job", "created_by"
        )
    )


def adapter_access(
    *, user, project_id: int, adapter_id: int, need: str = "view"
) -> tuple[ProjectAccess, Adapter]:
    access = project_access(user=user, project_id=project_id, need=need)
    adapter = (
        Adapter.objects.select_related("base_model")
        .filter(pk=adapter_id, project=access.project)
        .first()
    )
    if adapter is None:
        raise Http404("No such adapter")
    return access, adapter
