from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from apps.images.jobkinds import ImageParams
from apps.models.models import AssetKind, BaseModel
from apps.models.selectors import image_assets
from apps.outputs.selectors import visible_outputs
from apps.projects.selectors import project_access

REUSABLE = (
    "prompt",
    "negative_prompt",
    "sampler",
    "steps",
    "cfg_scale",
    "seed",
    "width",
    "height",
    "batch_size",
    "denoising_strength",
    "hires",
    "hires_scale",
    "hires_upscaler",
    "hires_steps",
    "hires_denoise",
    "model_id",
    "controlnet_model_id",
    "control_preprocess",
    "control_weight",
    "canny_low",
    "canny_high",
)


@login_required
def generate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The txt2img / img2img form; runs go through the jobs API and stream back over websockets."""
    from workers.imaging.samplers import SAMPLER_NAMES

    access = project_access(user=request.user, project_id=project_id)
    defaults = {
        name: f.default for name, f in ImageParams.model_fields.items() if not f.is_required()
    }
    models = list(BaseModel.objects.filter(kind="image", enabled=True).usable_by(access.project.pk))
    # Small demo models draw well only at their training size: start the form there.
    native = models[0].info.get("native_size") if models else None
    if native:
        defaults.update(width=native, height=native)
    reuse: dict = {}
    if request.GET.get("reuse"):
        # A junk id (not digits) reuses nothing, like the id of an output the user cannot see.
        output = (
            visible_outputs(access=access, user=request.user)
            .filter(pk=request.GET["reuse"], kind="image")
            .first()
            if request.GET["reuse"].isdecimal()
            else None
        )
        if output is not None:
            reuse = {k: v for k, v in output.params.items() if k in REUSABLE}
            reuse["seed"] = output.seed if output.seed is not None else reuse.get("seed", -1)
    else:  # PNG info hands its fields over in the query string
        reuse = {k: v for k, v in request.GET.items() if k in REUSABLE}
    return render(
        request,
        "images/generate.html",
        {
            "project": access.project,
            "membership": access,
            "can_launch": access.can("launch_job"),
            "models": models,
            "samplers": SAMPLER_NAMES,
            "loras": image_assets(AssetKind.LORA, project_id=access.project.pk),
            "embeddings": image_assets(AssetKind.EMBEDDING, project_id=access.project.pk),
            "controlnets": image_assets(AssetKind.CONTROLNET, project_id=access.project.pk),
            "upscalers": image_assets(AssetKind.UPSCALER, project_id=access.project.pk),
            "defaults": defaults,
            "reuse": reuse,
            "jobs_api": reverse("api:jobs", kwargs={"project_id": access.project.pk}),
            "recent": visible_outputs(access=access, user=request.user)
            .filter(kind="image")
            .select_related("base_model", "created_by")[:12],
        },
    )
