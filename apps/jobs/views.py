from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.jobs import registry, selectors, services
from apps.jobs.states import IllegalTransition
from apps.projects.selectors import project_access


@login_required
@require_POST
def launch(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    kind_name = request.POST.get("kind", "")
    kind = registry.find(kind_name)
    if kind is None or not kind.launchable:
        errors = {"__all__": f"Unknown job kind {kind_name!r}"}
        raw = {}
    else:
        raw = registry.coerce_form(kind, request.POST)
        try:
            job = services.job_create(
                project=access.project,
                kind=kind.name,
                params=raw,
                created_by=request.user,
                request=request,
            )
        except services.JobParamsError as exc:
            errors = exc.errors
        else:
            return redirect(job)
    context = selectors.dashboard_context(
        access=access, launch_errors=errors, launch_kind=kind_name, launch_values=raw
    )
    return render(request, "projects/dashboard.html", context, status=400)


@login_required
def detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access, job = selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    context = selectors.job_detail_context(access=access, user=request.user, job=job)
    # What the job made (outputs register it, with their one visibility rule).
    context.update(registry.page_extras(access=access, user=request.user, job=job))
    return render(request, "jobs/job_detail.html", context)


@login_required
@require_POST
def cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    _, job = selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="cancel_job"
    )
    if services.job_cancel(job=job, actor=request.user, request=request):
        messages.success(request, f"Cancelling job {job.pk}")
    else:
        job.refresh_from_db(fields=["state"])
        messages.error(
            request, f"Job {job.pk} is {job.get_state_display().lower()}: nothing to cancel"
        )
    return redirect(job)


@login_required
@require_POST
def retry(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    _, job = selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="launch_job"
    )
    try:
        new_job = services.job_retry(job=job, actor=request.user, request=request)
    except IllegalTransition:
        messages.error(
            request, f"Job {job.pk} is {job.state}: only failed or cancelled jobs can be retried"
        )
        return redirect(job)
    except services.JobParamsError as exc:
        messages.error(request, f"Cannot retry: {exc}")
        return redirect(job)
    messages.success(request, f"Retrying job {job.pk} as job {new_job.pk}")
    return redirect(new_job)
