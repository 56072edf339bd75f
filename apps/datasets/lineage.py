"""Who made a version: its chain of parents, and everyone who imported or derived one of them.
The four eyes rule keeps all of them from deciding on the version."""

from __future__ import annotations

from django.db.models import Q

from apps.datasets.models import DatasetVersion

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
