"""The `data` of each event: ids, states, hashes, numbers and URLs, never content.

The callers (jobs, moderation, review, provenance) sit above this app, so the builders read
the rows they are given by attribute and import none of their models. A prompt, a generated
text or a reviewer's reason may be hidden from most of a project (a flagged output is seen only by
its author, reviewers and admins): nothing of the kind leaves here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.urls import NoReverseMatch, reverse

from webapp.public_url import absolute_url

ERROR_CHARS = 1000
SUMMARY_DEPTH = 3
SUMMARY_ITEMS = 50
_DROP = object()


def when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def path_to(name: str, fallback: str, **kwargs: Any) -> str:
    """The URL of a named route, or `fallback` when the route is not there (the API's routes are
    another app's, and may be renamed): absolute with ATELIER["PUBLIC_URL"] when the deployment
    names its address, else the site-relative path (a receiver cannot know our host)."""
    try:
        path = reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        path = fallback
    return absolute_url(path)


def result_summary(value: Any, depth: int = 0) -> Any:
    """A job result with only its numbers, booleans and nulls (ids, counts, metrics) kept, in
    the same shape: strings go (generated text, paths, URLs, file names), so does anything
    nested deeper than SUMMARY_DEPTH; lists keep their first SUMMARY_ITEMS items."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= SUMMARY_DEPTH:
        return _DROP
    if isinstance(value, dict):
        kept = {}
        for key, item in list(value.items())[:SUMMARY_ITEMS]:
            summary = result_summary(item, depth + 1)
            if summary is not _DROP:
                kept[str(key)] = summary
        return kept
    if isinstance(value, list | tuple):
        items = (result_summary(item, depth + 1) for item in value[:SUMMARY_ITEMS])
        return [item for item in items if item is not _DROP]
    return _DROP


def job_data(job: Any) -> dict[str, Any]:
    """A job that reached a final state (a Job row)."""
    summary = result_summary(job.result or {})
    fallback = f"/api/v1/projects/{job.project_id}/jobs/{job.pk}/"
    return {
        "job": {
            "id": job.pk,
            "kind": job.kind,
            "state": job.state,
            "attempt": job.attempt,
            "error": (job.error or "")[:ERROR_CHARS],
            "result": summary if isinstance(summary, dict) else {},
            "created_at": when(job.created_at),
            "finished_at": when(job.finished_at),
            "url": path_to("api:job", fallback, project_id=job.project_id, job_id=job.pk),
            "page_url": path_to(
                "jobs:detail",
                f"/projects/{job.project_id}/jobs/{job.pk}/",
                project_id=job.project_id,
                job_id=job.pk,
            ),
        }
    }


def output_data(output: Any, *, moderation: str | None = None) -> dict[str, Any]:
    """An output by its id, kind, hash and state (an Output row)."""
    return {
        "id": output.pk,
        "kind": output.kind,
        "sha256": output.sha256,
        "job_id": output.job_id,
        "moderation": moderation or output.moderation,
        "page_url": path_to(
            "galleries:output",
            f"/projects/{output.project_id}/gallery/{output.pk}/",
            project_id=output.project_id,
            output_id=output.pk,
        ),
    }


def flag_data(flag: Any, output: Any) -> dict[str, Any]:
    """output.flagged: the output and what the check said of it, without the matched spans
    (they quote the text)."""
    return {
        "output": output_data(output, moderation="flagged"),
        "flag": {
            "id": flag.pk,
            "door": flag.door,
            "severity": flag.severity,
            "categories": list(flag.categories or []),
            "ruleset_version": flag.ruleset_version,
        },
    }


def decision_data(decision: Any, output: Any) -> dict[str, Any]:
    """output.approved / output.rejected: the reviewer's decision, without its reason (free
    text that may quote the output)."""
    return {
        "output": output_data(output, moderation=decision.decision),
        "decision": {
            "id": decision.pk,
            "decision": decision.decision,
            "decided_by_id": decision.decided_by_id,
            "categories": list(decision.categories or []),
            "ruleset_version": decision.ruleset_version,
            "decided_at": when(decision.decided_at),
        },
    }


def batch_data(batch: Any, *, project_id: int) -> dict[str, Any]:
    """The anchor batch a provenance.confirmed event is about (an AnchorBatch row)."""
    return {
        "id": batch.pk,
        "chain_id": batch.chain_id,
        "contract": batch.contract,
        "root": batch.root,
        "tx_hash": batch.tx_hash,
        "block_number": batch.block_number,
        "confirmations": batch.confirmations,
        "final_at": when(batch.final_at),
        "page_url": path_to(
            "provenance:project",
            f"/projects/{project_id}/provenance/",
            project_id=project_id,
        ),
    }


def record_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"output_id": r["output_id"], "sha256": r["sha256"]} for r in records]
