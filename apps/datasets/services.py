"""Every write of datasets: import, derived versions, approval, PII reports."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from apps.audit.services import audit_record
from apps.datasets import storage
from apps.datasets.licenses import LICENSE_IDS
from apps.datasets.models import Approval, Dataset, DatasetVersion, Operation, Schema
from apps.datasets.moderation import moderation_report
from apps.projects.models import Project, Role
from webapp.keyfiles import read_or_create_key

log = logging.getLogger(__name__)


class DatasetImportFailed(Exception):
    """The file did not validate: `errors` (first 100, as dicts) and `total` say where and why."""

    def __init__(self, errors: list[dict], total: int):
        super().__init__(f"{total} problem(s) in the file")
        self.errors = errors
        self.total = total


class DatasetNotApproved(Exception):
    """A version that may not be used for training yet; the message says why and what to do."""


def _initial_approval(project: Project) -> str:
    return Approval.PENDING if project.require_dataset_approval else Approval.NOT_REQUIRED


def _check_metadata(*, name: str, license: str, source: str, schema: str | None = None) -> None:
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "A dataset needs a name"
    if license not in LICENSE_IDS:
        errors["license"] = "Choose a license from the list (SPDX identifier)"
    if not source.strip():
        errors["source"] = "Say where the data comes from"
    if schema is not None and schema not in Schema.values:
        errors["schema"] = f"Unknown schema {schema!r}"
    if errors:
        raise ValidationError(errors)


def dataset_check_new(*, project: Project, name: str, license: str, source: str) -> None:
    """A new dataset's compliance fields and unique name, before its file is staged."""
    _check_metadata(name=name, license=license, source=source)
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


def staged_import(
    *,
    project: Project,
    actor,
    staged: storage.StagedUpload,
    meta: dict[str, Any],
    target: Dataset | None,
    sniffed,
    cleaned: dict[str, Any],
    request=None,
) -> tuple[DatasetVersion, bool]:
    """Import a staged upload with the mapping step's choices; the staged file goes on success.
    Every refusal is a DatasetImportFailed (file errors, bad metadata, an unreadable file)."""
    from workers.data.errors import DatasetError

    try:
        version, created = dataset_import(
            project=project,
            actor=actor,
            upload_path=staged.file,
            filename=staged.filename,
            dataset=target,
            name=meta.get("name") or "",
            description=meta.get("description") or "",
            license=meta.get("license") or "",
            source=meta.get("source") or "",
            mapping={"schema": cleaned["schema"], "columns": cleaned["columns"]},
            fmt=sniffed.format,
            encoding=sniffed.encoding,
            template=cleaned["template"] or "",
            validation_fraction=cleaned["validation_fraction"],
            seed=cleaned["seed"],
            request=request,
        )
    except (DatasetError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            error = exc.message_dict if hasattr(exc, "message_dict") else {"": exc.messages}
            groups = list(error.values())
        else:
            groups = [[str(exc)]]
        errors = [{"message": m} for msgs in groups for m in msgs]
        raise DatasetImportFailed(errors, len(errors)) from exc
    storage.discard_upload(staged)
    return version, created


def _install_files(staged_dir: Path, project_id: int, sha256: str) -> tuple[Path, bool]:
    """Move validated files into media; returns (dir, created). Same content → same folder."""
    target = storage.version_dir(project_id, sha256)
    if target.exists():
        shutil.rmtree(staged_dir, ignore_errors=True)
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staged_dir), str(target))  # a rename on the same filesystem, a copy otherwise
    return target, True


