from __future__ import annotations

import json
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from apps.datasets.models import DatasetVersion
from apps.finetunes.schemas import to_config
from apps.jobs import registry
from apps.jobs import services as job_services
from apps.models.models import Adapter, AdapterKind, BaseModel
from apps.models.selectors import text_models
from apps.projects.selectors import project_access

# Fields the form shows in its own widgets (selects, textarea); the rest come from the schema.
OWN_WIDGETS = ("base_model_id", "dataset_version_id", "name", "template", "target_modules")
# The adapter selects of the DPO (start from) and GRPO (reward model) forms.
ADAPTER_WIDGETS = ("parent_adapter_id", "reward_adapter_id")


@dataclass(frozen=True)
class Method:
    """One way to train an adapter, as the fine-tune page offers it (?method=<key>)."""

    key: str
    kind: str
    schemas: tuple[str, ...]
    # Schema fields that mean nothing to this method (left at their defaults, not shown).
    hidden: tuple[str, ...] = ()


METHODS = {
    m.key: m
    for m in (
        Method("sft", "finetune.lora", ("qa", "instruction", "chat")),
        Method("dpo", "finetune.dpo", ("preference",), hidden=("loss_on",)),
        Method("reward", "finetune.reward", ("preference",), hidden=("loss_on",)),
        Method("grpo", "finetune.policy", ("preference", "qa", "instruction"), hidden=("loss_on",)),
    )
}


def _method(value: str | None) -> Method:
    return METHODS.get(value or "", METHODS["sft"])


def _versions(project, schemas: tuple[str, ...] = ("qa", "instruction", "chat")):
    return list(
        DatasetVersion.objects.filter(dataset__project=project, dataset__schema__in=schemas)
        .select_related("dataset")
        .order_by("dataset__name", "-number")
    )


def _adapters(project, kinds: tuple[str, ...]) -> list[Adapter]:
    return list(
        Adapter.objects.filter(project=project, kind__in=kinds).select_related("base_model")
    )


@login_required
@require_http_methods(["GET", "POST"])
def new_finetune(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    method = _method(request.POST.get("method") or request.GET.get("method"))
    kind = registry.get(method.kind)
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
    skip = OWN_WIDGETS + ADAPTER_WIDGETS + method.hidden
    fields = [f for f in registry.form_fields(kind) if f["name"] not in skip]
    return render(
        request,
        "finetunes/new.html",
        {
            "project": access.project,
            "membership": access,
            "method": method.key,
            "methods": list(METHODS),
            "models": text_models(access.project.pk),
            "versions": _versions(access.project, method.schemas),
            "parents": _adapters(access.project, (AdapterKind.SFT, AdapterKind.DPO))
            if method.key == "dpo"
            else [],
            "reward_models": _adapters(access.project, (AdapterKind.REWARD,))
            if method.key == "grpo"
            else [],
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
    access = project_access(user=request.user, project_id=project_id, need="launch_job")
    try:
        body = json.loads(request.body or b"{}")
        kind = registry.get(_method(str(body.pop("method", ""))).kind)
        # What the estimate does not depend on: the data and the adapters named.
        params = kind.params.model_validate(
            {**body, "dataset_version_id": 1}
            | ({"reward_adapter_id": 1} if "reward_adapter_id" in kind.params.model_fields else {})
        )
    except Exception as exc:
        return JsonResponse(
            {"error": (gettext("Invalid settings: %(error)s") % {"error": exc})[:500]}, status=400
        )
    base = (
        BaseModel.objects.filter(pk=params.base_model_id, kind="text")
        .usable_by(access.project.pk)
        .first()
    )
    if base is None:
        return JsonResponse({"error": gettext("No such model")}, status=404)
    if not base.is_ready:
        return JsonResponse(
            {
                "pending": gettext(
                    "%(model)s is prepared on first use; the estimate appears after that."
                )
                % {"model": base.name}
            }
        )
    from workers.ml.finetune import estimate_memory

    return JsonResponse({"estimate": estimate_memory(base.path, to_config(params))})
