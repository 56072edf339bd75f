from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from apps.jobs import registry, selectors, services
from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.states import IllegalTransition
from apps.projects.first_steps import project_steps
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
    context["first_steps"] = project_steps(access.project)  # the dashboard's own guide
    return render(request, "projects/dashboard.html", context, status=400)


@login_required
def detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access, job = selectors.job_access(user=request.user, project_id=project_id, job_id=job_id)
    context = selectors.job_detail_context(access=access, user=request.user, job=job)
    # What the job made (outputs register it, with their one visibility rule).
    context.update(registry.page_extras(access=access, user=request.user, job=job))
    kind = registry.find(job.kind)
    context.update(
        progress_unit=kind.progress_unit,
        artifacts=job_artifacts(job=job, visible_outputs=context.get("outputs", [])),
        made=made_links(job),
    )
    return render(request, "jobs/job_detail.html", context)


@dataclass(frozen=True)
class Artifact:
    """One file a job reported, as its page lists it: what it is, and where to download it
    (empty when there is no download view for it or this viewer may not see it)."""

    name: str
    label: str
    size: int | None
    url: str = ""


IMAGE_NAME = re.compile(r"^([0-9a-f]{64})\.png$")


def job_artifacts(*, job: Job, visible_outputs) -> list[Artifact]:
    """The job's artifact events, one per file name (a retry reports its files again), each
    linked to the download view that checks the viewer's access to it. Images link only when
    they are among the outputs this viewer may see (the outputs' one visibility rule)."""
    reported: dict[str, dict] = {}
    events = JobEvent.objects.filter(job_id=job.pk, kind=EventKind.ARTIFACT).order_by("seq")
    for data in events.values_list("data", flat=True):
        if isinstance(data, dict) and data.get("name"):
            reported[str(data["name"])] = data
    images = {o.sha256: o for o in visible_outputs}
    result = job.result if isinstance(job.result, dict) else {}
    found, image_number = [], 0
    for name, data in reported.items():
        size = data.get("size") if isinstance(data.get("size"), int) else None
        if IMAGE_NAME.match(name):
            image_number += 1
            label = gettext("Image %(number)s") % {"number": image_number}
            output = images.get(name.removesuffix(".png"))
            url = image_url(job, output) if output is not None else ""
            found.append(Artifact(name=name, label=label, size=size, url=url))
        else:
            label, url = file_role(job, name, result)
            found.append(Artifact(name=name, label=label, size=size, url=url))
    return found


def image_url(job: Job, output) -> str:
    ids = {"project_id": job.project_id, "output_id": output.pk, "which": "image"}
    return reverse("galleries:file", kwargs=ids) + "?download=1"


def file_role(job: Job, name: str, result: dict) -> tuple[str, str]:
    """(readable label, download URL or "") of a file a job reported by name. URLs are built by
    URL name: the apps that own these files sit above the job spine (pyproject's layers)."""
    adapter_id, asset_id = result.get("adapter_id"), result.get("asset_id")
    if name == "adapter.zip" and isinstance(adapter_id, int):
        args = [job.project_id, adapter_id, "adapter"]
        return gettext("Adapter (zip)"), reverse("models:adapter_download", args=args)
    if name == "merged-model.zip" and isinstance(adapter_id, int):
        args = [job.project_id, adapter_id, "merged"]
        return gettext("Merged model (zip)"), reverse("models:adapter_download", args=args)
    if name.endswith(".safetensors") and isinstance(asset_id, int):
        args = [job.project_id, asset_id]
        return gettext("Trained weights"), reverse("craft:image_asset_download", args=args)
    return name, ""


@dataclass(frozen=True)
class Made:
    label: str
    url: str


# Result keys of the jobs that make a dataset version: (its URL, its number). Import, redact
# and dedup runners (apps/datasets/runners.py) write them.
VERSION_KEYS = (("url", "version"), ("version_url", "version"), ("new_version_url", "new_version"))


def made_links(job: Job) -> list[Made]:
    """Links to what the job made that has a page of its own (a new dataset version)."""
    result = job.result if isinstance(job.result, dict) else {}
    links: list[Made] = []
    for url_key, number_key in VERSION_KEYS:
        url, number = result.get(url_key), result.get(number_key)
        # Only a path on this site: the result is data written by a worker, not markup.
        if isinstance(url, str) and url.startswith("/") and not url.startswith("//"):
            if isinstance(number, int) and all(m.url != url for m in links):
                label = gettext("Dataset version v%(number)s") % {"number": number}
                links.append(Made(label=label, url=url))
    return links


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
