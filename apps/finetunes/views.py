from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.datasets.models import DatasetVersion
from apps.finetunes.schemas import LoraParams, to_config
from apps.jobs import registry
from apps.jobs import services as job_services
from apps.models.models import BaseModel
from apps.models.selectors import text_models
from apps.projects.selectors import project_access

# Fields the form shows in its own widgets (selects, textarea); the rest come from the schema.
OWN_WIDGETS = ("base_model_id", "dataset_version_id", "name", "template", "target_modules")


def _versions(project):
    versions = list(
        DatasetVersion.objects.filter(
            dataset__project=project, dataset__schema__in=("qa", "instruction", "chat")
        )
        .select_related("dataset")
        .order_by("dataset__name", "-number")
    )
    return versions


@login_required
@require_http_methods(["GET", "POST"])
def new_finetune(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    kind = registry.get("finetune.lora")
    errors, values = {}, {}
    if request.method == "POST":
        values = registry.coerce_form(kind, request.POST)
        try:
            job = job_services.job_create(
                project=access.project,
                kind=kind.name,
                params=values,
                created_by=request.user,
                request=request,
            )
        except job_services.JobParamsError as exc:
            errors = exc.errors
        else:
            return redirect(job)
    fields = [f for f in registry.form_fields(kind) if f["name"] not in OWN_WIDGETS]
    return render(
        request,
        "finetunes/new.html",
        {
            "project": access.project,
            "membership": access,
            "models": text_models(),
            "versions": _versions(access.project),
            "fields": fields,
            "errors": errors,
            "values": values,
            "preselect_version": request.GET.get("version"),
        },
        status=400 if errors else 200,
    )


@login_required
@require_POST
def estimate(request: HttpRequest, project_id: int) -> JsonResponse:
    """Peak memory estimate for the form's current values (needs a prepared base model)."""
    project_access(user=request.user, project_id=project_id, need="launch_job")
    try:
        body = json.loads(request.body or b"{}")
        params = LoraParams.model_validate({**body, "dataset_version_id": 1})
    except Exception as exc:
        return JsonResponse({"error": f"Invalid settings: {exc}"[:500]}, status=400)
    base = BaseModel.objects.filter(pk=params.base_model_id, kind="text").first()
    if base is None:
        return JsonResponse({"error": "No such model"}, status=404)
    if not base.is_ready:
        return JsonResponse(
            {"pending": f"{base.name} is prepared on first use; the estimate appears after that."}
        )
    from workers.ml.finetune import estimate_memory

    return JsonResponse({"estimate": estimate_memory(base.path, to_config(params))})
