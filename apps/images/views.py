from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from apps.images.jobkinds import ImageParams
from apps.jobs import selectors as job_selectors
from apps.jobs import services as job_services
from apps.models.models import AssetKind, BaseModel
from apps.models.selectors import image_assets
from apps.outputs.selectors import visible_outputs
from apps.projects.models import Role
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

# The form fields a model may suggest values for, in its row's info["suggested"] (the digits
# demo: its sampler, CFG scale and a hi-res denoising that keeps the digit); info["native_size"]
# suggests the width and height. The form starts from the selected model's suggestions and
# images.js switches to another model's when the user picks it.
SUGGESTIBLE = (
    "sampler",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "hires_scale",
    "hires_upscaler",
    "hires_steps",
    "hires_denoise",
)


def model_suggestions(model: BaseModel) -> dict[str, Any]:
    """The form values ``model`` suggests (only known fields, plain values, known samplers)."""
    from workers.imaging.samplers import SAMPLER_NAMES

    info = model.info if isinstance(model.info, dict) else {}
    suggested = info.get("suggested")
    values: dict[str, Any] = {
        k: v
        for k, v in (suggested.items() if isinstance(suggested, dict) else ())
        if k in SUGGESTIBLE and isinstance(v, int | float | str) and not isinstance(v, bool)
    }
    if "sampler" in values and values["sampler"] not in SAMPLER_NAMES:
        del values["sampler"]  # a name the form's list cannot show
    native = info.get("native_size")
    if isinstance(native, int) and not isinstance(native, bool) and native > 0:
        values.setdefault("width", native)
        values.setdefault("height", native)
    return values


def _selected_model(models: list[BaseModel], reuse: dict) -> BaseModel | None:
    """The model the form starts with: the reused one when it is offered, else the first."""
    wanted = str(reuse.get("model_id", ""))
    return next((m for m in models if str(m.pk) == wanted), models[0] if models else None)


@login_required
def generate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The txt2img / img2img form; runs go through the jobs API and stream back over websockets."""
    from workers.imaging.samplers import SAMPLER_NAMES

    access = project_access(user=request.user, project_id=project_id)
    defaults = {
        name: f.default for name, f in ImageParams.model_fields.items() if not f.is_required()
    }
    models = list(BaseModel.objects.filter(kind="image", enabled=True).usable_by(access.project.pk))
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
    # The page's own defaults, for images.js to go back to when a model suggests nothing; the
    # form starts from the selected model's suggestions (small demo models draw well only at
    # their training size and with their own sampler).
    plain = {k: defaults[k] for k in SUGGESTIBLE if k in defaults}
    selected = _selected_model(models, reuse)
    if selected is not None:
        defaults.update(model_suggestions(selected))
    for m in models:  # read by images.js when the user picks another model
        m.suggested_json = json.dumps(model_suggestions(m))  # type: ignore[attr-defined]
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
            "plain_defaults_json": json.dumps(plain),
            "reuse": reuse,
            "jobs_api": reverse("api:jobs", kwargs={"project_id": access.project.pk}),
            "recent": visible_outputs(access=access, user=request.user)
            .filter(kind="image")
            .select_related("base_model", "created_by")[:12],
            **queue_context(access, request.user),
        },
    )


# The queue the image kinds run on: "Your queue" lists the member's jobs waiting there (every
# kind: fine-tunes share the gpu worker and the owner's order, see services.job_queue_move).
IMAGE_QUEUE = "gpu"


def queue_context(access, user) -> dict[str, Any]:
    """The member's own waiting jobs in their order, and how many of others' wait before them."""
    if not access.can("launch_job"):
        return {"queue": [], "queue_ahead": 0}
    return {
        "queue": job_selectors.member_queue(access=access, user=user, queue=IMAGE_QUEUE),
        "queue_ahead": job_selectors.others_queued_ahead(
            access=access, user=user, queue=IMAGE_QUEUE
        ),
        "can_cancel": access.can("cancel_job"),
    }


@login_required
@require_POST
def queue_move(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """Move one of the member's own queued jobs in their line ("to": front, up or down), then back
    to the page's queue; JSON ({"moved": bool} or {"error": ...}) for images.js."""
    access, job = job_selectors.job_access(
        user=request.user, project_id=project_id, job_id=job_id, need="launch_job"
    )
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        moved = job_services.job_queue_move(
            job=job,
            actor=request.user,
            to=request.POST.get("to", ""),
            as_admin=access.role == Role.ADMIN,
        )
    except job_services.JobNotYours as exc:
        if not wants_json:
            raise
        return JsonResponse({"error": str(exc)}, status=403)  # translated by the service
    except job_services.JobQueueMoveError:
        job.refresh_from_db(fields=["state"])
        if job.state == "queued":
            error = gettext("Choose where to move the job: front, up or down.")
            status = 400
        else:
            error = gettext("Job #%(id)s is no longer waiting: it cannot be moved.") % {
                "id": job.pk
            }
            status = 409
        if wants_json:
            return JsonResponse({"error": error}, status=status)
        messages.error(request, error)
        moved = False
    if wants_json:
        return JsonResponse({"moved": moved})
    return redirect(reverse("images:index", args=[project_id]) + "#im-queue")
