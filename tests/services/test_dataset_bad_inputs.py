"""The bad-input catalogue through the import service: a specific error, and the database row
counts and the media folder exactly as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.audit.models import AuditEvent
from apps.datasets import services
from apps.datasets.models import Dataset, DatasetVersion
from apps.jobs.models import Job
from tests.data.test_import_bad_inputs import CASES, Bad, message_matches


def media_listing() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def row_counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (Dataset, DatasetVersion, Job, AuditEvent)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_upload_is_refused_with_its_error_and_changes_nothing(
    db, project, member, tmp_path, case: Bad
):
    path = case.build(tmp_path)
    kwargs = dict(case.kwargs)
    if "mapping" in kwargs:
        kwargs["mapping"] = kwargs["mapping"].to_dict()
    before = (row_counts(), media_listing())

    with pytest.raises(services.DatasetImportFailed) as caught:
        services.dataset_import(
            project=project,
            actor=member,
            upload_path=path,
            filename=path.name,
            name="Upload",
            license="CC-BY-4.0",
            source="tests",
            **kwargs,
        )

    first = caught.value.errors[0]
    assert message_matches(case.message, first["message"]), f"{case.id}: {caught.value.errors[:3]}"
    assert (row_counts(), media_listing()) == before
    staging = Path(settings.VAR_DIR) / "staging"
    assert not staging.exists() or not any(staging.iterdir()), "the staging folder was not cleaned"
