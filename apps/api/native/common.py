"""What the native API's resources share: the error shape and paging as the schema describes
them, and the job as JSON (as the viewer may see it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import QuerySet
from ninja import Field, Schema

from apps.api.errors import ApiError
from apps.jobs import events as job_events
from apps.jobs import registry as job_registry
from apps.jobs import selectors as job_selectors
from apps.outputs import selectors as output_selectors

T = TypeVar("T")
# The largest id a cursor may name: a bigger number names no row on any database.
MAX_ID = 2**63 - 1


class ErrorBody(Schema):
    code: str = Field(..., description="A stable machine word: not_found, invalid_request, …")
    message: str
    param: str | None = Field(..., description="The field the error is about, or null")
    type: str = Field(..., description="OpenAI's error class for the same case")
    fields: dict[str, Any] | None = Field(None, description="Every refused field's message")


class ErrorOut(Schema):
    error: ErrorBody


# Every operation documents its errors in this one shape (apps/api/errors.py makes them): a bad
# request or field, no or a bad token, a missing role, a stranger or missing object, a conflict
# (state), a body too large, too many requests.
ERRORS: dict[Any, Any] = {frozenset({400, 401, 403, 404, 409, 413, 429}): ErrorOut}


class PageQuery(Schema):
    """Paging by id: newest first; `before` = the last id you got (older items), or `after` = the
    newest id you have (newer items, oldest first, for polling). `has_more` says whether that
    direction has more."""

    limit: int = Field(50, ge=1, le=200, description="At most this many items")
    before: int | None = Field(None, ge=1, le=MAX_ID, description="Only items with a smaller id")
    after: int | None = Field(
        None, ge=0, le=MAX_ID, description="Only items with a larger id (oldest first)"
    )


def page(qs: QuerySet, q: PageQuery, *, key: str = "pk") -> tuple[list, bool]:
    """One page of `qs` by the integer `key` (see PageQuery), and whether there is more."""
    if q.before is not None and q.after is not None:
        raise ApiError(400, "Send `before` or `after`, not both", param="after")
    if q.after is not None:
        qs = qs.filter(**{f"{key}__gt": q.after}).order_by(key)
    else:
        if q.before is not None:
            qs = qs.filter(**{f"{key}__lt": q.before})
        qs = qs.order_by(f"-{key}")
    rows = list(qs[: q.limit + 1])
    return rows[: q.limit], len(rows) > q.limit


def _pk(item: Any) -> int:
    return item.pk


def page_list(
    items: Sequence[T], q: PageQuery, *, key: Callable[[T], int] = _pk
) -> tuple[list[T], bool]:
    """`page` for a list a selector already returns (small, platform- or project-wide lists)."""
    if q.before is not None and q.after is not None:
        raise ApiError(400, "Send `before` or `after`, not both", param="after")
    if q.after is not None:
        chosen = sorted((i for i in items if key(i) > q.after), key=key)
    else:
        chosen = sorted(
            (i for i in items if q.before is None or key(i) < q.before), key=key, reverse=True
        )
    return chosen[: q.limit], len(chosen) > q.limit


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def username(user) -> str:
    return user.get_username() if user is not None else ""


# --------------------------------------------------------------------------- jobs


class JobOut(Schema):
    id: int
    kind: str
    kind_label: str
    state: str = Field(..., description="queued, running, cancelling, succeeded, failed, cancelled")
    state_label: str
    progress: float = Field(..., description="0 to 1")
    attempt: int
    url: str = Field(..., description="The job's live page")
    created_at: datetime | None
    created_by: str
    queue: str
    params: dict[str, Any]
    params_withheld: list[str] = Field(
        ..., description="Prompt fields left out until the viewer may see the job's content"
    )
    result: Any = Field(
        None, description="The kind's result; entries naming a hidden output withheld"
    )
    error: str
    eta_seconds: float | None
    last_seq: int
    started_at: datetime | None
    finished_at: datetime | None
    retry_of: int | None


class JobPage(Schema):
    data: list[JobOut]
    has_more: bool


def job_json(job, *, content: bool, result) -> dict:
    params, withheld = job_selectors.params_for_viewer(job, content=content)
    return {
        **job_events.job_snapshot(job),
        "queue": job.queue,
        "params": params,
        # Prompt fields left out of params until this viewer may see the job's content.
        "params_withheld": withheld,
        "result": result,
        "error": job.error,
        "eta_seconds": job.eta_seconds,
        "last_seq": job.last_seq,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "retry_of": job.retry_of_id,
    }


def jobs_json(jobs, *, access, user) -> list[dict]:
    """Jobs as this viewer may see them (the outputs' one visibility rule): result entries that
    name an output hidden from them withheld, prompts withheld while the job's generated content
    is (job_selectors.job_content_visible). Two queries at most for the whole list."""
    jobs = list(jobs)
    shown = job_registry.jobs_with_visible_content(access=access, user=user, jobs=jobs)
    results = output_selectors.results_for_viewer(access=access, user=user, jobs=jobs)
    return [job_json(j, content=j.pk in shown, result=results[j.pk]) for j in jobs]


def one_job_json(job, *, access, user) -> dict:
    return jobs_json([job], access=access, user=user)[0]
