"""Reads of image model craft, scoped by project access."""

from __future__ import annotations

from django.http import Http404

from apps.datasets.models import DatasetVersion
from apps.models.models import ImageAsset
from apps.projects.selectors import ProjectAccess, project_access


def image_caption_versions(*, access: ProjectAccess) -> list[DatasetVersion]:
    """The project's image-caption dataset versions, newest first within each dataset."""
    return list(
        DatasetVersion.objects.filter(
            dataset__project=access.project, dataset__schema="image_caption"
        )
        .select_related("dataset")
        .order_by("dataset__name", "-number")
    )


def trained_assets(*, access: ProjectAccess) -> list[ImageAsset]:
    """The LoRAs and embeddings this project's jobs trained."""
    return list(ImageAsset.objects.filter(project=access.project).order_by("-created_at", "-id"))


def trained_asset_access(
    *, user, project_id: int, asset_id: int, need: str = "view"
) -> tuple[ProjectAccess, ImageAsset]:
    """A LoRA or embedding trained in this project, for one of its members (404 otherwise)."""
    access = project_access(user=user, project_id=project_id, need=need)
    asset = ImageAsset.objects.filter(pk=asset_id, project=access.project).first()
    if asset is None:
        raise Http404("No such trained asset")
    return access, asset
