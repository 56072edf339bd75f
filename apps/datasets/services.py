"""Every write of datasets: import, derived versions, approval, PII reports."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from apps.audit.services import audit_record
from apps.datasets import storage
from apps.datasets.decisions import decision_refusal
from apps.datasets.models import Approval, Dataset, DatasetVersion, Operation
from apps.datasets.moderation import moderation_report
from apps.datasets.validation import (
    DatasetImportFailed,
    check_metadata,
    check_new_dataset,
    validate_file,
    version_with_content,
)
from apps.projects.models import Project
from webapp.keyfiles import read_or_create_key

if TYPE_CHECKING:
    from workers.data.importer import ImportResult

log = logging.getLogger(__name__)


class DatasetNotApproved(Exception):
    """A version that may not be used for training yet; the message says why and what to do."""


def _initial_approval(project: Project) -> str:
    return Approval.PENDING if project.require_dataset_approval else Approval.NOT_REQUIRED


def dataset_check_new(*, project: Project, name: str, license: str, source: str) -> None:
    """A new dataset's compliance fields and unique name, before its file is staged."""
    check_metadata(name=name, license=license, source=source)
    if Dataset.objects.filter(project=project, name=name.strip()).exists():
        raise ValidationError({"name": "A dataset with this name already exists in this project"})


def upload_stage(
    *, uploaded_file, user_id: int, project_id: int, meta: dict[str, Any]
) -> storage.StagedUpload:
    """Stage an uploaded file outside media, with the first step's fields beside it."""
    staged = storage.stage_upload(
        uploaded_file=uploaded_file, user_id=user_id, project_id=project_id
    )
    (staged.path / "form.json").write_text(json.dumps(meta))
    return staged


def import_submit(
    *,
    project: Project,
    actor,
    staged: storage.StagedUpload,
    mapping: dict[str, Any] | None,
    fmt: str | None = None,
    encoding: str | None = None,
    template: str = "",
    validation_fraction: float = 0.0,
    seed: int = 0,
    request=None,
):
    """Queue the import of a staged upload as a cpu job: a large file must not hold a request
    open. The staged file is the job's input and stays until the job ends (see run_import).
    Raises JobParamsError (bad params, an upload that is not this user's, a quota)."""
    from apps.datasets.jobkinds import IMPORT_KIND
    from apps.jobs.services import job_create

    return job_create(
        project=project,
        kind=IMPORT_KIND,
        params={
            "upload": staged.token,
            "filename": staged.filename,
            "mapping": mapping,
            "fmt": fmt,
            "encoding": encoding,
            "template": template,
            "validation_fraction": validation_fraction,
            "seed": seed,
        },
        created_by=actor,
        request=request,
    )


def import_cancel(*, job, actor, request=None) -> bool:
    """Cancel an import job. A queued one is cancelled at once and never runs, so its staged
    file goes here; a running one stops at its next chunk of rows and discards the file itself."""
    from apps.jobs.services import job_cancel
    from apps.jobs.states import JobState

    if not job_cancel(job=job, actor=actor, request=request):
        return False
    job.refresh_from_db(fields=["state"])
    if job.state == JobState.CANCELLED and job.created_by_id is not None:
        staged = storage.load_upload(
            str((job.params or {}).get("upload") or ""),
            user_id=job.created_by_id,
            project_id=job.project_id,
        )
        if staged is not None:
            storage.discard_upload(staged)
    return True


def _refusal(exc: Exception) -> DatasetImportFailed:
    """A DatasetImportFailed for what stopped an import before its rows were checked: a field
    (the place is the field's name), a mapping or template problem, an out-of-range split."""
    from workers.data.errors import DatasetError

    if isinstance(exc, DatasetError):
        errors = [exc.to_dict()]
    elif isinstance(exc, ValidationError):
        groups = exc.message_dict if hasattr(exc, "message_dict") else {"": exc.messages}
        errors = [
            {"message": m, "field": field or None} for field, msgs in groups.items() for m in msgs
        ]
    else:
        errors = [{"message": str(exc)}]
    return DatasetImportFailed(errors, len(errors))


