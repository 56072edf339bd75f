"""What an import checks before anything is written: a new dataset's compliance fields and name,
the file's rows, the dataset's schema, a version that already holds the same content. The
file's problems are a DatasetImportFailed (row errors, shown as written), the fields' a
ValidationError."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError

from apps.datasets.licenses import LICENSE_IDS
from apps.datasets.models import Dataset, DatasetVersion, Schema
from apps.projects.models import Project

if TYPE_CHECKING:
    from workers.data.importer import ImportResult


class DatasetImportFailed(Exception):
    """The file did not validate: `errors` (first 100, as dicts) and `total` say where and why."""

    def __init__(self, errors: list[dict], total: int):
        super().__init__(f"{total} problem(s) in the file")
        self.errors = errors
        self.total = total


def check_metadata(*, name: str, license: str, source: str, schema: str | None = None) -> None:
    """A dataset's compliance fields: a name, a license from the list, where the data comes from."""
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


def check_new_dataset(*, project: Project, name: str, license: str, source: str) -> None:
    """The compliance fields of the dataset an import creates, and a name free in the project."""
    check_metadata(name=name, license=license, source=source)
    if Dataset.objects.filter(project=project, name=name.strip()).exists():
        raise ValidationError(
            {"name": f"A dataset named {name.strip()!r} already exists in this project"}
        )


def validate_file(
    upload_path: Path,
    filename: str,
    *,
    out_dir: Path,
    mapping: dict[str, Any] | None,
    fmt: str | None,
    encoding: str | None,
    validation_fraction: float,
    seed: int,
    limits,
    progress=None,
) -> ImportResult:
    """The file as canonical rows in `out_dir`, or DatasetImportFailed saying what is wrong.
    `progress(bytes_read, total_bytes)`: see import_file (an exception from it stops the import)."""
    from workers.data.canonical import Mapping
    from workers.data.errors import DatasetInvalid
    from workers.data.importer import import_file

    try:
        return import_file(
            upload_path,
            filename,
            out_dir=out_dir,
            mapping=Mapping.from_dict(mapping) if mapping else None,
            fmt=fmt,
            encoding=encoding,
            validation_fraction=validation_fraction,
            seed=seed,
            progress=progress,
            **({"limits": limits} if limits is not None else {}),
        )
    except DatasetInvalid as exc:
        raise DatasetImportFailed(exc.to_list(), exc.total) from None


def version_with_content(dataset: Dataset, result: ImportResult) -> DatasetVersion | None:
    """The dataset's version that already holds this content; a file of another schema fails."""
    if result.schema != dataset.schema:
        raise DatasetImportFailed(
            [
                {
                    "message": f"this file maps to {result.schema!r} records but the dataset holds {dataset.schema!r}"
                }
            ],
            1,
        )
    return dataset.versions.filter(sha256=result.sha256).first()
