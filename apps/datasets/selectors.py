from __future__ import annotations

import json
from itertools import islice

from django.http import Http404

from apps.datasets import storage
from apps.datasets.models import Dataset, DatasetVersion
from apps.datasets.storage import media_path
from apps.projects.selectors import ProjectAccess, project_access

PAGE_SIZE = 20


def dataset_access(
    *, user, project_id: int, dataset_id: int, need: str = "view"
) -> tuple[ProjectAccess, Dataset]:
    access = project_access(user=user, project_id=project_id, need=need)
    dataset = Dataset.objects.filter(pk=dataset_id, project=access.project).first()
    if dataset is None:
        raise Http404("No such dataset")
    return access, dataset


def upload_target(*, access: ProjectAccess, dataset_id: str | None) -> Dataset | None:
    """The dataset an upload adds a version to (None: a new dataset); 404 for any other id."""
    if not dataset_id:
        return None
    # A junk id (not digits) names no dataset: a 404, not the ORM's ValueError.
    target = None
    if dataset_id.isdecimal():
        target = Dataset.objects.filter(project=access.project, pk=dataset_id).first()
    if target is None:
        raise Http404("No such dataset")
    return target


def staged_upload(
    *, access: ProjectAccess, user, token: str
) -> tuple[storage.StagedUpload, dict, Dataset | None]:
    """The user's own staged upload in this project, its first step's fields and its dataset."""
    staged = storage.load_upload(token, user_id=user.pk, project_id=access.project.pk)
    if staged is None:
        raise Http404("This upload has expired or is not yours; upload the file again")
    meta = json.loads((staged.path / "form.json").read_text())
    target = (
        Dataset.objects.filter(project=access.project, pk=meta.get("dataset")).first()
        if meta.get("dataset")
        else None
    )
    return staged, meta, target


def staged_sniff(staged: storage.StagedUpload):
    """(format, encoding and suggested mapping, None) or (None, why the file cannot be read)."""
    from workers.data.errors import DatasetError, DatasetInvalid
    from workers.data.formats import sniff

    try:
        return sniff(staged.file, staged.filename), None
    except (DatasetError, DatasetInvalid) as exc:
        return None, str(exc)


def version_access(
    *, user, project_id: int, dataset_id: int, number: int, need: str = "view"
) -> tuple[ProjectAccess, DatasetVersion]:
    access, dataset = dataset_access(
        user=user, project_id=project_id, dataset_id=dataset_id, need=need
    )
    version = (
        DatasetVersion.objects.select_related("dataset", "parent", "created_by", "decided_by")
        .filter(dataset=dataset, number=number)
        .first()
    )
    if version is None:
        raise Http404("No such version")
    return access, version


def project_datasets(*, access: ProjectAccess) -> list[Dataset]:
    datasets = list(Dataset.objects.filter(project=access.project).select_related("created_by"))
    latest: dict[int, DatasetVersion] = {}
    for v in DatasetVersion.objects.filter(dataset__in=datasets).order_by("dataset_id", "-number"):
        latest.setdefault(v.dataset_id, v)
    for d in datasets:
        d.latest = latest.get(d.pk)  # type: ignore[attr-defined]  # a display-only attribute
    return datasets


def version_rows(
    version: DatasetVersion, *, page: int = 1, page_size: int = PAGE_SIZE
) -> list[tuple[int, dict]]:
    """One page of rows (1-based row numbers), read by streaming the version's JSONL file."""
    start = max(0, (page - 1) * page_size)
    with open(media_path(version.storage_path), encoding="utf-8") as f:
        return [
            (start + i + 1, json.loads(line))
            for i, line in enumerate(islice(f, start, start + page_size))
        ]


def lineage(version: DatasetVersion) -> list[DatasetVersion]:
    """The version and its ancestors, oldest first."""
    chain, seen = [], set()
    node: DatasetVersion | None = version
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = node.parent
    return list(reversed(chain))


def moderation_summary(version: DatasetVersion, *, page_size: int = PAGE_SIZE) -> dict | None:
    """The version's moderation report for its page: categories by count, and each example
    with the page of rows it is on (None: the rows were never scanned)."""
    report = version.moderation_report
    if not isinstance(report, dict):
        return None
    by_category = sorted(
        (report.get("by_category") or {}).items(), key=lambda item: (-item[1], item[0])
    )
    examples = [
        {**example, "page": (int(example.get("row") or 1) - 1) // page_size + 1}
        for example in report.get("examples") or []
    ]
    return {**report, "categories": by_category, "examples": examples}
