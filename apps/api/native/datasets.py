"""Datasets and their versions; an upload is a dataset.import job (202 + Location)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Field, File, Form, Query, Router, Schema
from ninja.files import UploadedFile
from pydantic import ValidationError as PydanticValidationError

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, JobOut, PageQuery, one_job_json, page
from apps.jobs import services as job_services
from apps.projects import selectors as project_selectors

router = Router(tags=["datasets"])
DATASET = "/projects/{int:project_id}/datasets/{int:dataset_id}/"


class VersionOut(Schema):
    id: int
    dataset: int
    number: int
    sha256: str = Field(..., description="SHA-256 of the version's canonical JSONL content")
    parent: int | None = Field(..., description="The number of the version this one came from")
    operation: str = Field(..., description="import, redact, dedup or filter")
    rows: int
    size_bytes: int
    source_format: str
    source_encoding: str
    mapping: Any
    split_counts: Any
    stats: Any
    pii_report: Any
    approval: str = Field(..., description="not_required, pending, approved or rejected")
    approval_comment: str
    created_at: datetime


class VersionPage(Schema):
    data: list[VersionOut]
    has_more: bool


class DatasetOut(Schema):
    id: int
    name: str
    description: str
    schema_: str = Field(..., alias="schema", description="qa, instruction, chat, preference, …")
    license: str
    source: str
    created_at: datetime
    latest_version: VersionOut | None


class DatasetPage(Schema):
    data: list[DatasetOut]
    has_more: bool


def version_json(v) -> dict:
    return {
        "id": v.pk,
        "dataset": v.dataset_id,
        "number": v.number,
        "sha256": v.sha256,
        "parent": v.parent.number if v.parent_id else None,
        "operation": v.operation,
        "rows": v.rows,
        "size_bytes": v.size_bytes,
        "source_format": v.source_format,
        "source_encoding": v.source_encoding,
        "mapping": v.mapping,
        "split_counts": v.split_counts,
        "stats": v.stats,
        "pii_report": v.pii_report,
        "approval": v.approval,
        "approval_comment": v.approval_comment,
        "created_at": v.created_at.isoformat(),
    }


_FETCH = object()


def dataset_json(d, latest: Any = _FETCH) -> dict:
    """A dataset with its newest version (`latest` when fetched with the others' already)."""
    if latest is _FETCH:
        latest = d.latest_version
    return {
        "id": d.pk,
        "name": d.name,
        "description": d.description,
        "schema": d.schema,
        "license": d.license,
        "source": d.source,
        "created_at": d.created_at.isoformat(),
        "latest_version": version_json(latest) if latest else None,
    }


class DatasetUpload(Schema):
    name: str = Field("", description="A new dataset's name (not with `dataset`)")
    description: str = ""
    license: str = Field("", description="SPDX id, e.g. CC-BY-4.0")
    source: str = Field("", description="Where the data comes from")
    dataset: int | None = Field(None, description="Id of an existing dataset: a new version")
    mapping: str | None = Field(None, description='JSON: {"schema": ..., "columns": {...}}')
    fmt: str | None = Field(None, description="csv, jsonl, json, … (sniffed when empty)")
    encoding: str | None = None
    template: str = ""
    validation_fraction: float = Field(0.0, ge=0, lt=1)
    seed: int = 0


def _submit_params(form: DatasetUpload) -> dict:
    try:
        mapping = json.loads(form.mapping) if form.mapping else None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"mapping is not valid JSON: {exc}", param="mapping") from None
    if mapping is not None and not isinstance(mapping, dict):
        raise ApiError(
            400,
            'mapping must be a JSON object: {"schema": ..., "columns": {...}}',
            param="mapping",
        )
    return {
        "mapping": mapping,
        "fmt": form.fmt or None,
        "encoding": form.encoding or None,
        "template": form.template,
        "validation_fraction": form.validation_fraction,
        "seed": form.seed,
    }


@router.get(
    "/projects/{int:project_id}/datasets/",
    url_name="datasets",
    response={200: DatasetPage, **ERRORS},
    by_alias=True,
)
def list_datasets(request: HttpRequest, project_id: int, q: Query[PageQuery]):
    """The project's datasets, newest first, each with its newest version."""
    from apps.datasets.models import Dataset, DatasetVersion

    access = project_selectors.project_access(user=request.user, project_id=project_id)
    datasets, more = page(Dataset.objects.filter(project=access.project), q)
    latest: dict[int, Any] = {}
    # One query for the page's newest versions (a dataset's versions, newest first).
    for v in DatasetVersion.objects.filter(dataset__in=datasets).order_by("dataset_id", "-number"):
        latest.setdefault(v.dataset_id, v)
    return {
        "data": [dataset_json(d, latest.get(d.pk)) for d in datasets],
        "has_more": more,
    }


@router.get(DATASET, url_name="dataset", response={200: DatasetOut, **ERRORS}, by_alias=True)
def get_dataset(request: HttpRequest, project_id: int, dataset_id: int):
    from apps.datasets import selectors as dataset_selectors

    _, dataset = dataset_selectors.dataset_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id
    )
    return dataset_json(dataset)


