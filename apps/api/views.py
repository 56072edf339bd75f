"""JSON API (session-authenticated for now). Same selectors as the HTML views: a stranger gets 404."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.jobs import events as job_events
from apps.jobs import registry as job_registry
from apps.jobs import selectors as job_selectors
from apps.jobs import services as job_services
from apps.jobs.states import IllegalTransition
from apps.outputs import selectors as output_selectors
from apps.projects import selectors as project_selectors
from apps.provenance import pages as provenance_pages


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


def _job_json(job, *, content: bool, result) -> dict:
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


def _jobs_json(jobs, *, access, user) -> list[dict]:
    """Jobs as this viewer may see them (the outputs' one visibility rule): result entries that
    name an output hidden from them withheld, prompts withheld while the job's generated content
    is (job_selectors.job_content_visible). Two queries at most for the whole list."""
    jobs = list(jobs)
    shown = job_registry.jobs_with_visible_content(access=access, user=user, jobs=jobs)
    results = output_selectors.results_for_viewer(access=access, user=user, jobs=jobs)
    return [_job_json(j, content=j.pk in shown, result=results[j.pk]) for j in jobs]


def _one_job_json(job, *, access, user) -> dict:
    return _jobs_json([job], access=access, user=user)[0]


@require_GET
@api_view
def projects(request):
    return JsonResponse(
        {
            "data": [
                {"id": m.project.pk, "name": m.project.name, "role": m.role}
                for m in project_selectors.memberships_for_user(user=request.user)
            ]
        }
    )


@require_http_methods(["GET", "POST"])
@api_view
def jobs(request, project_id: int):
    if request.method == "GET":
        access = project_selectors.project_access(user=request.user, project_id=project_id)
        jobs = job_selectors.project_jobs(access=access)
        return JsonResponse({"data": _jobs_json(jobs, access=access, user=request.user)})
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="launch_job"
    )
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError as exc:
        return _error(400, f"Body is not valid JSON: {exc}")
    if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
        return _error(400, 'Expected {"kind": "...", "params": {...}}')
    # Every registered kind can be launched through the API (the playground does); `launchable`
    # only says which kinds the dashboard offers. Each kind's check hook scopes its ids to the project.
    kind = job_registry.find(str(body.get("kind", "")))
    if kind is None:
        return _error(
            400, "Invalid job parameters", fields={"kind": f"Unknown job kind {body.get('kind')!r}"}
        )
    try:
        job = job_services.job_create(
            project=access.project,
            kind=kind.name,
            params=body.get("params", {}),
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        return _error(400, "Invalid job parameters", fields=exc.errors)
    return JsonResponse(_one_job_json(job, access=access, user=request.user), status=201)


@require_GET
@api_view
def job_detail(request, project_id: int, job_id: int):
    access, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    return JsonResponse(_one_job_json(job, access=access, user=request.user))


@require_GET
@api_view
def job_events_view(request, project_id: int, job_id: int):
    access, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    try:
        after = max(0, int(request.GET.get("after", 0)))
    except ValueError:
        return _error(400, "after must be an integer sequence number")
    events = job_services.job_events_after(job_id=job.pk, after=after)
    full = job_selectors.sees_full_events(access=access, user=request.user)
    content = job_selectors.job_content_visible(access=access, user=request.user, job=job)
    return JsonResponse(
        {
            "data": [
                job_selectors.event_for_viewer(e.as_message(), full=full, content=content)
                for e in events
            ],
            "last_seq": job.last_seq,
        }
    )


@require_GET
@api_view
def job_metrics_view(request, project_id: int, job_id: int):
    """Each metric as [step, value] points, one per step (a resumed attempt's newest value)."""
    _, job = job_selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    series = job_selectors.job_metric_series(job=job)
    return JsonResponse(
        {"data": {name: [list(p) for p in points] for name, points in series.items()}}
    )


@require_POST
@api_view
def job_cancel(request, project_id: int, job_id: int):
    access, job = job_selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="cancel_job"
    )
    if not job_services.job_cancel(job=job, actor=request.user, request=request):
        job.refresh_from_db(fields=["state"])
        return _error(409, f"Job {job.pk} is {job.state}: nothing to cancel")
    job.refresh_from_db()
    return JsonResponse(_one_job_json(job, access=access, user=request.user))


@require_POST
@api_view
def job_retry(request, project_id: int, job_id: int):
    access, job = job_selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="launch_job"
    )
    try:
        new_job = job_services.job_retry(job=job, actor=request.user, request=request)
    except IllegalTransition:
        return _error(
            409, f"Job {job.pk} is {job.state}: only failed or cancelled jobs can be retried"
        )
    except job_services.JobParamsError as exc:
        return _error(400, "The job's parameters no longer validate", fields=exc.errors)
    return JsonResponse(_one_job_json(new_job, access=access, user=request.user), status=201)


# --------------------------------------------------------------------------- datasets


def _version_json(v) -> dict:
    return {
        "id": v.pk,
        "dataset": v.dataset_id,
        "number": v.number,
        "sha256": v.sha256,
        "parent": v.parent.number if v.parent_id else None,
        "operation": v.operation,
        "rows": v.rows,
        "size_bytes": v.size_bytes,
        "source_format": v.source_format,
        "source_encoding": v.source_encoding,
        "mapping": v.mapping,
        "split_counts": v.split_counts,
        "stats": v.stats,
        "pii_report": v.pii_report,
        "approval": v.approval,
        "approval_comment": v.approval_comment,
        "created_at": v.created_at.isoformat(),
    }


