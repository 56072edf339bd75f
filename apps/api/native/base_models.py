"""Base models: the platform's text and image models enabled for every project's use (as the
models page lists them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, PageQuery, page_list
from apps.models import selectors as model_selectors
from apps.projects import selectors as project_selectors

router = Router(tags=["models"])


class BaseModelOut(Schema):
    id: int
    name: str
    kind: Literal["text", "image"]
    source: str = Field(..., description="builtin, folder, single_file, gguf or hub")
    reference: str = Field(..., description="Built-in key, GGUF file or hub id, by source")
    status: str = Field(..., description="pending (prepared on first use), ready or error")
    error: str
    architecture: str
    model_type: str
    parameters: int = Field(..., description="0 until the model was prepared")
    context_length: int
    license: str
    default_targets: list[str] = Field(..., description="LoRA target modules")
    has_chat_template: bool
    info: dict[str, Any]
    created_at: datetime


class BaseModelPage(Schema):
    data: list[BaseModelOut]
    has_more: bool


class ModelList(PageQuery):
    kind: Literal["text", "image"] | None = None


def model_json(m) -> dict:
    return {
        "id": m.pk,
        "name": m.name,
        "kind": m.kind,
        "source": m.source,
        "reference": m.reference,
        "status": m.status,
        "error": m.error,
        "architecture": m.architecture,
        "model_type": m.model_type,
        "parameters": m.parameters,
        "context_length": m.context_length,
        "license": m.license,
        "default_targets": [str(t) for t in m.default_targets or []],
        "has_chat_template": m.has_chat_template,
        "info": m.info if isinstance(m.info, dict) else {},
        "created_at": m.created_at,
    }


def _enabled(kind: str | None, project_id: int) -> list:
    """The enabled models of `kind` (both kinds when None) the project may use, as the models
    page reads them."""
    found = []
    if kind in (None, "text"):
        found += model_selectors.text_models(project_id)
    if kind in (None, "image"):
        found += model_selectors.image_models(project_id)
    return found


@router.get(
    "/projects/{int:project_id}/models/", url_name="models", response={200: BaseModelPage, **ERRORS}
)
def list_models(request: HttpRequest, project_id: int, q: Query[ModelList]):
    """The base models this project may fine-tune and generate with, newest first."""
    project_selectors.project_access(user=request.user, project_id=project_id)
    rows, more = page_list(_enabled(q.kind, project_id), q)
    return {"data": [model_json(m) for m in rows], "has_more": more}


@router.get(
    "/projects/{int:project_id}/models/{int:model_id}/",
    url_name="model",
    response={200: BaseModelOut, **ERRORS},
)
def get_model(request: HttpRequest, project_id: int, model_id: int):
    project_selectors.project_access(user=request.user, project_id=project_id)
    found = next((m for m in _enabled(None, project_id) if m.pk == model_id), None)
    if found is None:
        raise ApiError(404, "No such model")
    return model_json(found)
