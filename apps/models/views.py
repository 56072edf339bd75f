from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.jobs import services as job_services
from apps.models import selectors
from apps.projects.selectors import project_access


@login_required
def model_list(request: HttpRequest, project_id: int) -> HttpResponse:
    """Base models (platform-wide) and this project's adapters."""
    access = project_access(user=request.user, project_id=project_id)
    return render(
        request,
        "models/model_list.html",
        {
            "project": access.project,
            "membership": access,
            "models": selectors.text_models(access.project.pk),
            "image_models": selectors.image_models(access.project.pk),
            "image_assets": selectors.image_assets(),
            "adapters": selectors.project_adapters(access=access),
            "can_launch": access.can("launch_job"),
        },
    )


def _metric(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "—" if value is None else str(value)


@login_required
def adapter_detail(request: HttpRequest, project_id: int, adapter_id: int) -> HttpResponse:
    """One adapter and what it was trained from: base, dataset versions, parent and children,
    reviewers' decisions, the job."""
    access, adapter = selectors.adapter_access(
        user=request.user, project_id=project_id, adapter_id=adapter_id
    )
    return render(
        request,
        "models/adapter_detail.html",
        {
            "project": access.project,
            "membership": access,
            "adapter": adapter,
            "lineage": selectors.adapter_lineage(adapter=adapter),
            "metrics": [(k, _metric(v)) for k, v in sorted((adapter.metrics or {}).items())],
            "can_launch": access.can("launch_job"),
        },
    )


def _media_file(rel: str) -> Path:
    path = (Path(settings.MEDIA_ROOT) / rel).resolve()
    if Path(settings.MEDIA_ROOT).resolve() not in path.parents or not path.is_file():
        raise Http404("This file is not available")
    return path


@login_required
def adapter_download(request: HttpRequest, project_id: int, adapter_id: int, what: str):
    _, adapter = selectors.adapter_access(
        user=request.user, project_id=project_id, adapter_id=adapter_id
    )
    base = Path(adapter.storage_path).parent
    if what == "adapter":
        path, name = _media_file(str(base / "adapter.zip")), f"adapter-{adapter.pk}.zip"
    elif what == "merged" and adapter.merged_path:
        path, name = _media_file(adapter.merged_path + ".zip"), f"merged-model-{adapter.pk}.zip"
    else:
        raise Http404("Nothing to download")
    return FileResponse(
        open(path, "rb"), as_attachment=True, filename=name, content_type="application/zip"
    )


@login_required
@require_POST
def adapter_merge(request: HttpRequest, project_id: int, adapter_id: int) -> HttpResponse:
    access, adapter = selectors.adapter_access(
        user=request.user, project_id=project_id, adapter_id=adapter_id, need="launch_job"
    )
    try:
        job = job_services.job_create(
            project=access.project,
            kind="adapter.merge",
            params={"adapter_id": adapter.pk},
            created_by=request.user,
            request=request,
        )
    except job_services.JobParamsError as exc:
        messages.error(request, f"Cannot merge: {exc}")
        return redirect("models:list", access.project.pk)
    return redirect(job)