def _dataset_json(d) -> dict:
    latest = d.latest_version
    return {
        "id": d.pk,
        "name": d.name,
        "description": d.description,
        "schema": d.schema,
        "license": d.license,
        "source": d.source,
        "created_at": d.created_at.isoformat(),
        "latest_version": _version_json(latest) if latest else None,
    }


def _dataset_submit_params(post) -> dict:
    """The import's mapping and split from the form fields (ValueError: what is wrong)."""
    try:
        mapping = json.loads(post["mapping"]) if post.get("mapping") else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"mapping is not valid JSON: {exc}") from None
    if mapping is not None and not isinstance(mapping, dict):
        raise ValueError('mapping must be a JSON object: {"schema": ..., "columns": {...}}')
    return {
        "mapping": mapping,
        "fmt": post.get("fmt") or None,
        "encoding": post.get("encoding") or None,
        "template": post.get("template", ""),
        "validation_fraction": float(post.get("validation_fraction") or 0),
        "seed": int(post.get("seed") or 0),
    }


@require_http_methods(["GET", "POST"])
@api_view
def datasets(request, project_id: int):
    """GET: the project's datasets. POST (multipart): file + name, license, source, optional
    description, mapping (JSON), fmt, encoding, template, validation_fraction, seed, dataset (id of
    an existing dataset for a new version).

    Every import is a job (kind dataset.import, cpu queue), whatever the file's size: the answer
    is 202 with the job (id, state, url) and a Location header to poll (GET .../jobs/<id>/). The
    job's result holds the version (version_id, dataset_id, version, rows, created) once it
    succeeded, or `errors` (each with message, row/line, column, path) and `total` when the file
    was refused; all or nothing either way. What can be told at once is a 400 without a job: a
    missing file, bad fields or parameters, a file that cannot be read at all (with its place)."""
    from django.core.exceptions import ValidationError

    from apps.datasets import selectors as dataset_selectors
    from apps.datasets import services as dataset_services
    from apps.datasets.models import Dataset
    from apps.datasets.storage import discard_upload

    if request.method == "GET":
        access = project_selectors.project_access(user=request.user, project_id=project_id)
        return JsonResponse(
            {"data": [_dataset_json(d) for d in Dataset.objects.filter(project=access.project)]}
        )
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="launch_job"
    )
    upload = request.FILES.get("file")
    if upload is None:
        return _error(400, "Send the data file as multipart field 'file'")
    target = None
    if request.POST.get("dataset"):
        if request.POST["dataset"].isdecimal():
            target = Dataset.objects.filter(
                project=access.project, pk=request.POST["dataset"]
            ).first()
        if target is None:
            return _error(404, "No such dataset")
    meta = {k: request.POST.get(k, "") for k in ("name", "description", "license", "source")} | {
        "dataset": target.pk if target else None
    }
    try:
        params = _dataset_submit_params(request.POST)
        if target is None:
            dataset_services.dataset_check_new(
                project=access.project,
                name=meta["name"],
                license=meta["license"],
                source=meta["source"],
            )
    except ValueError as exc:
        return _error(400, f"Bad parameter: {exc}")
    except ValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "message_dict") else {"__all__": exc.messages}
        return _error(400, "Invalid dataset fields", fields=fields)
    staged = dataset_services.upload_stage(
        uploaded_file=upload, user_id=request.user.pk, project_id=access.project.pk, meta=meta
    )
    _, unreadable = dataset_selectors.staged_sniff(
        staged, fmt=params["fmt"], encoding=params["encoding"]
    )
    if unreadable is not None:
        discard_upload(staged)
        return _error(400, "The file cannot be read; nothing was imported", errors=[unreadable])
    try:
        job = dataset_services.import_submit(
            project=access.project, actor=request.user, staged=staged, request=request, **params
        )
    except job_services.JobParamsError as exc:
        discard_upload(staged)
        return _error(400, "Invalid import parameters", fields=exc.errors)
    response = JsonResponse(_one_job_json(job, access=access, user=request.user), status=202)
    response["Location"] = reverse("api:job", args=[access.project.pk, job.pk])
    return response


@require_GET
@api_view
def dataset_version(request, project_id: int, dataset_id: int, number: int):
    from apps.datasets import selectors as dataset_selectors

    _, version = dataset_selectors.version_access(
        user=request.user, project_id=project_id, dataset_id=dataset_id, number=number
    )
    return JsonResponse(_version_json(version))


# --------------------------------------------------------------------------- provenance (public)


@require_GET
def verify(request, sha256: str):
    """Public, no authentication: whether a SHA-256 is recorded on chain, its proof, and a check
    of the proof against the chain now. Names no output, project or user (see
    apps/provenance/pages.py). 404 when this instance has no record of the hash."""
    sha = provenance_pages.normalize_sha256(sha256)
    if sha is None:
        return _error(400, "Not a SHA-256: expected 64 hexadecimal digits")
    lookup = provenance_pages.lookup(sha)
    if lookup.state == provenance_pages.UNKNOWN:
        return _error(404, "No record of this SHA-256 here", sha256=sha, state=lookup.state)
    return JsonResponse(lookup.as_json())