@router.get(
    DATASET + "versions/", url_name="dataset_versions", response={200: VersionPage, **ERRORS}
)
def list_versions(request: HttpRequest, project_id: int, dataset_id: int, q: Query[PageQuery]):
    """The dataset's versions, newest first (ids grow with version numbers)."""
    from apps.datasets import selectors as dataset_selectors

    _, dataset = dataset_selectors.dataset_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id
    )
    versions, more = page(dataset.versions.select_related("parent"), q)
    return {"data": [version_json(v) for v in versions], "has_more": more}


@router.post(
    "/projects/{int:project_id}/datasets/", url_name="datasets", response={202: JobOut, **ERRORS}
)
def upload_dataset(
    request: HttpRequest,
    project_id: int,
    file: File[UploadedFile],
    form: Form[DatasetUpload],
):
    """Import a data file as a new dataset (or a new version of `dataset`).

    Every import is a job (kind dataset.import, cpu queue), whatever the file's size: the answer
    is 202 with the job and a Location header to poll. The job's result holds the version
    (version_id, dataset_id, version, rows, created) once it succeeded, or `errors` (each with
    message, row/line, column, path) and `total` when the file was refused; all or nothing
    either way. What can be told at once is a 400 without a job: bad fields or parameters, a
    file that cannot be read at all (with its place)."""
    from apps.datasets import selectors as dataset_selectors
    from apps.datasets import services as dataset_services
    from apps.datasets.models import Dataset
    from apps.datasets.storage import discard_upload

    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="launch_job"
    )
    target = None
    if form.dataset is not None:
        target = Dataset.objects.filter(project=access.project, pk=form.dataset).first()
        if target is None:
            raise ApiError(404, "No such dataset", param="dataset")
    meta = {
        "name": form.name,
        "description": form.description,
        "license": form.license,
        "source": form.source,
        "dataset": target.pk if target else None,
    }
    params = _submit_params(form)
    if target is None:
        try:
            dataset_services.dataset_check_new(
                project=access.project, name=form.name, license=form.license, source=form.source
            )
        except ValidationError as exc:
            fields = exc.message_dict if hasattr(exc, "message_dict") else {"__all__": exc.messages}
            flat = {k: " ".join(v) for k, v in fields.items()}
            param = next(iter(flat), None)
            raise ApiError(
                400,
                "Invalid dataset fields: " + "; ".join(flat.values()),
                param=None if param == "__all__" else param,
                fields=flat,
            ) from None
    staged = dataset_services.upload_stage(
        uploaded_file=file, user_id=request.user.pk, project_id=access.project.pk, meta=meta
    )
    _, unreadable = dataset_selectors.staged_sniff(
        staged, fmt=params["fmt"], encoding=params["encoding"]
    )
    if unreadable is not None:
        discard_upload(staged)
        raise ApiError(
            400,
            "The file cannot be read; nothing was imported",
            code="unreadable_file",
            param="file",
            errors=[unreadable],
        )
    try:
        job = dataset_services.import_submit(
            project=access.project, actor=request.user, staged=staged, request=request, **params
        )
    except job_services.JobParamsError:
        discard_upload(staged)
        raise
    response = JsonResponse(one_job_json(job, access=access, user=request.user), status=202)
    response["Location"] = reverse("api:job", args=[access.project.pk, job.pk])
    return response


@router.get(
    DATASET + "versions/{int:number}/",
    url_name="dataset_version",
    response={200: VersionOut, **ERRORS},
)
def dataset_version(request: HttpRequest, project_id: int, dataset_id: int, number: int):
    from apps.datasets import selectors as dataset_selectors

    _, version = dataset_selectors.version_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id, number=number
    )
    return version_json(version)


class VersionDecisionIn(Schema):
    decision: Literal["approve", "reject"]
    reason: str = Field("", max_length=2000, description="Required (the approval's comment)")


@router.post(
    DATASET + "versions/{int:number}/decision/",
    url_name="dataset_version_decision",
    response={200: VersionOut, **ERRORS},
    # The body is read after the access checks (a stranger gets 404 whatever they send), so it
    # is described here rather than parsed by ninja first.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": VersionDecisionIn.model_json_schema()}},
        }
    },
)
def decide_version(request: HttpRequest, project_id: int, dataset_id: int, number: int):
    """Approve or reject a dataset version awaiting approval for training, as the review inbox
    does (reviewers and admins; not a version you imported or derived; approval needs its PII
    report; a reason either way). 409 when it is not awaiting approval."""
    from apps.datasets import selectors as dataset_selectors
    from apps.review import services as review_services

    access, version = dataset_selectors.version_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id, number=number
    )
    access = project_selectors.project_access(
        user=request.user, project_id=access.project.pk, need="review"
    )
    try:
        body = VersionDecisionIn.model_validate_json(request.body or b"{}")
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(400, f"{param}: {first.get('msg', '')}", param=param) from None
    try:
        decided = review_services.dataset_decide(
            access=access,
            actor=request.user,
            version_id=version.pk,
            approve=body.decision == "approve",
            reason=body.reason,
            request=request,
        )
    except review_services.AlreadyDecided as exc:
        raise ApiError(409, " ".join(exc.messages), code="not_pending") from None
    except ValidationError as exc:
        param = "reason" if not body.reason.strip() else None
        raise ApiError(400, " ".join(exc.messages), param=param) from None
    return version_json(decided)
