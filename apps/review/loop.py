"""The preference loop of a project, read live from the database: text outputs generated, flagged
by the rules, decided by reviewers, exported as preference versions, trained on (DPO), compared.

Every count is a query at request time (nothing cached), so deciding an output moves the page
on its next load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from apps.datasets.models import DatasetVersion, Schema
from apps.models.models import Adapter, AdapterKind
from apps.outputs.models import Moderation, Output
from apps.outputs.selectors import visible_outputs
from apps.projects.selectors import ProjectAccess
from apps.review.exports import FILENAME, preference_pairs, review_summary
from apps.review.models import ReviewDecision

VERSION_LIMIT = 50
ADAPTER_LIMIT = 50
DEFAULT_DATASET_NAME = "reviewed-preferences"


@dataclass
class OutputCounts:
    generated: int = 0
    flagged: int = 0  # ever flagged by the rules: awaiting review or decided
    pending: int = 0
    approved: int = 0
    rejected: int = 0


@dataclass
class PreferenceVersion:
    version: DatasetVersion
    review: dict[str, Any] | None
    adapters: list[Adapter] = field(default_factory=list)
    from_review: bool = False  # made by the preference export (not an uploaded file)
    dpo_url: str = ""


@dataclass
class AdapterRow:
    adapter: Adapter
    versions: list[int]  # the dataset version ids it was trained on
    review: dict[str, Any] | None
    compare_url: str = ""
    lineage_url: str = ""


@dataclass
class LoopState:
    counts: OutputCounts
    decisions_total: int
    decisions_since_export: int
    last_export: DatasetVersion | None
    pairs_now: int
    export_up_to_date: bool  # exporting now would give the last export back
    versions: list[PreferenceVersion]
    adapters: list[AdapterRow]
    dataset_name: str

    @property
    def preference_adapters(self) -> list[AdapterRow]:
        """Adapters trained on a preference version (the DPO step of the loop)."""
        return [row for row in self.adapters if row.adapter.kind == AdapterKind.DPO]


def output_counts(*, project) -> OutputCounts:
    """Text outputs by moderation state, in one query. An output is decided only from
    `flagged`, so every output not `clean` was flagged by the rules."""
    found = Output.objects.filter(project=project, kind="text").aggregate(
        generated=Count("id"),
        flagged=Count("id", filter=~Q(moderation=Moderation.CLEAN)),
        pending=Count("id", filter=Q(moderation=Moderation.FLAGGED)),
        approved=Count("id", filter=Q(moderation=Moderation.APPROVED)),
        rejected=Count("id", filter=Q(moderation=Moderation.REJECTED)),
    )
    return OutputCounts(**{k: v or 0 for k, v in found.items()})


def _review_of(version: DatasetVersion) -> dict[str, Any] | None:
    review = (version.operation_params or {}).get("review")
    return review if isinstance(review, dict) else None


def _cutoff(version: DatasetVersion) -> datetime:
    """Decisions after this moment are not in `version`: its newest decision, or its creation
    (an export made before versions recorded their decisions)."""
    review = _review_of(version) or {}
    until = review.get("decided_until")
    parsed = parse_datetime(until) if isinstance(until, str) else None
    return parsed or version.created_at


def _trained_on(adapter: Adapter) -> list[int]:
    ids = [adapter.dataset_version_id] if adapter.dataset_version_id else []
    for entry in (adapter.lineage or {}).get("dataset_versions") or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), int) and entry["id"] not in ids:
            ids.append(entry["id"])
    return ids


def adapter_review(adapter: Adapter) -> dict[str, Any] | None:
    """The reviewers' decisions an adapter learnt from: its lineage's, else its dataset
    version's (adapters published before lineage was recorded)."""
    review = (adapter.lineage or {}).get("review")
    if isinstance(review, dict):
        return review
    return _review_of(adapter.dataset_version) if adapter.dataset_version else None


