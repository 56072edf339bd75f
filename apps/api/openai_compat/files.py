"""/v1/files: training files are dataset versions of the token's project.

An upload (purpose "fine-tune") goes through the datasets' own import path: staged, sniffed,
then a `dataset.import` job (cpu queue) validates every row and records a new dataset (named
after the file, licence "LicenseRef-Proprietary", source: the API upload) with its version. The
client needs an id at once, before the job ran, so a file's id is its import job's:
``file-<import job id>``, "uploaded" while the job is queued or running, "processed" once it
recorded the version, "error" when it refused the file (status_details lists the problems with
their line numbers; `errors` has them as objects). Every import of the project is a file,
including those made on the pages. A version that no import made (a PII redaction, a duplicate
removal) is ``file-v<version id>``: retrievable and usable as a training file, not listed.

Formats: OpenAI chat rows ({"messages": [...]}), prompt/completion rows (a question/answer
dataset) and OpenAI's preference rows for DPO ({"input": {"messages"}, "preferred_output",
"non_preferred_output"}, rewritten to prompt/chosen/rejected before the import), and whatever
else the importer reads. `content` is the version's canonical JSONL (the rows as Atelier stores
them), not the uploaded bytes. Versions are immutable (adapters, provenance and lineage point at
them by hash), so DELETE answers 409 and deletes nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from django.http import FileResponse, HttpRequest
from ninja import Field, File, Form, Query, Router, Schema
from ninja.files import UploadedFile

from apps.api.errors import ApiError
from apps.api.openai_compat.common import token_project
from apps.jobs import services as job_services
from apps.jobs.states import JobState
from apps.projects.selectors import ProjectAccess

router = Router(tags=["files"])

PURPOSE = "fine-tune"
_FILE_ID = re.compile(r"^file-(v?)([0-9]{1,18})$")
STATUS_DETAIL_ERRORS = 20  # problems quoted in status_details (all of them are in `errors`)


class FileObject(Schema):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str = PURPOSE
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None
    expires_at: int | None = None
    # Atelier's own: where the rows are, and the refused file's problems with their places.
    dataset_id: int | None = None
    dataset_version: int | None = None
    rows: int | None = None
    errors: list[dict[str, Any]] | None = None


class FileList(Schema):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(Schema):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class FileListQuery(Schema):
    after: str | None = Field(None, description="A file id: the files after it in `order`")
    limit: int = Field(10000, ge=1, le=10000)
    order: Literal["asc", "desc"] = "desc"
    purpose: str | None = None


# --------------------------------------------------------------------------- ids and lookups


@dataclass(frozen=True)
class TrainingFile:
    """What a file id names in a project: an import job, or a version no import made."""

    id: str
    job: Any = None  # apps.jobs.models.Job of kind dataset.import
    version: Any = None  # apps.datasets.models.DatasetVersion, once there is one


def file_id_for_job(job_id: int) -> str:
    return f"file-{job_id}"


def find_file(access: ProjectAccess, file_id: str, *, param: str = "file_id") -> TrainingFile:
    """The file `file_id` names in the project, or 404 (an id of another project is unknown)."""
    from apps.datasets.jobkinds import IMPORT_KIND
    from apps.datasets.models import DatasetVersion
    from apps.datasets.selectors import import_version
    from apps.jobs.models import Job

    match = _FILE_ID.match(file_id or "")
    if match is None:
        raise ApiError(404, f"No such File object: {file_id}", param=param)
    number = int(match.group(2))
    if match.group(1):
        version = (
            DatasetVersion.objects.select_related("dataset")
            .filter(pk=number, dataset__project=access.project)
            .first()
        )
        if version is None:
            raise ApiError(404, f"No such File object: {file_id}", param=param)
        return TrainingFile(id=file_id, version=version)
    job = Job.objects.filter(pk=number, project=access.project, kind=IMPORT_KIND).first()
    if job is None:
        raise ApiError(404, f"No such File object: {file_id}", param=param)
    version = import_version(access=access, job=job) if job.state == JobState.SUCCEEDED else None
    return TrainingFile(id=file_id, job=job, version=version)


def _made_version_id(job) -> int | None:
    """The version a succeeded import job recorded (or found), by its result."""
    version_id = (job.result or {}).get("version_id") if isinstance(job.result, dict) else None
    return version_id if job.state == JobState.SUCCEEDED and isinstance(version_id, int) else None


def file_ids_for_versions(access: ProjectAccess, version_ids: set[int]) -> dict[int, str]:
    """The file id of each version: the newest import job that made (or found) it, else
    ``file-v<id>``. One query."""
    from apps.datasets.jobkinds import IMPORT_KIND
    from apps.jobs.models import Job

    found: dict[int, str] = {}
    if version_ids:
        jobs = Job.objects.filter(
            project=access.project, kind=IMPORT_KIND, state=JobState.SUCCEEDED
        ).filter(result__version_id__in=sorted(version_ids))
        for pk, result in jobs.order_by("pk").values_list("pk", "result"):
            version_id = (result or {}).get("version_id")
            if isinstance(version_id, int):
                found[version_id] = file_id_for_job(pk)
    return {v: found.get(v, f"file-v{v}") for v in version_ids}


def _status(job) -> Literal["uploaded", "processed", "error"]:
    if job.state == JobState.SUCCEEDED:
        return "processed"
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        return "error"
    return "uploaded"


def _problems(job) -> tuple[str | None, list[dict] | None]:
    """status_details and errors of a refused (or cancelled) import."""
    from apps.datasets.selectors import import_refusal

    if job.state == JobState.CANCELLED:
        return "The import was cancelled before it recorded the file", None
    errors, total = import_refusal(job)
    if not errors:
        return job.error or "The import failed", None
    quoted = "; ".join(str(e.get("message", "")) for e in errors[:STATUS_DETAIL_ERRORS])
    more = total - min(len(errors), STATUS_DETAIL_ERRORS)
    details = f"{total:,} problem(s) in the file; nothing was imported: {quoted}"
    return details + (f" (and {more:,} more)" if more > 0 else ""), errors


def _staged_size(job) -> int:
    from apps.datasets.storage import load_upload

    if job.created_by_id is None:
        return 0
    staged = load_upload(
        str((job.params or {}).get("upload") or ""),
        user_id=job.created_by_id,
        project_id=job.project_id,
    )
    return staged.size if staged is not None else 0


def file_json(f: TrainingFile) -> dict[str, Any]:
    """A FileObject as OpenAI shapes it, with Atelier's dataset fields beside."""
    version = f.version
    out: dict[str, Any] = {"id": f.id, "object": "file", "purpose": PURPOSE}
    if f.job is not None:
        job = f.job
        status = "processed" if version is not None else _status(job)
        if status == "processed" and version is None:  # succeeded but the version is gone
            status = "error"
        details, errors = _problems(job) if status == "error" else (None, None)
        out.update(
            filename=str((job.params or {}).get("filename") or "upload"),
            created_at=int(job.created_at.timestamp()),
            status=status,
            status_details=details,
            errors=errors,
            bytes=version.size_bytes if version is not None else _staged_size(job),
        )
    else:
        out.update(
            filename=version.source_filename or f"{version.dataset.name} v{version.number}.jsonl",
            created_at=int(version.created_at.timestamp()),
            status="processed",
            bytes=version.size_bytes,
        )
    if version is not None:
        out.update(dataset_id=version.dataset_id, dataset_version=version.number, rows=version.rows)
    return out


