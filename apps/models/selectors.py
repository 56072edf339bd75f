from __future__ import annotations

from typing import Any

from django.http import Http404
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from apps.models.models import Adapter, BaseModel, ImageAsset
from apps.projects.selectors import ProjectAccess, project_access


def text_models(project_id: int | None = None) -> list[BaseModel]:
    """Enabled text models a project may use (the platform's and its own); None: every one."""
    found = BaseModel.objects.filter(kind="text", enabled=True)
    return list(found if project_id is None else found.usable_by(project_id))


def image_models(project_id: int | None = None) -> list[BaseModel]:
    found = BaseModel.objects.filter(kind="image", enabled=True)
    return list(found if project_id is None else found.usable_by(project_id))


def image_assets(kind: str | None = None, *, project_id: int | None = None) -> list[ImageAsset]:
    """Enabled assets: the platform's, and those `project_id` trained (None: the platform's
    and every project's, for the admins' models page)."""
    assets = ImageAsset.objects.filter(enabled=True)
    if project_id is not None:
        assets = assets.usable_by(project_id)
    return list(assets.filter(kind=kind) if kind else assets)


def project_adapters(*, access: ProjectAccess) -> list[Adapter]:
    return list(
        Adapter.objects.filter(project=access.project).select_related(
            "base_model", "dataset_version__dataset", "job", "created_by", "parent"
        )
    )


def adapter_access(
    *, user, project_id: int, adapter_id: int, need: str = "view"
) -> tuple[ProjectAccess, Adapter]:
    access = project_access(user=user, project_id=project_id, need=need)
    adapter = (
        Adapter.objects.select_related("base_model", "parent", "job", "dataset_version__dataset")
        .filter(pk=adapter_id, project=access.project)
        .first()
    )
    if adapter is None:
        raise Http404("No such adapter")
    return access, adapter


def _version_model():
    # The dataset version model, reached through the adapter's foreign key: the datasets app is
    # a sibling of this one (pyproject's import contract), so it is not imported here.
    return Adapter._meta.get_field("dataset_version").related_model


def _version_link(version) -> str:
    return reverse(
        "datasets:version", args=[version.dataset.project_id, version.dataset_id, version.number]
    )


def _when(value: Any):
    return parse_datetime(value) if isinstance(value, str) else None


def adapter_lineage(*, adapter: Adapter) -> dict[str, Any]:
    """What the adapter was trained from, for its page: Adapter.lineage (apps/finetunes/lineage.py)
    where it was recorded, completed from the row's own fields (adapters published before
    lineage was recorded have {}). Links only to rows of the adapter's own project."""
    recorded = adapter.lineage if isinstance(adapter.lineage, dict) else {}
    base = recorded.get("base_model") if isinstance(recorded.get("base_model"), dict) else None
    entries = [e for e in recorded.get("dataset_versions") or [] if isinstance(e, dict)]
    ids = [e["id"] for e in entries if isinstance(e.get("id"), int)]
    if adapter.dataset_version_id and adapter.dataset_version_id not in ids:
        ids.insert(0, adapter.dataset_version_id)
    rows = {
        v.pk: v
        for v in _version_model()
        .objects.filter(pk__in=ids, dataset__project_id=adapter.project_id)
        .select_related("dataset")
    }
    by_id = {e.get("id"): e for e in entries}
    versions = []
    for version_id in ids:
        row = rows.get(version_id)
        entry = by_id.get(version_id, {})
        versions.append(
            {
                "id": version_id,
                "label": f"{row.dataset.name} v{row.number}"
                if row
                else f"{entry.get('dataset', '?')} v{entry.get('number', '?')}",
                "sha256": row.sha256 if row else entry.get("sha256", ""),
                "rows": row.rows if row else entry.get("rows"),
                "schema": row.dataset.schema if row else entry.get("schema", ""),
                "url": _version_link(row) if row else "",
                "review": (row.operation_params or {}).get("review") if row else None,
            }
        )
    review = recorded.get("review")
    if not isinstance(review, dict):
        review = next((v["review"] for v in versions if isinstance(v["review"], dict)), None)
    parent = adapter.parent if adapter.parent_id else None
    if parent is not None and parent.project_id != adapter.project_id:
        parent = None
    recorded_parent = recorded.get("parent") if isinstance(recorded.get("parent"), dict) else None
    job = adapter.job if adapter.job_id else None
    return {
        "base_model": {
            "id": adapter.base_model_id,
            "name": adapter.base_model.name if adapter.base_model_id else (base or {}).get("name"),
        },
        "dataset_versions": versions,
        "parent": parent,
        "parent_recorded": recorded_parent if parent is None else None,
        "children": list(
            Adapter.objects.filter(parent=adapter, project_id=adapter.project_id).order_by("pk")
        ),
        "review": review,
        "review_outputs": [i for i in (review or {}).get("outputs") or [] if isinstance(i, int)],
        "review_until": _when((review or {}).get("decided_until")),
        "job": job,
        "job_id": adapter.job_id or recorded.get("job"),
        "recorded": bool(recorded),
    }