def playground_url(project_id: int, adapter_ids: list[int], prompt: str = "") -> str:
    """The playground with these adapters preselected (in this order) and the prompt filled in."""
    query: dict[str, str] = {"adapters": ",".join(str(i) for i in adapter_ids)}
    if prompt:
        query["prompt"] = prompt
    return reverse("playground:index", args=[project_id]) + "?" + urlencode(query)


def _compare_prompts(*, access: ProjectAccess, user, rows: list[AdapterRow]) -> dict[int, str]:
    """For each adapter row, a prompt it was trained on that this viewer may read: the newest
    approved output among its decisions (one query for all rows)."""
    wanted = {i for row in rows if row.review for i in row.review.get("outputs") or []}
    if not wanted:
        return {}
    prompts = dict(
        visible_outputs(access=access, user=user)
        .filter(pk__in=wanted, moderation=Moderation.APPROVED)
        .values_list("pk", "prompt")
    )
    found: dict[int, str] = {}
    for row in rows:
        ids = [i for i in (row.review or {}).get("outputs") or [] if i in prompts]
        if ids:
            found[row.adapter.pk] = (prompts[max(ids)] or "").strip()
    return found


def loop_state(*, access: ProjectAccess, user) -> LoopState:
    """The loop of `access.project` as the page shows it."""
    project = access.project
    counts = output_counts(project=project)
    versions = list(
        DatasetVersion.objects.filter(dataset__project=project, dataset__schema=Schema.PREFERENCE)
        .select_related("dataset", "created_by")
        # Newest first across datasets: the loop reads as a history.
        .order_by("-created_at", "-id")[:VERSION_LIMIT]
    )
    exports = [v for v in versions if _review_of(v) or v.source_filename == FILENAME]
    last_export = exports[0] if exports else None
    decisions = ReviewDecision.objects.filter(project=project, output__kind="text")
    decisions_total = decisions.count()
    since = (
        decisions.filter(decided_at__gt=_cutoff(last_export)).count()
        if last_export is not None
        else decisions_total
    )
    pairs = preference_pairs(project=project)
    last_review = _review_of(last_export) if last_export is not None else None
    up_to_date = bool(
        pairs
        and last_review is not None
        and sorted(last_review.get("outputs") or []) == review_summary(pairs)["outputs"]
    )

    adapters = list(
        Adapter.objects.filter(project=project)
        .select_related("base_model", "dataset_version__dataset", "parent", "job")
        .order_by("-created_at", "-id")[:ADAPTER_LIMIT]
    )
    rows = [
        AdapterRow(
            adapter=a,
            versions=_trained_on(a),
            review=adapter_review(a),
            lineage_url=reverse("models:adapter", args=[project.pk, a.pk]),
        )
        for a in adapters
    ]
    prompts = _compare_prompts(access=access, user=user, rows=rows)
    for row in rows:
        a = row.adapter
        if a.kind == AdapterKind.REWARD:
            continue  # a reward model scores texts, it does not write them
        parent = a.parent
        old = [parent.pk] if parent is not None and parent.kind != AdapterKind.REWARD else []
        row.compare_url = playground_url(project.pk, [*old, a.pk], prompts.get(a.pk, ""))

    by_version: dict[int, list[Adapter]] = {}
    for row in rows:
        for version_id in row.versions:
            by_version.setdefault(version_id, []).append(row.adapter)
    finetune = reverse("finetunes:new", args=[project.pk])
    shown = [
        PreferenceVersion(
            version=v,
            review=_review_of(v),
            adapters=by_version.get(v.pk, []),
            from_review=v in exports,
            dpo_url=finetune + "?" + urlencode({"method": "dpo", "version": v.pk}),
        )
        for v in versions
    ]
    return LoopState(
        counts=counts,
        decisions_total=decisions_total,
        decisions_since_export=since,
        last_export=last_export,
        pairs_now=len(pairs),
        export_up_to_date=up_to_date,
        versions=shown,
        adapters=rows,
        dataset_name=last_export.dataset.name if last_export else DEFAULT_DATASET_NAME,
    )
