"""/v1/models: the base models of the platform (text and image) and the project's fine-tuned
adapters, named as naming.py says (``tiny-llama``, ``ft:tiny-llama:my-bot:12``)."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from ninja import Router, Schema

from apps.api.openai_compat import naming
from apps.api.openai_compat.common import token_project
from apps.models.models import Adapter, BaseModel
from apps.projects.selectors import ProjectAccess

router = Router(tags=["models"])

OWNER = "atelier"


class Model(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # Atelier's own: text or image, the base model an ft: model adapts, and whether the base's
    # weights are prepared (built-ins are made on first use; an error says why in the pages).
    kind: str
    parent: str | None = None
    ready: bool


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[Model]


def model_json(
    access: ProjectAccess, model_id: str, base: BaseModel, adapter: Adapter | None, ids=None
) -> dict:
    created = adapter.created_at if adapter is not None else base.created_at
    return {
        "id": model_id,
        "object": "model",
        "created": int(created.timestamp()),
        "owned_by": access.project.name if adapter is not None else OWNER,
        "kind": base.kind,
        "parent": naming.base_model_id(base, ids) if adapter is not None else None,
        "ready": base.is_ready,
    }


@router.get("/models", url_name="models", response=ModelList)
def list_models(request: HttpRequest):
    """Enabled base models, then the project's fine-tuned models, newest first."""
    access = token_project(request)
    ids = naming.base_ids()
    return {
        "object": "list",
        "data": [
            model_json(access, model_id, base, adapter, ids)
            for model_id, base, adapter in naming.project_models(access)
        ],
    }


@router.get("/models/{model}", url_name="model", response=Model)
def retrieve_model(request: HttpRequest, model: str):
    access = token_project(request)
    base, adapter = naming.resolve_model(access, model)
    ids = naming.base_ids()
    model_id = naming.adapter_model_id(adapter, ids) if adapter else naming.base_model_id(base, ids)
    return model_json(access, model_id, base, adapter, ids)
