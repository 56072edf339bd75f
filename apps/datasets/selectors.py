from __future__ import annotations

import json
from itertools import islice

from django.http import Http404

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
    latest = {}
    for v in DatasetVersion.objects.filter(dataset__in=datasets).order_by("dataset_id", "-number"):
        latest.setdefault(v.dataset_id, v)
    for d in datasets:
        d.latest = latest.get(d.pk)
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
    node = version
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = node.parent
    return list(reversed(chain))
