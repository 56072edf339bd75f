"""Dataset jobs on the cpu queue: import, PII scan, PII redaction (new version), duplicate removal."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from apps.jobs.registry import JobKind, register, runner_at

PII_TYPES = (
    "CN_RESIDENT_ID",
    "CN_PHONE",
    "BANK_CARD",
    "EMAIL",
    "IP_ADDRESS",
    "PASSPORT",
    "URL_CREDENTIALS",
    "PERSON",
)


class VersionParams(BaseModel):
    model_config = {"extra": "forbid"}

    version_id: int = Field(..., ge=1, title="Dataset version")


class RedactParams(VersionParams):
    mode: Literal["mask", "tag", "pseudonym"] = Field("tag", title="Redaction mode")


class DedupParams(VersionParams):
    semantic: bool = Field(True, title="Also find near-duplicates (MiniLM embeddings)")
    threshold: float = Field(0.92, ge=0.5, le=1.0, title="Similarity threshold")
    keep_one: bool = Field(False, title="Write a new version keeping one row per group")


def check_version(project, params: VersionParams, *, user=None) -> dict[str, str]:
    from apps.datasets.models import DatasetVersion

    if not DatasetVersion.objects.filter(pk=params.version_id, dataset__project=project).exists():
        return {"version_id": "No such dataset version in this project"}
    return {}


register(
    JobKind(
        name="dataset.pii_scan",
        label="PII scan",
        queue="cpu",
        params=VersionParams,
        runner=runner_at("apps.datasets.runners:run_pii_scan"),
        description="Finds personal data in a dataset version and writes a report.",
        launchable=False,
        check=check_version,
        progress_unit="row",
    )
)
register(
    JobKind(
        name="dataset.redact",
        label="PII redaction",
        queue="cpu",
        params=RedactParams,
        runner=runner_at("apps.datasets.runners:run_redact"),
        description="Writes a new version with personal data masked, tagged or pseudonymised.",
        launchable=False,
        check=check_version,
        progress_unit="percent",
    )
)
register(
    JobKind(
        name="dataset.dedup",
        label="Duplicate detection",
        queue="cpu",
        params=DedupParams,
        runner=runner_at("apps.datasets.runners:run_dedup"),
        description="Finds exact and near-duplicate rows; can keep one per group as a new version.",
        launchable=False,
        check=check_version,
        progress_unit="percent",
    )
)


class StatsParams(VersionParams):
    tokenizer: Literal["characters", "all-MiniLM-L6-v2"] = Field(
        "all-MiniLM-L6-v2", title="Count lengths in"
    )


register(
    JobKind(
        name="dataset.stats",
        label="Dataset statistics",
        queue="cpu",
        params=StatsParams,
        runner=runner_at("apps.datasets.runners:run_stats"),
        description="Recounts a version's length histogram in a tokenizer's tokens.",
        launchable=False,
        check=check_version,
    )
)


IMPORT_KIND = "dataset.import"


class ImportParams(BaseModel):
    """The mapping step's choices for a staged upload (its first step's fields lie beside it)."""

    model_config = {"extra": "forbid"}

    upload: str = Field(..., min_length=1, max_length=64, title="Staged upload")
    # The uploaded file's name, for the import page once the staged file is gone.
    filename: str = Field("", max_length=255, title="File")
    # {"schema": ..., "columns": {role: column}}; None lets the importer suggest one (the API).
    mapping: dict[str, Any] | None = Field(None, title="Column mapping")
    fmt: str | None = Field(None, max_length=32, title="Format")
    encoding: str | None = Field(None, max_length=64, title="Encoding")
    template: str = Field("", max_length=20000, title="Prompt template")
    validation_fraction: float = Field(0.0, ge=0.0, le=0.5, title="Validation share")
    seed: int = Field(0, title="Split seed")


def check_upload(project, params: ImportParams, *, user=None) -> dict[str, str]:
    """The staged upload is the submitting user's, in this project, and still there."""
    from apps.datasets.storage import load_upload

    if user is None or load_upload(params.upload, user_id=user.pk, project_id=project.pk) is None:
        return {"upload": "This upload has expired or is not yours; upload the file again"}
    return {}


register(
    JobKind(
        name=IMPORT_KIND,
        label="Dataset import",
        queue="cpu",
        params=ImportParams,
        runner=runner_at("apps.datasets.runners:run_import"),
        description="Validates a staged file and records it as a new dataset version.",
        launchable=False,
        check=check_upload,
        progress_unit="percent",
    )
)
