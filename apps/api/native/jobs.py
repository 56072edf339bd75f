"""Jobs: list, create, get, events (paged by sequence), metrics, cancel, retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pydantic
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, MAX_ID, JobOut, JobPage, jobs_json, one_job_json
from apps.jobs import registry as job_registry
from apps.jobs import selectors as job_selectors
from apps.jobs import services as job_services
from apps.jobs.states import IllegalTransition
from apps.projects import selectors as project_selectors
from apps.projects.models import Role

router = Router(tags=["jobs"])
JOB = "/projects/{int:project_id}/jobs/{int:job_id}/"


class JobCreate(Schema):
    kind: str = Field(..., description="A job kind, e.g. finetune.lora, textgen, imagegen")
    params: dict[str, Any] = Field(default_factory=dict, description="The kind's parameters")


class JobList(Schema):
    limit: int = Field(50, ge=1, le=200)
    before: int | None = Field(
        None, ge=1, le=MAX_ID, description="Only jobs with a smaller id (paging)"
    )
    kind: str | None = None
    state: str | None = None


class EventPage(Schema):
    after: int = Field(0, ge=0, le=MAX_ID, description="Events with a sequence number above this")
    limit: int = Field(1000, ge=1, le=5000)


class EventOut(Schema):
    type: str
    seq: int
    kind: str = Field(..., description="state, progress, metrics, log, preview, artifact, …")
    data: Any
    ts: datetime | None


class EventsPage(Schema):
    data: list[EventOut]
    last_seq: int
    has_more: bool


class MetricsOut(Schema):
    data: dict[str, list[list[int | float]]] = Field(..., description="name -> [[step, value], …]")


@router.get("/projects/{int:project_id}/jobs/", url_name="jobs", response={200: JobPage, **ERRORS})
def list_jobs(request: HttpRequest, project_id: int, q: Query[JobList]):
    """The project's jobs, newest first. Page back with `before` = the last id you got."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    jobs = job_selectors.project_jobs(
        access=access, limit=q.limit + 1, before=q.before, kind=q.kind, state=q.state
    )
    more = len(jobs) > q.limit
    jobs = jobs[: q.limit]
    return {"data": jobs_json(jobs, access=access, user=request.user), "has_more": more}


@router.post("/projects/{int:project_id}/jobs/", url_name="jobs", response={201: JobOut, **ERRORS})
def create_job(request: HttpRequest, project_id: int, body: JobCreate):
    """Launch a job of any registered kind (201 with the job; its `url` is the live page)."""
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="launch_job"
    )
    kind = job_registry.find(body.kind)
    if kind is None:
        raise ApiError(
            400,
            f"Unknown job kind {body.kind!r}",
            param="kind",
            fields={"kind": f"Unknown job kind {body.kind!r}"},
        )
    job = job_services.job_create(
        project=access.project,
        kind=kind.name,
        params=body.params,
        created_by=request.user,
        request=request,
    )
    return Status(201, one_job_json(job, access=access, user=request.user))


@router.get(JOB, url_name="job", response={200: JobOut, **ERRORS})
def get_job(request: HttpRequest, project_id: int, job_id: int):
    access, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    return one_job_json(job, access=access, user=request.user)


@router.get(JOB + "events/", url_name="job_events", response={200: EventsPage, **ERRORS})
def job_events(request: HttpRequest, project_id: int, job_id: int, q: Query[EventPage]):
    """Events in order (progress, logs, metrics, streamed text). Page with `after` = the last
    `seq` you got; `has_more` says whether to ask again now."""
    access, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    events = job_services.job_events_after(job_id=job.pk, after=q.after, limit=q.limit + 1)
    more = len(events) > q.limit
    events = events[: q.limit]
    full = job_selectors.sees_full_events(access=access, user=request.user)
    content = job_selectors.job_content_visible(access=access, user=request.user, job=job)
    return {
        "data": [
            job_selectors.event_for_viewer(e.as_message(), full=full, content=content)
            for e in events
        ],
        "last_seq": job.last_seq,
        "has_more": more,
    }


@router.get(JOB + "metrics/", url_name="job_metrics", response={200: MetricsOut, **ERRORS})
def job_metrics(request: HttpRequest, project_id: int, job_id: int):
    """Each metric as [step, value] points, one per step (a resumed attempt's newest value)."""
    _, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    series = job_selectors.job_metric_series(job=job)
    return {"data": {name: [list(p) for p in points] for name, points in series.items()}}


@router.post(JOB + "cancel/", url_name="job_cancel", response={200: JobOut, **ERRORS})
def cancel_job(request: HttpRequest, project_id: int, job_id: int):
    access, job = job_selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="cancel_job"
    )
    if not job_services.job_cancel(job=job, actor=request.user, request=request):
        job.refresh_from_db(fields=["state"])
        raise ApiError(409, f"Job {job.pk} is {job.state}: nothing to cancel")
    job.refresh_from_db()
    return one_job_json(job, access=access, user=request.user)


class QueueMove(Schema):
    to: Literal["front", "up", "down"] = Field(
        ..., description="front: run it next of your queued jobs; up/down: one place"
    )


@router.post(
    JOB + "move/",
    url_name="job_queue_move",
    response={200: JobOut, **ERRORS},
    # The body is read after the access checks (a stranger gets 404 whatever they send), so it
    # is described here rather than parsed by ninja first.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": QueueMove.model_json_schema()}},
        }
    },
)
def move_job(request: HttpRequest, project_id: int, job_id: int):
    """Move one of your queued jobs in your own line (the image page's "Your queue"): your jobs
    on the same queue run in this order; other people's jobs keep their turns. A project admin
    may move anyone's job within its owner's line. Body: `{"to": "front" | "up" | "down"}`."""
    access, job = job_selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="launch_job"
    )
    # The body is read after the access checks: a stranger gets 404 whatever they send.
    try:
        body = QueueMove.model_validate_json(request.body or b"{}")
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(400, f"{param}: {first.get('msg', '')}", param=param) from None
    try:  # JobNotYours is a PermissionDenied: the API's 403
        job_services.job_queue_move(
            job=job, actor=request.user, to=body.to, as_admin=access.role == Role.ADMIN
        )
    except job_services.JobQueueMoveError as exc:
        raise ApiError(409, str(exc)) from None
    job.refresh_from_db()
    return one_job_json(job, access=access, user=request.user)


@router.post(JOB + "retry/", url_name="job_retry", response={201: JobOut, **ERRORS})
def retry_job(request: HttpRequest, project_id: int, job_id: int):
    access, job = job_selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="launch_job"
    )
    try:
        new_job = job_services.job_retry(job=job, actor=request.user, request=request)
    except IllegalTransition:
        raise ApiError(
            409, f"Job {job.pk} is {job.state}: only failed or cancelled jobs can be retried"
        ) from None
    except job_services.JobParamsError as exc:
        if isinstance(exc, job_services.JobQuotaExceeded):
            raise
        raise ApiError(
            400, "The job's parameters no longer validate", code="invalid_params", fields=exc.errors
        ) from None
    return Status(201, one_job_json(new_job, access=access, user=request.user))
