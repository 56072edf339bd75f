"""Outputs (generated text and images): the outputs' one visibility rule decides what a member
sees (apps/outputs/selectors.py: flagged or rejected outputs only for their author, reviewers
and admins), as in the gallery, and a hidden output is a 404 here as there."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.http import FileResponse, HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router, Schema

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, MAX_ID, PageQuery, page, username
from apps.galleries import selectors as gallery_selectors
from apps.outputs import selectors as output_selectors
from apps.outputs.models import Output
from apps.outputs.services import served_file
from apps.projects import selectors as project_selectors

router = Router(tags=["outputs"])
OUTPUT = "/projects/{int:project_id}/outputs/{int:output_id}/"
PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
# A thumbnail is JPEG or PNG (apps.outputs.services.thumbnail_name).
IMAGE_FILE = {**PNG, "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}
ModerationName = Literal["clean", "flagged", "approved", "rejected"]


class ModelRef(Schema):
    id: int
    name: str


class DecisionRef(Schema):
    decision: Literal["approved", "rejected"]
    reason: str
    decided_by: str
    decided_at: datetime


class OutputOut(Schema):
    id: int
    kind: Literal["text", "image"]
    job: int | None
    text: str
    prompt: str
    negative_prompt: str
    params: dict[str, Any] = Field(..., description="Every parameter needed to make it again")
    seed: int | None
    base_model: ModelRef | None
    adapter: ModelRef | None
    sha256: str
    width: int
    height: int
    tags: list[Any]
    metrics: dict[str, Any]
    moderation: ModerationName
    created_by: str
    created_at: datetime
    image_url: str | None = Field(..., description="The PNG (images only), with this API's auth")
    thumb_url: str | None
    page_url: str = Field(..., description="The output's page in the gallery")


class OutputDetail(OutputOut):
    decision: DecisionRef | None = Field(
        ..., description="The reviewer's decision, once a flagged output was decided"
    )
    flag_categories: list[str] = Field(..., description="What its flags found")
    collections: list[int] = Field(..., description="The boards it is on")


class OutputPage(Schema):
    data: list[OutputOut]
    has_more: bool


class OutputList(PageQuery):
    kind: Literal["text", "image"] | None = None
    job: int | None = Field(None, ge=1, le=MAX_ID, description="Only the outputs of this job")
    moderation: ModerationName | None = None


def output_json(o: Output) -> dict:
    ids = {"project_id": o.project_id, "output_id": o.pk}
    file = reverse("api:output_file", kwargs=ids)
    return {
        "id": o.pk,
        "kind": o.kind,
        "job": o.job_id,
        "text": o.text,
        "prompt": o.prompt,
        "negative_prompt": o.negative_prompt,
        "params": o.params if isinstance(o.params, dict) else {},
        "seed": o.seed,
        "base_model": {"id": o.base_model.pk, "name": o.base_model.name} if o.base_model else None,
        "adapter": {"id": o.adapter.pk, "name": o.adapter.name} if o.adapter else None,
        "sha256": o.sha256,
        "width": o.width,
        "height": o.height,
        "tags": o.tags if isinstance(o.tags, list) else [],
        "metrics": o.metrics if isinstance(o.metrics, dict) else {},
        "moderation": o.moderation,
        "created_by": username(o.created_by),
        "created_at": o.created_at,
        "image_url": file if o.file_path else None,
        "thumb_url": file + "?which=thumb" if o.thumb_path else None,
        "page_url": reverse("galleries:output", kwargs=ids),
    }


@router.get(
    "/projects/{int:project_id}/outputs/",
    url_name="outputs",
    response={200: OutputPage, **ERRORS},
)
def list_outputs(request: HttpRequest, project_id: int, q: Query[OutputList]):
    """The outputs this caller may see, newest first, by kind, job or moderation state."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    qs = output_selectors.visible_outputs(access=access, user=request.user).select_related(
        "base_model", "adapter", "created_by"
    )
    if q.kind:
        qs = qs.filter(kind=q.kind)
    if q.job is not None:
        qs = qs.filter(job_id=q.job)
    if q.moderation:
        qs = qs.filter(moderation=q.moderation)
    rows, more = page(qs, q)
    return {"data": [output_json(o) for o in rows], "has_more": more}


@router.get(OUTPUT, url_name="output", response={200: OutputDetail, **ERRORS})
def get_output(request: HttpRequest, project_id: int, output_id: int):
    """One output, with its review decision (or its flags' categories while it waits)."""
    _, output = gallery_selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id
    )
    review = gallery_selectors.output_review_context(output=output)
    decision = review["decision"]
    return {
        **output_json(output),
        "decision": (
            {
                "decision": decision.decision,
                "reason": decision.reason,
                "decided_by": username(decision.decided_by),
                "decided_at": decision.decided_at,
            }
            if decision is not None
            else None
        ),
        "flag_categories": review["flag_categories"],
        "collections": sorted(output.collections.values_list("pk", flat=True)),
    }


class FileQuery(Schema):
    which: Literal["image", "thumb", "c2pa"] = Field(
        "image",
        description="image: the PNG; thumb: its thumbnail (JPEG, or PNG for images with "
        "alpha and thumbnails made before 2026-12); c2pa: the copy with signed "
        "content credentials, once its provenance record is final",
    )
    download: bool = Field(False, description="As an attachment (Content-Disposition)")


@router.get(
    OUTPUT + "file/",
    url_name="output_file",
    response={200: None, **ERRORS},
    openapi_extra={
        "responses": {
            200: {"description": "The image (a thumbnail may be JPEG)", "content": IMAGE_FILE}
        }
    },
)
def output_file(request: HttpRequest, project_id: int, output_id: int, q: Query[FileQuery]):
    """An image output's PNG (as the gallery serves it)."""
    _, output = gallery_selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id
    )
    record = getattr(output, "provenance", None)  # reverse one-to-one: None when unrecorded
    rel = {
        "image": output.file_path,
        "thumb": output.thumb_path,
        "c2pa": record.credential_path if record is not None else "",
    }[q.which]
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / rel).resolve() if rel else root
    if not rel or root not in path.parents or not path.is_file():
        raise ApiError(404, f"This output has no {q.which} file", param="which")
    content_type, suffix = served_file(path, q.which)
    response = FileResponse(
        open(path, "rb"),
        content_type=content_type,
        as_attachment=q.download,
        filename=f"atelier-{output.pk}-{output.sha256[:10]}{suffix}",
    )
    response["Cache-Control"] = "private, max-age=86400"  # content-addressed: never changes
    return response