def staged_import(
    *,
    project: Project,
    actor,
    staged: storage.StagedUpload,
    mapping: dict[str, Any] | None,
    fmt: str | None = None,
    encoding: str | None = None,
    template: str = "",
    validation_fraction: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DatasetVersion, bool]:
    """Import a staged upload with the first step's fields kept beside it (the import job's
    work). Every refusal is a DatasetImportFailed with the places of the problems; the staged
    file is left where it is, for the caller to discard or keep."""
    from workers.data.errors import DatasetError

    meta = json.loads((staged.path / "form.json").read_text())
    target = None
    if meta.get("dataset"):
        target = Dataset.objects.filter(project=project, pk=meta["dataset"]).first()
        if target is None:
            raise DatasetImportFailed(
                [{"message": "The dataset this upload was for no longer exists"}], 1
            )
    try:
        return dataset_import(
            project=project,
            actor=actor,
            upload_path=staged.file,
            filename=staged.filename,
            dataset=target,
            name=meta.get("name") or "",
            description=meta.get("description") or "",
            license=meta.get("license") or "",
            source=meta.get("source") or "",
            mapping=mapping,
            fmt=fmt,
            encoding=encoding,
            template=template,
            validation_fraction=validation_fraction,
            seed=seed,
            progress=progress,
        )
    except (DatasetError, ValidationError, ValueError) as exc:
        raise _refusal(exc) from exc


def _next_number(dataset: Dataset) -> int:
    return (dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1


def _reports(project_id: int, canonical_path: str | Path, schema: str) -> tuple[dict, dict]:
    """A version's statistics and moderation report, made before its files move to media."""
    from workers.data import stats as data_stats

    version_stats = data_stats.compute(canonical_path, schema)
    return version_stats, moderation_report(project_id=project_id, canonical_path=canonical_path)


def _version_create(
    *, project: Project, dataset: Dataset, sha256: str, target: Path, actor, **fields: Any
) -> DatasetVersion:
    """The row of a version whose files are installed at `target`: what every version records
    the same way is filled in here, what its operation decides comes in `fields`."""
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=_next_number(dataset),
        sha256=sha256,
        size_bytes=(target / "data.jsonl").stat().st_size,
        approval=_initial_approval(project),
        storage_path=storage.version_relpath(project.pk, sha256),
        created_by=actor,
        **fields,
    )


def _dataset_create(
    project: Project,
    actor,
    schema: str,
    *,
    name: str,
    description: str,
    license: str,
    source: str,
    request=None,
) -> Dataset:
    dataset = Dataset.objects.create(
        project=project,
        name=name.strip(),
        description=description.strip(),
        schema=schema,
        license=license,
        source=source.strip(),
        created_by=actor,
    )
    audit_record(
        action="dataset.create",
        actor=actor,
        project=project,
        target=dataset,
        request=request,
        data={"name": dataset.name, "license": license},
    )
    return dataset