# --------------------------------------------------------------------------- OpenAI DPO rows


def _message_text(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return None
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        return None
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in messages)


def _preference_row(row: Any) -> dict[str, str] | None:
    """OpenAI's DPO row as Atelier's preference record, or None when it is not one."""
    if not isinstance(row, dict) or not isinstance(row.get("input"), dict):
        return None
    prompt = _message_text(row["input"].get("messages"))
    chosen = _message_text(row.get("preferred_output"))
    rejected = _message_text(row.get("non_preferred_output"))
    if prompt is None or chosen is None or rejected is None:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def rewrite_openai_preferences(path: os.PathLike[str] | str) -> bool:
    """Rewrite a JSONL file of OpenAI DPO rows as prompt/chosen/rejected rows, in place.

    Only a file whose first row has OpenAI's DPO keys is touched. Each line stays a line (a row
    that cannot be rewritten is kept as written, so the import reports it at its own line
    number); a multi-message input becomes "role: content" lines, as Atelier renders chats."""
    with open(path, "rb") as f:
        first = b""
        for line in f:
            if line.strip():
                first = line
                break
    try:
        head = json.loads(first)
    except ValueError:
        return False
    if not isinstance(head, dict) or not {"input", "preferred_output"} <= head.keys():
        return False
    tmp = f"{path}.rewriting"
    with open(path, "rb") as src, open(tmp, "wb") as out:
        for line in src:
            try:
                converted = _preference_row(json.loads(line)) if line.strip() else None
            except ValueError:
                converted = None
            if converted is None:
                out.write(line if line.endswith(b"\n") else line + b"\n")
            else:
                out.write(json.dumps(converted, ensure_ascii=False).encode("utf-8") + b"\n")
    os.replace(tmp, path)
    return True


# --------------------------------------------------------------------------- routes