def _next_number(dataset: Dataset) -> int:
    return (dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1


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
) -> tuple[DatasetVersion, bool]:
    """Validate and import a file as a new version (of a new or an existing dataset).

    All-or-nothing: on any problem DatasetImportFailed is raised and neither the database nor
    the media folder changes. Re-importing content that a dataset already has returns that
    version (second value False).
    """
    from workers.data import stats as data_stats
    from workers.data.canonical import Mapping
    from workers.data.errors import DatasetInvalid
    from workers.data.importer import import_file

    if dataset is None:
        _check_metadata(name=name, license=license, source=source)
        if Dataset.objects.filter(project=project, name=name.strip()).exists():
            raise ValidationError(
                {"name": f"A dataset named {name.strip()!r} already exists in this project"}
            )
    staged = storage.new_staging_dir()
    try:
        try:
            result = import_file(
                upload_path,
                filename,
                out_dir=staged,
                mapping=Mapping.from_dict(mapping) if mapping else None,
                fmt=fmt,
                encoding=encoding,
                validation_fraction=validation_fraction,
                seed=seed,
                **({"limits": limits} if limits is not None else {}),
            )
        except DatasetInvalid as exc:
            raise DatasetImportFailed(exc.to_list(), exc.total) from None
        if dataset is not None and result.schema != dataset.schema:
            raise DatasetImportFailed(
                [
                    {
                        "message": f"this file maps to {result.schema!r} records but the dataset holds {dataset.schema!r}"
                    }
                ],
                1,
            )
        if dataset is not None:
            existing = dataset.versions.filter(sha256=result.sha256).first()
            if existing is not None:
                return existing, False
        version_stats = data_stats.compute(result.canonical_path, result.schema)
        flags = moderation_report(project_id=project.pk, canonical_path=result.canonical_path)
        # Keep only the version's own files in the staged folder before it moves to media.
        files_dir = Path(result.canonical_path).parent
        target, created = _install_files(files_dir, project.pk, result.sha256)
        try:
            with transaction.atomic():
                if dataset is None:
                    dataset = Dataset.objects.create(
                        project=project,
                        name=name.strip(),
                        description=description.strip(),
                        schema=result.schema,
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
                version = DatasetVersion.objects.create(
                    dataset=dataset,
                    number=_next_number(dataset),
                    sha256=result.sha256,
                    operation=Operation.IMPORT,
                    source_filename=filename[:255],
                    source_format=result.format,
                    source_encoding=result.encoding or "",
                    mapping=result.mapping.to_dict(),
                    template=template,
                    rows=result.rows,
                    size_bytes=(target / "data.jsonl").stat().st_size,
                    validation_fraction=validation_fraction,
                    split_seed=seed,
                    split_counts=result.split_counts,
                    stats=version_stats,
                    moderation_report=flags,
                    approval=_initial_approval(project),
                    storage_path=storage.version_relpath(project.pk, result.sha256),
                    created_by=actor,
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
        except Exception:
            if created:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return version, True
    finally:
        shutil.rmtree(staged, ignore_errors=True)


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
    from workers.data import stats as data_stats
    from workers.data.canonical import split_counts

    dataset = parent.dataset
    existing = dataset.versions.filter(sha256=sha256).first()
    if existing is not None:
        return existing, False
    project = dataset.project
    staged = storage.new_staging_dir()
    try:
        shutil.move(str(canonical_path), staged / "data.jsonl")
        parent_images = storage.media_path(parent.storage_path).parent / "images"
        if parent_images.is_dir():
            shutil.copytree(parent_images, staged / "images")
        version_stats = data_stats.compute(staged / "data.jsonl", dataset.schema)
        flags = moderation_report(project_id=project.pk, canonical_path=staged / "data.jsonl")
        target, created = _install_files(staged, project.pk, sha256)
        try:
            with transaction.atomic():
                version = DatasetVersion.objects.create(
                    dataset=dataset,
                    number=_next_number(dataset),
                    sha256=sha256,
                    parent=parent,
                    operation=operation,
                    operation_params=params,
                    source_filename=parent.source_filename,
                    source_format=parent.source_format,
                    source_encoding=parent.source_encoding,
                    mapping=parent.mapping,
                    template=parent.template,
                    rows=rows,
                    size_bytes=(target / "data.jsonl").stat().st_size,
                    validation_fraction=parent.validation_fraction,
                    split_seed=parent.split_seed,
                    split_counts=split_counts(
                        target / "data.jsonl",
                        seed=parent.split_seed,
                        fraction=parent.validation_fraction,
                    ),
                    stats=version_stats,
                    moderation_report=flags,
                    pii_report=pii_report,
                    pii_scanned_at=timezone.now() if pii_report is not None else None,
                    approval=_initial_approval(project),
                    storage_path=storage.version_relpath(project.pk, sha256),
                    created_by=actor,
                )
                audit_record(
                    action=f"dataset.version.{operation}",
                    actor=actor,
                    project=project,
                    target=version,
                    data={
                        "dataset": dataset.name,
                        "parent": parent.number,
                        "sha256": sha256,
                        **params,
                    },
                )
        except IntegrityError:
            if created:
                shutil.rmtree(target, ignore_errors=True)
            return dataset.versions.get(sha256=sha256), False
        except Exception:
            if created:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return version, True
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def version_set_pii_report(*, version: DatasetVersion, report: dict) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(
        pii_report=report, pii_scanned_at=timezone.now()
    )


def version_set_stats(*, version: DatasetVersion, stats: dict) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(stats=stats)


def version_set_dedup_report(*, version: DatasetVersion, report: dict) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(dedup_report=report)


LINEAGE_MAX_DEPTH = 1000
DERIVING_KINDS = ("dataset.redact", "dataset.dedup")


def version_lineage(version: DatasetVersion) -> list[DatasetVersion]:
    """The version and its ancestors, newest first (redaction and dedup make children)."""
    chain, seen = [version], {version.pk}
    current = version
    while current.parent_id is not None and len(chain) < LINEAGE_MAX_DEPTH:
        current = DatasetVersion.objects.only("pk", "parent_id", "created_by_id").get(
            pk=current.parent_id
        )
        if current.pk in seen:  # never in a well-formed lineage; do not loop on a bad row
            break
        seen.add(current.pk)
        chain.append(current)
    return chain


def version_contributors(version: DatasetVersion) -> set[int]:
    """Ids of everyone who imported or derived a version in this version's lineage: the four
    eyes rule keeps all of them from deciding on it. A derivation that found its result already
    stored (the same content made twice) still counts its launcher, through the job's result."""
    from apps.jobs.models import Job

    lineage = version_lineage(version)
    ids = [v.pk for v in lineage]
    people = {v.created_by_id for v in lineage if v.created_by_id is not None}
    launchers = Job.objects.filter(
        project_id=version.dataset.project_id, kind__in=DERIVING_KINDS, created_by__isnull=False
    ).filter(Q(result__version_id__in=ids) | Q(result__new_version_id__in=ids))
    people.update(launchers.values_list("created_by_id", flat=True))
    return people


def version_decide(
    *, version: DatasetVersion, actor, role: str, approve: bool, comment: str, request=None
) -> DatasetVersion:
    """A reviewer or admin approves or rejects a version for training (four eyes: not their own)."""
    if role not in (Role.ADMIN, Role.REVIEWER):
        raise ValidationError("Only reviewers and admins decide on datasets")
    if actor.pk in version_contributors(version):
        raise ValidationError(
            "You imported or derived a version in this version's lineage: another reviewer "
            "must decide on it"
        )
    if approve and version.pii_report is None:
        raise ValidationError(
            "Run a PII scan first: reviewers decide with the PII report in front of them"
        )
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