def _record_import(
    *,
    project: Project,
    actor,
    dataset: Dataset | None,
    new_dataset: dict[str, str],
    result: ImportResult,
    filename: str,
    template: str,
    validation_fraction: float,
    seed: int,
    request=None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetVersion:
    """Install the validated files in media and record their version, and the dataset when it
    is new, in one transaction; the files leave media again if that fails."""
    version_stats, flags = _reports(project.pk, result.canonical_path, result.schema)
    if progress is not None:  # the reports take a while: the last place a cancel can stop it
        progress(result.bytes, result.bytes)
    # Keep only the version's own files in the staged folder before it moves to media.
    files_dir = Path(result.canonical_path).parent
    with storage.installed_version(files_dir, project.pk, result.sha256) as target:
        with transaction.atomic():
            if dataset is None:
                dataset = _dataset_create(
                    project, actor, result.schema, request=request, **new_dataset
                )
            version = _version_create(
                project=project,
                dataset=dataset,
                sha256=result.sha256,
                target=target,
                actor=actor,
                operation=Operation.IMPORT,
                source_filename=filename[:255],
                source_format=result.format,
                source_encoding=result.encoding or "",
                mapping=result.mapping.to_dict(),
                template=template,
                rows=result.rows,
                validation_fraction=validation_fraction,
                split_seed=seed,
                split_counts=result.split_counts,
                stats=version_stats,
                moderation_report=flags,
            )
            audit_record(
                action="dataset.version.import",
                actor=actor,
                project=project,
                target=version,
                request=request,
                data={
                    "dataset": dataset.name,
                    "sha256": result.sha256,
                    "rows": result.rows,
                    "flagged_rows": flags["flagged_rows"],
                    "ruleset_version": flags["ruleset_version"],
                },
            )
    return version


def dataset_import(
    *,
    project: Project,
    actor,
    upload_path: Path,
    filename: str,
    name: str = "",
    dataset: Dataset | None = None,
    description: str = "",
    license: str = "",
    source: str = "",
    mapping: dict[str, Any] | None = None,
    fmt: str | None = None,
    encoding: str | None = None,
    template: str = "",
    validation_fraction: float = 0.0,
    seed: int = 0,
    limits=None,
    request=None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DatasetVersion, bool]:
    """Validate and import a file as a new version (of a new or an existing dataset).

    All-or-nothing: on any problem DatasetImportFailed is raised and neither the database nor
    the media folder changes. Re-importing content that a dataset already has returns that
    version (second value False). `progress(bytes_read, total_bytes)` is called while the rows
    are read, and once more before anything is recorded; whatever it raises (a cancel) stops
    the import with nothing written.
    """
    if dataset is None:
        check_new_dataset(project=project, name=name, license=license, source=source)
    with storage.staging_dir() as staged:
        result = validate_file(
            upload_path,
            filename,
            out_dir=staged,
            mapping=mapping,
            fmt=fmt,
            encoding=encoding,
            validation_fraction=validation_fraction,
            seed=seed,
            limits=limits,
            progress=progress,
        )
        if dataset is not None:
            existing = version_with_content(dataset, result)
            if existing is not None:
                return existing, False
        version = _record_import(
            project=project,
            actor=actor,
            dataset=dataset,
            new_dataset=dict(name=name, description=description, license=license, source=source),
            result=result,
            filename=filename,
            template=template,
            validation_fraction=validation_fraction,
            seed=seed,
            request=request,
            progress=progress,
        )
        return version, True


def _stage_derived_files(parent: DatasetVersion, canonical_path: Path, staged: Path) -> None:
    """The derived rows, and the parent's images that they name, into the staging folder."""
    shutil.move(str(canonical_path), staged / "data.jsonl")
    parent_images = storage.media_path(parent.storage_path).parent / "images"
    if parent_images.is_dir():
        shutil.copytree(parent_images, staged / "images")


def _record_derived(
    *,
    parent: DatasetVersion,
    project: Project,
    target: Path,
    sha256: str,
    rows: int,
    operation: str,
    params: dict[str, Any],
    reports: tuple[dict, dict],
    actor=None,
    pii_report: dict | None = None,
) -> DatasetVersion:
    """The derived version's row, with the parent's source and split, and its audit entry."""
    from workers.data.canonical import split_counts

    dataset = parent.dataset
    version = _version_create(
        project=project,
        dataset=dataset,
        sha256=sha256,
        target=target,
        actor=actor,
        parent=parent,
        operation=operation,
        operation_params=params,
        source_filename=parent.source_filename,
        source_format=parent.source_format,
        source_encoding=parent.source_encoding,
        mapping=parent.mapping,
        template=parent.template,
        rows=rows,
        validation_fraction=parent.validation_fraction,
        split_seed=parent.split_seed,
        split_counts=split_counts(
            target / "data.jsonl", seed=parent.split_seed, fraction=parent.validation_fraction
        ),
        stats=reports[0],
        moderation_report=reports[1],
        pii_report=pii_report,
        pii_scanned_at=timezone.now() if pii_report is not None else None,
    )
    audit_record(
        action=f"dataset.version.{operation}",
        actor=actor,
        project=project,
        target=version,
        data={"dataset": dataset.name, "parent": parent.number, "sha256": sha256, **params},
    )
    return version


def version_derive(
    *,
    parent: DatasetVersion,
    canonical_path: Path,
    sha256: str,
    rows: int,
    operation: str,
    params: dict[str, Any],
    actor=None,
    pii_report: dict | None = None,
) -> tuple[DatasetVersion, bool]:
    """Record a new version made from `parent` (redaction, dedup, filter); lineage is kept."""
    dataset = parent.dataset
    existing = dataset.versions.filter(sha256=sha256).first()
    if existing is not None:
        return existing, False
    project = dataset.project
    with storage.staging_dir() as staged:
        _stage_derived_files(parent, canonical_path, staged)
        reports = _reports(project.pk, staged / "data.jsonl", dataset.schema)
        try:
            with storage.installed_version(staged, project.pk, sha256) as target:
                with transaction.atomic():
                    version = _record_derived(
                        parent=parent,
                        project=project,
                        target=target,
                        sha256=sha256,
                        rows=rows,
                        operation=operation,
                        params=params,
                        reports=reports,
                        actor=actor,
                        pii_report=pii_report,
                    )
        except IntegrityError:  # the same content recorded meanwhile: that version is the result
            return dataset.versions.get(sha256=sha256), False
        return version, True


def version_set_pii_report(*, version: DatasetVersion, report: dict) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(
        pii_report=report, pii_scanned_at=timezone.now()
    )


def version_set_stats(*, version: DatasetVersion, stats: dict) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(stats=stats)


def version_set_dedup_report(*, version: DatasetVersion, report: dict) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(dedup_report=report)


def version_decide(
    *, version: DatasetVersion, actor, role: str, approve: bool, comment: str, request=None
) -> DatasetVersion:
    """A reviewer or admin approves or rejects a version for training (four eyes: not their own)."""
    refusal = decision_refusal(version=version, actor=actor, role=role, approve=approve)
    if refusal is not None:
        raise ValidationError(refusal)
    if not comment.strip():
        raise ValidationError("Say why (a comment is required)")
    target = Approval.APPROVED if approve else Approval.REJECTED
    changed = (
        DatasetVersion.objects.filter(pk=version.pk)
        .exclude(approval=target)
        .update(
            approval=target,
            approval_comment=comment.strip(),
            decided_by=actor,
            decided_at=timezone.now(),
        )
    )
    version.refresh_from_db()
    if changed:
        audit_record(
            action="dataset.version.approve" if approve else "dataset.version.reject",
            actor=actor,
            project=version.dataset.project,
            target=version,
            request=request,
            data={
                "dataset": version.dataset.name,
                "version": version.number,
                "comment": comment.strip(),
            },
        )
    return version


def ensure_trainable(version: DatasetVersion) -> None:
    """The approval gate every fine-tune passes through before it may read a version."""
    if version.approval == Approval.APPROVED or version.approval == Approval.NOT_REQUIRED:
        return
    name = f"{version.dataset.name} v{version.number}"
    if version.approval == Approval.REJECTED:
        raise DatasetNotApproved(
            f"{name} was rejected by {version.decided_by or 'a reviewer'}: {version.approval_comment}"
        )
    raise DatasetNotApproved(
        f"{name} has not been approved yet: a reviewer or admin must approve it (after a PII scan) before training"
    )


def pseudonym_key(project_id: int) -> bytes:
    """The project's secret for consistent pseudonyms, derived from the pseudonym key (never stored)."""
    master = _pseudonym_master_key().encode()
    return hmac.new(
        master, f"atelier:pseudonyms:project:{int(project_id)}".encode(), hashlib.sha256
    ).digest()


def _pseudonym_master_key() -> str:
    # Never SECRET_KEY (public in development): phone-number pseudonyms would be brute-forceable.
    if settings.ATELIER_PSEUDONYM_KEY:
        return settings.ATELIER_PSEUDONYM_KEY
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        # A development process outside `make run` (tests, a shell): the key make run keeps.
        return read_or_create_key(Path(settings.VAR_DIR) / "pseudonym-key")
    raise ImproperlyConfigured(
        "ATELIER_PSEUDONYM_KEY is not set: pseudonym redaction needs a secret key of its own"
    )
