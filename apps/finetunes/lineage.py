"""What an adapter was trained from, recorded once when it is published (Adapter.lineage).

    {"base_model": {"id", "name"},
     "dataset_versions": [{"id", "dataset", "number", "sha256", "rows", "schema"}],
     "parent": {"id", "name", "kind"} | None,
     "review": {"outputs": [ids], "approved": n, "rejected": n, "decided_until": iso} | None,
     "job": id}

`review` is present when a dataset version came from reviewers' decisions (the preference export
keeps them in the version's operation_params["review"]). The same dict goes into the model card.
"""

from __future__ import annotations

from typing import Any


def version_entry(version) -> dict[str, Any]:
    return {
        "id": version.pk,
        "dataset": version.dataset.name,
        "number": version.number,
        "sha256": version.sha256,
        "rows": version.rows,
        "schema": version.dataset.schema,
    }


def build_lineage(*, base, versions, parent=None, job_id: int | None) -> dict[str, Any]:
    """The lineage dict of a new adapter (see the module doc)."""
    review = None
    for version in versions:
        found = (version.operation_params or {}).get("review")
        if isinstance(found, dict):
            review = found
    return {
        "base_model": {"id": base.pk, "name": base.name},
        "dataset_versions": [version_entry(v) for v in versions],
        "parent": (
            {"id": parent.pk, "name": parent.name, "kind": parent.kind}
            if parent is not None
            else None
        ),
        "review": review,
        "job": job_id,
    }
