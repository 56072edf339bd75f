"""JSON API (session-authenticated for now). Same selectors as the HTML views: a stranger gets 404."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.jobs import events as job_events
from apps.jobs import registry as job_registry
from apps.jobs import selectors as job_selectors
from apps.jobs import services as job_services
from apps.jobs.states import IllegalTransition
from apps.projects import selectors as project_selectors


def _error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": {"message": message, **extra}}, status=status)


def api_view(view):
    """Authentication and the selector's 404/403 as JSON errors."""

    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return _error(401, "Authentication required")
        try:
            return view(request, *args, **kwargs)
        except Http404 as exc:
            return _error(404, str(exc) or "Not found")
        except PermissionDenied as exc:
            return _error(403, str(exc) or "Forbidden")

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _job_json(job) -> dict:
    return {
        **job_events.job_snapshot(job),
        "queue": job.queue,
        "params": job.params,
        "result": job.result,
        "error": job.error,
        "eta_seconds": job.eta_seconds,
        "last_seq": job.last_seq,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "retry_of": job.retry_of_id,
    }


@require_GET
@api_view
def projects(request):
    return JsonResponse(
        {"data": [
            {"id": m.project.pk, "name": m.project.name, "role": m.role}
            for m in project_selectors.memberships_for_user(user=request.user)
        ]}
    )


@require_http_methods(["GET", "POST"])
@api_view
def jobs(request, project_id: int):
    if request.method == "GET":
        access = project_selectors.project_access(user=request.user, project_id=project_id)
        return JsonResponse({"data": [_job_json(j) for j in job_selectors.project_jobs(access=access)]})
    access = project_selectors.project_access(user=request.user, project_id=project_id, need="launch_job")
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError as exc:
        return _error(400, f"Body is not valid JSON: {exc}")
    if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
        return _error(400, 'Expected {"kind": "...", "params": {...}}')
    kind = job_registry.find(str(body.get("kind", "")))
    if kind is None or not kind.launchable:
        return _error(400, "Invalid job parameters", fields={"kind": f"Unknown job kind {body.get('kind')!r}"})
    try:
        job = job_services.job_create(
            project=access.project, kind=kind.name, params=body.get("params", {}),
            created_by=request.user, request=request,
        )
    except job_services.JobParamsError as exc:
        return _error(400, "Invalid job parameters", fields=exc.errors)
    return JsonResponse(_job_json(job), status=201)


@require_GET
@api_view
def job_detail(request, project_id: int, job_id: int):
    _, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    return JsonResponse(_job_json(job))


@require_GET
@api_view
def job_events_view(request, project_id: int, job_id: int):
    _, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    try:
        after = max(0, int(request.GET.get("after", 0)))
    except ValueError:
        return _error(400, "after must be an integer sequence number")
    events = job_services.job_events_after(job_id=job.pk, after=after)
    return JsonResponse({"data": [e.as_message() for e in events], "last_seq": job.last_seq})


@require_POST
@api_view
def job_cancel(request, project_id: int, job_id: int):
    _, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id, need="cancel_job")
    if not job_services.job_cancel(job=job, actor=request.user, request=request):
        job.refresh_from_db(fields=["state"])
        return _error(409, f"Job {job.pk} is {job.state}: nothing to cancel")
    job.refresh_from_db()
    return JsonResponse(_job_json(job))


@require_POST
@api_view
def job_retry(request, project_id: int, job_id: int):
    _, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id, need="launch_job")
    try:
        new_job = job_services.job_retry(job=job, actor=request.user, request=request)
    except IllegalTransition:
        return _error(409, f"Job {job.pk} is {job.state}: only failed or cancelled jobs can be retried")
    except job_services.JobParamsError as exc:
        return _error(400, "The job's parameters no longer validate", fields=exc.errors)
    return JsonResponse(_job_json(new_job), status=201)
