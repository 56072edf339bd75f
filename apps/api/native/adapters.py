"""The project's LoRA adapters (made by its fine-tunes) and their zip files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.http import FileResponse, HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router, Schema

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, PageQuery, page, username
from apps.models import selectors as model_selectors
from apps.models.models import Adapter
from apps.projects import selectors as project_selectors

router = Router(tags=["adapters"])
ADAPTER = "/projects/{int:project_id}/adapters/{int:adapter_id}/"
ZIP = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


class NamedRef(Schema):
    id: int
    name: str


class VersionRef(Schema):
    id: int
    dataset: int
    dataset_name: str
    number: int
    sha256: str


class AdapterOut(Schema):
    id: int
    name: str
    base_model: NamedRef
    job: int | None = Field(..., description="The fine-tune that made it")
    dataset_version: VersionRef | None
    template: str
    config: dict[str, Any]
    metrics: dict[str, Any] = Field(..., description="eval loss and perplexity before/after, …")
    created_by: str
    created_at: datetime
    download_url: str = Field(..., description="The adapter (PEFT folder) as a zip")
    merged_download_url: str | None = Field(
        ..., description="The merged full model as a zip, once a merge job made one"
    )


class AdapterPage(Schema):
    data: list[AdapterOut]
    has_more: bool


def adapter_json(a: Adapter) -> dict:
    version = a.dataset_version
    download = reverse("api:adapter_download", args=[a.project_id, a.pk])
    return {
        "id": a.pk,
        "name": a.name,
        "base_model": {"id": a.base_model.pk, "name": a.base_model.name},
        "job": a.job_id,
        "dataset_version": (
            {
                "id": version.pk,
                "dataset": version.dataset_id,
                "dataset_name": version.dataset.name,
                "number": version.number,
                "sha256": version.sha256,
            }
            if version is not None
            else None
        ),
        "template": a.template,
        "config": a.config if isinstance(a.config, dict) else {},
        "metrics": a.metrics if isinstance(a.metrics, dict) else {},
        "created_by": username(a.created_by),
        "created_at": a.created_at,
        "download_url": download,
        "merged_download_url": download + "?what=merged" if a.merged_path else None,
    }


@router.get(
    "/projects/{int:project_id}/adapters/",
    url_name="adapters",
    response={200: AdapterPage, **ERRORS},
)
def list_adapters(request: HttpRequest, project_id: int, q: Query[PageQuery]):
    """The project's adapters, newest first."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    # The models page's rows (model_selectors.project_adapters), a page at a time.
    rows, more = page(
        Adapter.objects.filter(project=access.project).select_related(
            "base_model", "dataset_version__dataset", "created_by"
        ),
        q,
    )
    return {"data": [adapter_json(a) for a in rows], "has_more": more}


@router.get(ADAPTER, url_name="adapter", response={200: AdapterOut, **ERRORS})
def get_adapter(request: HttpRequest, project_id: int, adapter_id: int):
    _, adapter = model_selectors.adapter_access(
        user=request.user, project_id=project_id, adapter_id=adapter_id
    )
    return adapter_json(adapter)


class Download(Schema):
    what: Literal["adapter", "merged"] = Field(
        "adapter", description="adapter: the PEFT folder; merged: the merged full model"
    )


@router.get(
    ADAPTER + "download/",
    url_name="adapter_download",
    response={200: None, **ERRORS},
    openapi_extra={"responses": {200: {"description": "The zip file", "content": ZIP}}},
)
def download_adapter(request: HttpRequest, project_id: int, adapter_id: int, q: Query[Download]):
    """The adapter's zip (what the models page's "Adapter zip" button downloads), or the
    merged model's."""
    _, adapter = model_selectors.adapter_access(
        user=request.user, project_id=project_id, adapter_id=adapter_id
    )
    base = Path(adapter.storage_path).parent
    if q.what == "adapter":
        rel, name = str(base / "adapter.zip"), f"adapter-{adapter.pk}.zip"
    elif adapter.merged_path:
        rel, name = adapter.merged_path + ".zip", f"merged-model-{adapter.pk}.zip"
    else:
        raise ApiError(404, "This adapter has no merged model yet", param="what")
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / rel).resolve()
    if root not in path.parents or not path.is_file():
        raise ApiError(404, "This file is not available")
    return FileResponse(
        open(path, "rb"), as_attachment=True, filename=name, content_type="application/zip"
    )
