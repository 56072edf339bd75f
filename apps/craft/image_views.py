"""Pages of image model craft: the image LoRA and textual-inversion launch forms, and the
download of what a project trained."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from apps.craft.image_selectors import image_caption_versions, trained_asset_access, trained_assets
from apps.jobs import registry
from apps.jobs import services as job_services
from apps.models.selectors import image_models
from apps.projects.selectors import project_access

# Fields the forms show in their own widgets (selects, textarea); the rest come from the schema.
OWN_WIDGETS = ("base_model_id", "dataset_version_id", "name", "token", "sample_prompts")
# The schema fields each form groups under "What it learns" (the rest go under "Training").
METHOD_FIELDS = {
    "craft.image_lora": ("rank", "alpha", "trigger_word"),
    "craft.textual_inversion": ("initializer", "num_vectors"),
}
SAMPLE_FIELDS = ("sample_every", "sample_steps", "sample_cfg_scale")
TEMPLATES = {
    "craft.image_lora": "craft/image_lora.html",
    "craft.textual_inversion": "craft/image_embedding.html",
}


def _launch(request: HttpRequest, project_id: int, kind_name: str) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    kind = registry.get(kind_name)
    models = image_models(access.project.pk)
    errors: dict[str, str] = {}
    values: dict = {}
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
    elif models and models[0].info.get("native_size"):
        # Small demo models learn only at their training size: start the form there.
        values = {"resolution": models[0].info["native_size"]}
    fields = [f for f in registry.form_fields(kind) if f["name"] not in OWN_WIDGETS]
    method = METHOD_FIELDS[kind.name]
    return render(
        request,
        TEMPLATES[kind.name],
        {
            "project": access.project,
            "membership": access,
            "kind": kind,
            "models": models,
            "versions": image_caption_versions(access=access),
            "method_fields": [f for f in fields if f["name"] in method],
            "sample_fields": [f for f in fields if f["name"] in SAMPLE_FIELDS],
            "training_fields": [
                f for f in fields if f["name"] not in method and f["name"] not in SAMPLE_FIELDS
            ],
            "errors": errors,
            "values": values,
            "trained": trained_assets(access=access),
            "preselect_version": request.GET.get("version"),
        },
        status=400 if errors else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def image_lora_new(request: HttpRequest, project_id: int) -> HttpResponse:
    """Launch an image LoRA training job."""
    return _launch(request, project_id, "craft.image_lora")


@login_required
@require_http_methods(["GET", "POST"])
def image_embedding_new(request: HttpRequest, project_id: int) -> HttpResponse:
    """Launch a textual-inversion training job."""
    return _launch(request, project_id, "craft.textual_inversion")


@login_required
@require_GET
def image_asset_download(request: HttpRequest, project_id: int, asset_id: int) -> FileResponse:
    """The .safetensors file a project's job trained, for its members (plain diffusers loads it)."""
    _, asset = trained_asset_access(user=request.user, project_id=project_id, asset_id=asset_id)
    path = Path(asset.path)
    if not path.is_file():
        raise Http404("The trained file is no longer on the server")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"{asset.name}.safetensors",
        content_type="application/octet-stream",
    )
