"""Model ids of the OpenAI-compatible API, and the models they name within a token's project.

The `openai` client names a model by one string; Atelier has platform-wide base models and
per-project LoRA adapters. The ids:

- a base model (text or image): its built-in key for built-ins ("tiny-llama", "digits-demo",
  "tiny-sd", "smollm2-135m-instruct"), otherwise the slug of its name ("my-llama-3b"); a slug
  that another model already has gets "-<pk>" (built-ins keep their key, they are named first).
- a fine-tuned adapter: ``ft:<base id>:<suffix>:<job id>``, as OpenAI writes
  ``ft:gpt-4o-mini:org:suffix:abc123`` without the organisation: the project is the token's.
  The suffix is what the fine-tune was asked to be called (the `suffix` of
  POST /v1/fine_tuning/jobs, or the adapter name given on the page), made id-safe; it may be
  empty (``ft:tiny-llama::12``). An adapter whose job row is gone ends in ``adapter-<id>``.

`resolve_model(access, model_id)` turns an id into (BaseModel, Adapter | None); endpoints that
take a `model` (chat/completions, images, fine_tuning/jobs) call it so that every endpoint
accepts and refuses the same ids. The job id decides which adapter an ``ft:`` id names; the base
part must match, the suffix is only a label (renaming keeps old ids working).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.text import slugify

from apps.api.errors import ApiError
from apps.jobs.prepared import Prepared
from apps.models.models import Adapter, BaseModel, ModelSource
from apps.projects.selectors import ProjectAccess

__all__ = [
    "FtId",
    "ModelNotFound",
    "adapter_model_id",
    "base_ids",
    "base_model_id",
    "finetuned_model_id",
    "parse_ft_id",
    "project_models",
    "resolve_model",
    "suffix_of",
]

_SUFFIX_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SUFFIX_MAX = 64


class ModelNotFound(ApiError):
    """404 with OpenAI's words and code, on the `model` parameter (the client's NotFoundError)."""

    def __init__(self, model_id: str, param: str = "model"):
        super().__init__(
            404,
            f"The model `{model_id}` does not exist or you do not have access to it.",
            code="model_not_found",
            param=param,
        )


@dataclass(frozen=True)
class FtId:
    """The parts of an ``ft:`` id: exactly one of job_id / adapter_id is set."""

    base: str
    suffix: str
    job_id: int | None = None
    adapter_id: int | None = None


def suffix_of(name: str) -> str:
    """A name made safe for an id: no ':' or spaces, at most 64 characters."""
    return _SUFFIX_UNSAFE.sub("-", name.strip()).strip("-")[:SUFFIX_MAX]


# Every /v1/ generation request names its model through these (prepared: no arguments).
_BASE_ROWS = Prepared(
    lambda key: BaseModel.objects.order_by("pk").values_list("pk", "source", "reference", "name")
)


def base_ids() -> dict[int, str]:
    """The id of every base model (enabled or not, so ids never shift), by primary key."""
    rows = _BASE_ROWS.execute()
    ids: dict[int, str] = {}
    taken: set[str] = set()
    for pk, source, reference, _ in rows:  # built-ins first: their keys are documented ids
        if source == ModelSource.BUILTIN and reference and reference not in taken:
            ids[pk] = reference
            taken.add(reference)
    for pk, _, _, name in rows:
        if pk in ids:
            continue
        candidate = slugify(name) or f"model-{pk}"
        if candidate in taken:
            candidate = f"{candidate}-{pk}"
        ids[pk] = candidate
        taken.add(candidate)
    return ids


def base_model_id(model: BaseModel, ids: dict[int, str] | None = None) -> str:
    """The API id of a base model (pass `base_ids()` when naming many)."""
    return (ids if ids is not None else base_ids())[model.pk]


def finetuned_model_id(base_id: str, suffix: str, job_id: int) -> str:
    """``ft:<base>:<suffix>:<job id>``: what a fine-tune job's model is called once it succeeded."""
    return f"ft:{base_id}:{suffix_of(suffix)}:{job_id}"


def adapter_model_id(adapter: Adapter, ids: dict[int, str] | None = None) -> str:
    """The API id of an adapter (load it with select_related("job") when naming many)."""
    base = base_model_id(adapter.base_model, ids)
    job = adapter.job if adapter.job_id else None
    if job is None:
        return f"ft:{base}:{suffix_of(adapter.name)}:adapter-{adapter.pk}"
    return finetuned_model_id(base, str((job.params or {}).get("name") or ""), job.pk)


def parse_ft_id(model_id: str) -> FtId | None:
    """The parts of an ``ft:`` id, or None when `model_id` is not one."""
    parts = model_id.split(":")
    if len(parts) != 4 or parts[0] != "ft" or not parts[1]:
        return None
    last = parts[3]
    if last.isdigit():
        return FtId(base=parts[1], suffix=parts[2], job_id=int(last))
    if last.startswith("adapter-") and last[len("adapter-") :].isdigit():
        return FtId(base=parts[1], suffix=parts[2], adapter_id=int(last[len("adapter-") :]))
    return None


def project_models(access: ProjectAccess) -> list[tuple[str, BaseModel, Adapter | None]]:
    """Every model the project may call: enabled base models, then its adapters (newest first)
    whose base is enabled, each with its id. Three queries."""
    ids = base_ids()
    out: list[tuple[str, BaseModel, Adapter | None]] = [
        (ids[m.pk], m, None)
        for m in BaseModel.objects.filter(enabled=True).usable_by(access.project.pk).order_by("pk")
    ]
    adapters = Adapter.objects.filter(
        project=access.project, base_model__enabled=True
    ).select_related("base_model", "job")
    out.extend((adapter_model_id(a, ids), a.base_model, a) for a in adapters)
    return out


def resolve_model(
    access: ProjectAccess, model_id: str, *, kind: str | None = None, param: str = "model"
) -> tuple[BaseModel, Adapter | None]:
    """The base model and adapter (None for a base model) that `model_id` names in the
    project of `access`. Raises ModelNotFound (404, code model_not_found, on `param`) for an
    unknown, disabled or other project's model; with `kind` ("text"/"image"), a model of the
    other kind is a 400 (code model_not_supported) that says which kind it is."""
    model_id = (model_id or "").strip()
    ids = base_ids()
    ft = parse_ft_id(model_id)
    adapter: Adapter | None = None
    if ft is not None:
        adapters = Adapter.objects.filter(project=access.project, base_model__enabled=True)
        if ft.job_id is not None:
            adapters = adapters.filter(job_id=ft.job_id)
        else:
            adapters = adapters.filter(pk=ft.adapter_id or 0, job__isnull=True)
        adapter = adapters.select_related("base_model", "job").first()
        if adapter is None or ids.get(adapter.base_model_id) != ft.base:
            raise ModelNotFound(model_id, param)
        base = adapter.base_model
    else:
        pks = [pk for pk, name in ids.items() if name == model_id]
        found = (
            BaseModel.objects.filter(pk__in=pks, enabled=True).usable_by(access.project.pk).first()
        )
        if found is None:
            raise ModelNotFound(model_id, param)
        base = found
    if kind is not None and base.kind != kind:
        raise ApiError(
            400,
            f"The model `{model_id}` is a model of kind {base.kind}; this endpoint needs a {kind} model.",
            code="model_not_supported",
            param=param,
        )
    return base, adapter
