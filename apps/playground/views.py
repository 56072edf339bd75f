from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from apps.jobs import registry
from apps.models.models import Adapter, AdapterKind
from apps.models.selectors import project_adapters, text_models
from apps.outputs.selectors import visible_outputs
from apps.playground.prompts import trained_with_chat_template
from apps.projects.selectors import project_access

SLOTS = 2
PROMPT_MAX = 20000


def _wanted_ids(query) -> list[int]:
    """Adapter ids asked for in the query: ?adapters=3,5 (or repeated), or ?adapter=3."""
    ids: list[int] = []
    for value in [*query.getlist("adapters"), *query.getlist("adapter")][:10]:
        for part in value.split(",")[:10]:
            part = part.strip()
            if part.isdigit() and len(part) <= 18 and int(part) not in ids:
                ids.append(int(part))
    return ids


def preselection(query, adapters: list[Adapter]) -> dict:
    """What the form starts with: the asked-for adapters that are this project's (the list
    holds only those) and share the first one's base model, in order, and the prompt."""
    by_id = {a.pk: a for a in adapters}
    chosen = [by_id[i] for i in _wanted_ids(query) if i in by_id]
    if chosen:
        base = chosen[0].base_model_id
        chosen = [a for a in chosen if a.base_model_id == base][:SLOTS]
    return {
        "adapter_ids": [a.pk for a in chosen],
        "slots": [a.pk for a in chosen] + [None] * (SLOTS - len(chosen)),
        "base_model_id": chosen[0].base_model_id if chosen else None,
        "prompt": (query.get("prompt") or "")[:PROMPT_MAX],
    }


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
    # A reward model's adapter sits on a scoring head: it does not write text.
    adapters = [a for a in project_adapters(access=access) if a.kind != AdapterKind.REWARD]
    for a in adapters:  # the page defaults the chat-template toggle to what each learned from
        a.trained_on_chat = trained_with_chat_template(a.template)  # type: ignore[attr-defined]
    return render(
        request,
        "playground/playground.html",
        {
            "project": access.project,
            "membership": access,
            "can_launch": access.can("launch_job"),
            "models": text_models(access.project.pk),
            "adapters": adapters,
            "preselect": preselection(request.GET, adapters),
            "settings_fields": settings_fields,
            "recent": visible_outputs(access=access, user=request.user)
            .filter(kind="text")
            .select_related("base_model", "adapter", "created_by")[:20],
            "jobs_api": reverse("api:jobs", kwargs={"project_id": access.project.pk}),
        },
    )