@router.post("/files", url_name="files", response=FileObject)
def create_file(request: HttpRequest, file: File[UploadedFile], purpose: Form[str]):
    """Upload a training file (JSONL). Answers at once with status "uploaded"; poll
    GET /v1/files/{id} until "processed" (the rows are a dataset version) or "error"."""
    from apps.datasets import selectors as dataset_selectors
    from apps.datasets import services as dataset_services
    from apps.datasets.storage import discard_upload

    access = token_project(request, "launch_job")
    if purpose != PURPOSE:
        raise ApiError(
            400,
            f"Atelier keeps files for fine-tuning only: purpose must be {PURPOSE!r}, not {purpose!r}",
            code="invalid_purpose",
            param="purpose",
        )
    token = getattr(request, "api_token", None)
    filename = os.path.basename(str(file.name or "upload"))[:150] or "upload"
    meta = {
        "name": "",  # set below, from the staged upload's token: unique in the project
        "description": "Uploaded through the OpenAI-compatible API (purpose fine-tune).",
        "license": "LicenseRef-Proprietary",
        "source": f"Uploaded with the API by {request.user.get_username()}"
        + (f" (token {token.prefix}…)" if token is not None else ""),
        "dataset": None,
    }
    staged = dataset_services.upload_stage(
        uploaded_file=file, user_id=request.user.pk or 0, project_id=access.project.pk, meta=meta
    )
    # One dataset per upload, as OpenAI keeps one file per upload: the staged token makes the
    # name unique without a check that two concurrent uploads could both pass.
    meta["name"] = f"{filename} ({staged.token[:8]})"
    (staged.path / "form.json").write_text(json.dumps(meta))
    try:
        rewrite_openai_preferences(staged.file)
    except OSError:
        pass  # unreadable here is unreadable to the sniff just below, which says so
    _, unreadable = dataset_selectors.staged_sniff(staged)
    if unreadable is not None:
        discard_upload(staged)
        raise ApiError(
            400,
            "The file cannot be read; nothing was imported: " + str(unreadable.get("message", "")),
            code="invalid_file",
            param="file",
            errors=[unreadable],
        )
    try:
        job = dataset_services.import_submit(
            project=access.project,
            actor=request.user,
            staged=staged,
            mapping=None,
            request=request,
        )
    except job_services.JobParamsError:
        discard_upload(staged)
        raise
    return file_json(TrainingFile(id=file_id_for_job(job.pk), job=job))


@router.get("/files", url_name="files", response=FileList)
def list_files(request: HttpRequest, q: Query[FileListQuery]):
    """The project's uploads (every dataset import), newest first unless `order=asc`."""
    from apps.datasets.jobkinds import IMPORT_KIND
    from apps.datasets.models import DatasetVersion
    from apps.jobs.models import Job

    access = token_project(request)
    if q.purpose not in (None, "", PURPOSE):
        return {"object": "list", "data": [], "has_more": False}
    jobs = Job.objects.filter(project=access.project, kind=IMPORT_KIND)
    if q.after:
        match = _FILE_ID.match(q.after)
        if match is None or match.group(1):
            raise ApiError(
                400, f"after must be a file id from this list, not {q.after!r}", param="after"
            )
        pivot = int(match.group(2))
        jobs = jobs.filter(pk__lt=pivot) if q.order == "desc" else jobs.filter(pk__gt=pivot)
    page = list(jobs.order_by("-pk" if q.order == "desc" else "pk")[: q.limit + 1])
    more = len(page) > q.limit
    page = page[: q.limit]
    made = {j.pk: v for j in page if (v := _made_version_id(j)) is not None}
    versions = {
        v.pk: v
        for v in DatasetVersion.objects.select_related("dataset").filter(
            pk__in=set(made.values()), dataset__project=access.project
        )
    }
    data = [
        file_json(
            TrainingFile(
                id=file_id_for_job(j.pk),
                job=j,
                version=versions.get(made.get(j.pk, 0)),
            )
        )
        for j in page
    ]
    return {
        "object": "list",
        "data": data,
        "has_more": more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/files/{file_id}", url_name="file", response=FileObject)
def retrieve_file(request: HttpRequest, file_id: str):
    access = token_project(request)
    return file_json(find_file(access, file_id))


@router.get("/files/{file_id}/content", url_name="file_content")
def file_content(request: HttpRequest, file_id: str):
    """The version's rows as Atelier stores them (canonical JSONL), once the file is processed."""
    from apps.datasets.storage import media_path

    access = token_project(request)
    found = find_file(access, file_id)
    if found.version is None:
        status = file_json(found)["status"]
        raise ApiError(
            400,
            f"{file_id} is {status}: its content is served once the import recorded its rows",
            code="file_not_processed",
            param="file_id",
        )
    return FileResponse(
        open(media_path(found.version.storage_path), "rb"),  # noqa: SIM115 - FileResponse closes it
        content_type="application/jsonl",
        as_attachment=True,
        filename=f"{file_id}.jsonl",
    )


@router.delete("/files/{file_id}", url_name="file", response=FileDeleted)
def delete_file(request: HttpRequest, file_id: str):
    """Always 409: dataset versions are immutable (fine-tunes, adapters, provenance records and
    derived versions name them by content hash); nothing is deleted."""
    access = token_project(request, "launch_job")
    find_file(access, file_id)
    raise ApiError(
        409,
        f"{file_id} cannot be deleted: in Atelier a training file is a dataset version, and "
        "versions are immutable (fine-tunes, adapters and provenance records point at them). "
        "Nothing was deleted.",
        code="file_not_deletable",
        param="file_id",
    )
