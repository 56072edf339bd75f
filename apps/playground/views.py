from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from apps.jobs import registry
from apps.models.selectors import project_adapters, text_models
from apps.outputs.selectors import visible_outputs
from apps.projects.selectors import project_access


@login_required
def playground(request: HttpRequest, project_id: int) -> HttpResponse:
    """Prompt a base model and up to two adapters side by side; runs go through the jobs API and
    stream back over the job's websocket."""
    access = project_access(user=request.user, project_id=project_id)
    kind = registry.get("textgen")
    settings_fields = [
        f
        for f in registry.form_fields(kind)
        if f["name"]
        in (
            "max_new_tokens",
            "temperature",
            "top_p",
            "top_k",
            "repetition_penalty",
            "seed",
            "quantization",
        )
    ]
    return render(
        request,
        "playground/playground.html",
        {
            "project": access.project,
            "membership": access,
            "can_launch": access.can("launch_job"),
            "models": text_models(),
            "adapters": project_adapters(access=access),
            "settings_fields": settings_fields,
            "recent": visible_outputs(access=access, user=request.user)
            .filter(kind="text")
            .select_related("base_model", "adapter", "created_by")[:20],
            "jobs_api": reverse("api:jobs", kwargs={"project_id": access.project.pk}),
        },
    )
