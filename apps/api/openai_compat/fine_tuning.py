"""/v1/fine_tuning/jobs: OpenAI's fine-tuning jobs are Atelier's `finetune.lora` jobs (method
"supervised") and `finetune.dpo` jobs (method "dpo").

A create goes through `job_create` like the pages' form (the kind's schema and checks, the
dataset approval gate, caps and quotas: 429 with Retry-After), with OpenAI's parameters mapped:

- `model`: a text base model's id (naming.py); an ``ft:`` model is refused (a LoRA fine-tune
  starts from a base model here), as is an unknown one (404 model_not_found).
- `training_file`: a processed file of the project (files.py); its dataset version must be
  approved when the project asks for approval. A file still importing is refused
  (file_not_ready): a job cannot wait for another job, so there is no "validating_files" phase.
- `validation_file`: refused; the held-out rows come from the training file (its validation
  split, else `eval_fraction` of it).
- `hyperparameters` (or `method.supervised.hyperparameters`): n_epochs -> num_train_epochs,
  batch_size -> per-device batch with no accumulation, learning_rate_multiplier x the recipe's
  learning rate (2e-4); "auto" keeps the recipe. Any other field of the LoRA recipe
  (apps/finetunes/schemas.py: max_steps, r, logging_steps, …) may be given by its own name, an
  Atelier extension; it wins over the OpenAI name of the same knob.
- `suffix` names the adapter and goes into the model id ``ft:<base>:<suffix>:<job id>``.
- `method.type` "dpo": a `finetune.dpo` job on a preference file (OpenAI's DPO rows import as
  Atelier's preference schema). `method.dpo.hyperparameters`: beta ("auto": the recipe's 0.1),
  n_epochs, batch_size, learning_rate_multiplier (x the DPO recipe's 5e-5) and any field of the
  DPO recipe (workers/ml/preference/config.py DpoConfig). `model` may be an ``ft:`` model of this
  project: DPO then trains that adapter further, with its current weights as the reference.

Status: queued -> queued, running -> running, succeeded -> succeeded, failed -> failed (with
`error`), cancelling and cancelled -> cancelled. Events come from the job's event log (state
changes, log lines, metrics and artifacts; previews and streamed text never), newest first.
Checkpoints: the published adapter of a succeeded job; Trainer's intermediate checkpoints stay
in the worker's job folder for resuming and are not models one could call.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema

from apps.api.errors import ApiError
from apps.api.openai_compat import naming
from apps.api.openai_compat.common import token_project
from apps.api.openai_compat.files import file_ids_for_versions, find_file
from apps.jobs import services as job_services
from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.states import JobState
from apps.projects.selectors import ProjectAccess
from workers.ml.finetune.config import LoraFinetuneConfig
from workers.ml.preference.config import DpoConfig

router = Router(tags=["fine_tuning"])

KIND = "finetune.lora"
DPO_KIND = "finetune.dpo"
KINDS = (KIND, DPO_KIND)
_JOB_ID = re.compile(r"^ftjob-([0-9]{1,18})$")
_EVENT_ID = re.compile(r"^ftevent-([0-9]{1,18})-([0-9]{1,18})$")
_RECIPE: dict[str, Any] = dataclasses.asdict(LoraFinetuneConfig())
BASE_LEARNING_RATE = float(_RECIPE["learning_rate"])
CONFIG_FIELDS = frozenset(_RECIPE)
_DPO_RECIPE: dict[str, Any] = dataclasses.asdict(DpoConfig())
DPO_CONFIG_FIELDS = frozenset(_DPO_RECIPE)
OPENAI_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
DPO_HYPERPARAMETERS = (*OPENAI_HYPERPARAMETERS, "beta")
# The job's params named by the OpenAI parameter a refusal is about.
PARAM_NAMES = {
    "base_model_id": "model",
    "dataset_version_id": "training_file",
    "name": "suffix",
    "seed": "seed",
    "num_train_epochs": "hyperparameters.n_epochs",
    "per_device_train_batch_size": "hyperparameters.batch_size",
    "gradient_accumulation_steps": "hyperparameters.batch_size",
    "learning_rate": "hyperparameters.learning_rate_multiplier",
    "max_steps": "hyperparameters.n_epochs",  # the step budget: epochs set the steps
    "parent_adapter_id": "model",
}
STATUS: dict[str, str] = {
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLING: "cancelled",
    JobState.CANCELLED: "cancelled",
}
LEVELS = {"warning": "warn", "warn": "warn", "error": "error"}


# --------------------------------------------------------------------------- schemas


class FineTuneCreate(Schema):
    model: str = Field(..., max_length=300, description="A text base model id (GET /v1/models)")
    training_file: str = Field(..., max_length=64, description="A processed file id")
    validation_file: str | None = Field(None, max_length=64, description="Not supported")
    hyperparameters: dict[str, Any] | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    method: dict[str, Any] | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, Any] | None = None


class Hyperparameters(Schema):
    n_epochs: int | float | Literal["auto"] | None = None
    batch_size: int | Literal["auto"] | None = None
    learning_rate_multiplier: float | Literal["auto"] | None = None


class JobError(Schema):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(Schema):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any]
    user_provided_suffix: str | None = None


class JobList(Schema):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningJobEvent(Schema):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class EventList(Schema):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class CheckpointMetrics(Schema):
    step: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    full_valid_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(Schema):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class CheckpointList(Schema):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class Page(Schema):
    after: str | None = Field(None, max_length=100)
    limit: int = Field(20, ge=1, le=1000)


# --------------------------------------------------------------------------- request mapping


def _method(body: FineTuneCreate) -> tuple[str, dict[str, Any]]:
    """(job kind, hyperparameters): the supervised method's (top-level ones first) or DPO's."""
    method = body.method or {}
    kind = method.get("type", "supervised") if isinstance(method, dict) else None
    if kind not in ("supervised", "dpo"):
        raise ApiError(
            400,
            f"method.type must be 'supervised' or 'dpo' here, not {kind!r}",
            code="unsupported_method",
            param="method.type",
        )
    assert isinstance(method, dict)
    section = method.get(kind) or {}
    inner = section.get("hyperparameters") if isinstance(section, dict) else None
    if inner is not None and not isinstance(inner, dict):
        raise ApiError(400, "must be an object", param=f"method.{kind}.hyperparameters")
    return (DPO_KIND if kind == "dpo" else KIND), {**(body.hyperparameters or {}), **(inner or {})}


def _number(value: Any, name: str, *, integer: bool) -> float | None:
    """None for "auto" or null, else a positive number (a whole one when `integer`)."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"{name} must be a number or 'auto'", param=f"hyperparameters.{name}")
    if value <= 0 or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        raise ApiError(400, f"{name} must be {kind} above 0", param=f"hyperparameters.{name}")
    return value


def recipe_overrides(hyper: dict[str, Any], kind: str = KIND) -> dict[str, Any]:
    """The job params that OpenAI's hyperparameters (and Atelier's own names) ask for, for a
    LoRA (`finetune.lora`) or DPO (`finetune.dpo`) job."""
    dpo = kind == DPO_KIND
    fields = DPO_CONFIG_FIELDS if dpo else CONFIG_FIELDS
    named = DPO_HYPERPARAMETERS if dpo else OPENAI_HYPERPARAMETERS
    base_lr = float((_DPO_RECIPE if dpo else _RECIPE)["learning_rate"])
    out: dict[str, Any] = {}
    unknown = [k for k in hyper if k not in named and k not in fields]
    if unknown:
        raise ApiError(
            400,
            f"Unknown hyperparameter {unknown[0]!r}: use {', '.join(named)} or a field of "
            f"Atelier's {'DPO' if dpo else 'LoRA'} recipe",
            param=f"hyperparameters.{unknown[0]}",
        )
    epochs = _number(hyper.get("n_epochs"), "n_epochs", integer=False)
    if epochs is not None:
        out.update(num_train_epochs=float(epochs), max_steps=-1)
    batch = _number(hyper.get("batch_size"), "batch_size", integer=True)
    if batch is not None:
        out.update(per_device_train_batch_size=int(batch), gradient_accumulation_steps=1)
    multiplier = _number(
        hyper.get("learning_rate_multiplier"), "learning_rate_multiplier", integer=False
    )
    if multiplier is not None:
        out["learning_rate"] = base_lr * float(multiplier)
    if dpo:
        beta = _number(hyper.get("beta"), "beta", integer=False)
        if beta is not None:
            out["beta"] = float(beta)
    out.update({k: v for k, v in hyper.items() if k in fields})
    return out


def _training_version(access: ProjectAccess, file_id: str):
    try:
        found = find_file(access, file_id, param="training_file")
    except ApiError:
        raise ApiError(
            400,
            f"invalid training_file: {file_id} (no such file in this project)",
            code="invalid_file",
            param="training_file",
        ) from None
    if found.version is not None:
        return found.version
    if found.job is not None and found.job.state not in (JobState.FAILED, JobState.CANCELLED):
        raise ApiError(
            400,
            f"File {file_id} is still being imported and is not ready for fine-tuning; "
            "retrieve it until its status is 'processed'",
            code="file_not_ready",
            param="training_file",
        )
    raise ApiError(
        400,
        f"File {file_id} failed to import and cannot be used for fine-tuning "
        "(GET /v1/files/{id} says why)",
        code="invalid_file",
        param="training_file",
    )


def _refusal(
    exc: job_services.JobParamsError, given: dict[str, Any], code: str = "invalid_params"
) -> ApiError:
    """A refused job's first problem, on the OpenAI parameter that asked for it."""

    def param(field: str) -> str | None:
        if field == "__all__":
            return None
        if field == "max_steps" and "max_steps" in given:
            return "hyperparameters.max_steps"
        return PARAM_NAMES.get(field, f"hyperparameters.{field}")

    fields = {param(k) or "__all__": v for k, v in exc.errors.items()}
    first = next(iter(exc.errors), "__all__")
    return ApiError(
        400,
        exc.errors.get(first, str(exc)),
        code=code,
        param=param(first),
        fields=fields,
    )


# --------------------------------------------------------------------------- shapes


def job_api_id(job_id: int) -> str:
    return f"ftjob-{job_id}"


def _find_job(access: ProjectAccess, job_id: str) -> Job:
    match = _JOB_ID.match(job_id or "")
    job = (
        Job.objects.select_related("created_by")
        .filter(pk=int(match.group(1)), project=access.project, kind__in=KINDS)
        .first()
        if match
        else None
    )
    if job is None:
        raise ApiError(404, f"Could not find fine-tuning job {job_id}", param="fine_tuning_job_id")
    return job


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _hyperparameters(params: dict[str, Any], kind: str = KIND) -> dict[str, Any]:
    defaults = _DPO_RECIPE if kind == DPO_KIND else _RECIPE
    recipe = {**defaults, **params}
    out = {
        "n_epochs": _whole(float(recipe["num_train_epochs"])),
        "batch_size": int(recipe["per_device_train_batch_size"])
        * int(recipe["gradient_accumulation_steps"]),
        "learning_rate_multiplier": round(
            float(recipe["learning_rate"]) / float(defaults["learning_rate"]), 6
        ),
    }
    if kind == DPO_KIND:
        out["beta"] = float(recipe["beta"])
    return out


def _method_json(kind: str, hyper: dict[str, Any]) -> dict[str, Any]:
    if kind == DPO_KIND:
        return {"type": "dpo", "dpo": {"hyperparameters": hyper}}
    return {"type": "supervised", "supervised": {"hyperparameters": hyper}}


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def jobs_json(access: ProjectAccess, jobs: list[Job]) -> list[dict[str, Any]]:
    """FineTuningJob objects; a handful of queries for the whole list."""
    from apps.models.models import Adapter

    ids = naming.base_ids()
    versions = {
        int(v) for j in jobs if isinstance(v := (j.params or {}).get("dataset_version_id"), int)
    }
    files = file_ids_for_versions(access, versions)
    adapters = {
        a.job_id: a
        for a in Adapter.objects.filter(
            job_id__in=[j.pk for j in jobs if j.state == JobState.SUCCEEDED]
        ).select_related("base_model", "job")
    }
    out: list[dict[str, Any]] = []
    for job in jobs:
        params = job.params or {}
        result = job.result if isinstance(job.result, dict) else {}
        hyper = _hyperparameters(params, job.kind)
        adapter = adapters.get(job.pk)
        status = STATUS.get(job.state, "queued")
        tokens = (result.get("metrics") or {}).get("train_tokens")
        eta = None
        if job.state == JobState.RUNNING and job.eta_seconds:
            eta = int(timezone.now().timestamp() + job.eta_seconds)
        out.append(
            {
                "id": job_api_id(job.pk),
                "object": "fine_tuning.job",
                "created_at": _ts(job.created_at),
                "error": {"code": "job_failed", "message": job.error or "failed", "param": None}
                if job.state == JobState.FAILED
                else None,
                "fine_tuned_model": naming.adapter_model_id(adapter, ids) if adapter else None,
                "finished_at": _ts(job.finished_at) if status != "running" else None,
                "hyperparameters": {k: v for k, v in hyper.items() if k != "beta"},
                "model": ids.get(int(params.get("base_model_id") or 0), ""),
                "organization_id": f"project-{job.project_id}",
                "result_files": [],
                "seed": int(params.get("seed", _RECIPE["seed"])),
                "status": status,
                "trained_tokens": int(tokens) if isinstance(tokens, int | float) else None,
                "training_file": files.get(int(params.get("dataset_version_id") or 0), ""),
                "validation_file": None,
                "estimated_finish": eta,
                "integrations": [],
                "metadata": None,
                "method": _method_json(job.kind, hyper),
                "user_provided_suffix": params.get("name") or None,
            }
        )
    return out


def _event_json(job: Job, event: JobEvent) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    level, kind, extra = "info", "message", None
    if event.kind == EventKind.STATE:
        state = str(data.get("state", ""))
        said: dict[str, str] = {
            JobState.QUEUED: "Fine-tuning job queued",
            JobState.RUNNING: "Fine-tuning job started"
            + (f" (attempt {data['attempt']})" if int(data.get("attempt") or 0) > 1 else ""),
            JobState.SUCCEEDED: "The job has successfully completed",
            JobState.FAILED: f"The job failed: {data.get('error') or job.error}",
            JobState.CANCELLING: "Cancel requested",
            JobState.CANCELLED: "The job was cancelled",
        }
        message = said.get(state, f"State: {state}")
        if data.get("message"):
            message += f" ({data['message']})"
        if state == JobState.FAILED:
            level = "error"
    elif event.kind == EventKind.LOG:
        message = str(data.get("message", ""))
        level = LEVELS.get(str(data.get("level", "")), "info")
    elif event.kind == EventKind.METRICS:
        values = data.get("values") or {}
        kind = "metrics"
        step, total = int(data.get("step") or 0), int(data.get("total") or 0)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if isinstance(v, int | float))
        message = f"Step {step}/{total}: {shown}"
        extra = {"step": step, "total_steps": total, **values}
        if "loss" in values:
            extra["train_loss"] = values["loss"]
    else:  # artifact
        message = f"Artifact {data.get('name', '')} ({int(data.get('size') or 0):,} bytes)"
    return {
        "id": f"ftevent-{job.pk}-{event.seq}",
        "object": "fine_tuning.job.event",
        "created_at": _ts(event.created_at),
        "level": level,
        "message": message,
        "type": kind,
        "data": extra,
    }


# --------------------------------------------------------------------------- routes


@router.post("/fine_tuning/jobs", url_name="fine_tuning_jobs", response=FineTuningJob)
def create_job(request: HttpRequest, body: FineTuneCreate):
    """Start a LoRA fine-tune (or, with method.type "dpo", a DPO run) on a processed file."""
    access = token_project(request, "launch_job")
    kind, hyper = _method(body)
    base, adapter = naming.resolve_model(access, body.model, kind="text")
    if adapter is not None and kind != DPO_KIND:
        raise ApiError(
            400,
            f"Continuing from a fine-tuned model is not supported: fine-tune its base "
            f"`{naming.base_model_id(base)}` instead",
            code="model_not_supported",
            param="model",
        )
    if body.validation_file:
        raise ApiError(
            400,
            "validation_file is not supported: Atelier holds out validation rows from the "
            "training file (its validation split, else hyperparameters.eval_fraction of it)",
            code="unsupported_parameter",
            param="validation_file",
        )
    for name in ("integrations", "metadata"):
        if getattr(body, name):
            raise ApiError(
                400, f"{name} is not supported by Atelier", code="unsupported_parameter", param=name
            )
    suffix = body.suffix or ""
    if naming.suffix_of(suffix) != suffix:
        raise ApiError(
            400,
            "suffix may hold letters, digits, '.', '_' and '-' only (it is part of the model id)",
            param="suffix",
        )
    version = _training_version(access, body.training_file)
    overrides = recipe_overrides(hyper, kind)
    if body.seed is not None:
        overrides["seed"] = body.seed
    params = {
        "base_model_id": base.pk,
        "dataset_version_id": version.pk,
        "name": suffix,
        **overrides,
    }
    if adapter is not None:  # DPO from a fine-tuned model: that adapter, trained further
        params["parent_adapter_id"] = adapter.pk
    try:
        job = job_services.job_create(
            project=access.project,
            kind=kind,
            params=params,
            created_by=request.user,
            request=request,
        )
    except job_services.JobQuotaExceeded as exc:
        if exc.retry_after is not None:
            raise  # a cap or the monthly quota: 429 with Retry-After (apps/api/errors.py)
        raise _refusal(exc, hyper, code="budget_exceeded") from None
    except job_services.JobParamsError as exc:
        raise _refusal(exc, hyper) from None
    return jobs_json(access, [job])[0]


@router.get("/fine_tuning/jobs", url_name="fine_tuning_jobs", response=JobList)
def list_jobs(request: HttpRequest, q: Query[Page]):
    """The project's fine-tunes and DPO runs (also those started on the pages), newest first."""
    access = token_project(request)
    jobs = Job.objects.filter(project=access.project, kind__in=KINDS)
    if q.after:
        pivot = _JOB_ID.match(q.after)
        if pivot is None:
            raise ApiError(
                400, f"after must be a fine-tuning job id, not {q.after!r}", param="after"
            )
        jobs = jobs.filter(pk__lt=int(pivot.group(1)))
    page = list(jobs.order_by("-pk")[: q.limit + 1])
    return {
        "object": "list",
        "data": jobs_json(access, page[: q.limit]),
        "has_more": len(page) > q.limit,
    }


@router.get(
    "/fine_tuning/jobs/{fine_tuning_job_id}", url_name="fine_tuning_job", response=FineTuningJob
)
def retrieve_job(request: HttpRequest, fine_tuning_job_id: str):
    access = token_project(request)
    return jobs_json(access, [_find_job(access, fine_tuning_job_id)])[0]


@router.post(
    "/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
    url_name="fine_tuning_job_cancel",
    response=FineTuningJob,
)
def cancel_job(request: HttpRequest, fine_tuning_job_id: str):
    """Cancel: a queued job at once, a running one at its next step (status "cancelled" now)."""
    access = token_project(request, "cancel_job")
    job = _find_job(access, fine_tuning_job_id)
    if not job_services.job_cancel(job=job, actor=request.user, request=request):
        job.refresh_from_db(fields=["state"])
        raise ApiError(
            409,
            f"{fine_tuning_job_id} is {STATUS.get(job.state, job.state)}: nothing to cancel",
            param="fine_tuning_job_id",
        )
    job.refresh_from_db()
    return jobs_json(access, [job])[0]


@router.get(
    "/fine_tuning/jobs/{fine_tuning_job_id}/events",
    url_name="fine_tuning_job_events",
    response=EventList,
)
def list_events(request: HttpRequest, fine_tuning_job_id: str, q: Query[Page]):
    """State changes, log lines, metrics and artifacts, newest first; `after` = an event id
    pages to older ones."""
    access = token_project(request)
    job = _find_job(access, fine_tuning_job_id)
    events = JobEvent.objects.filter(
        job=job, kind__in=[EventKind.STATE, EventKind.LOG, EventKind.METRICS, EventKind.ARTIFACT]
    )
    if q.after:
        pivot = _EVENT_ID.match(q.after)
        if pivot is None or int(pivot.group(1)) != job.pk:
            raise ApiError(
                400, f"after must be an event id of this job, not {q.after!r}", param="after"
            )
        events = events.filter(seq__lt=int(pivot.group(2)))
    page = list(events.order_by("-seq")[: q.limit + 1])
    return {
        "object": "list",
        "data": [_event_json(job, e) for e in page[: q.limit]],
        "has_more": len(page) > q.limit,
    }


@router.get(
    "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
    url_name="fine_tuning_job_checkpoints",
    response=CheckpointList,
)
def list_checkpoints(request: HttpRequest, fine_tuning_job_id: str, q: Query[Page]):
    """The adapter a succeeded job published, as its one checkpoint (a model you can call)."""
    from apps.models.models import Adapter

    access = token_project(request)
    job = _find_job(access, fine_tuning_job_id)
    adapter = (
        Adapter.objects.filter(job=job).select_related("base_model", "job").first()
        if job.state == JobState.SUCCEEDED
        else None
    )
    data: list[dict[str, Any]] = []
    if adapter is not None:
        result = job.result if isinstance(job.result, dict) else {}
        metrics = {**(result.get("metrics") or {}), **(adapter.metrics or {})}
        step = int(result.get("global_step") or 0)
        valid = metrics.get("eval_loss_after")
        checkpoint_id = f"ftckpt-{job.pk}-{step}"
        if q.after != checkpoint_id:
            data.append(
                {
                    "id": checkpoint_id,
                    "object": "fine_tuning.job.checkpoint",
                    "created_at": _ts(adapter.created_at),
                    "fine_tuned_model_checkpoint": naming.adapter_model_id(adapter),
                    "fine_tuning_job_id": job_api_id(job.pk),
                    "metrics": {
                        "step": step,
                        "train_loss": metrics.get("train_loss", metrics.get("train_loss_last")),
                        "valid_loss": valid,
                        "full_valid_loss": valid,
                    },
                    "step_number": step,
                }
            )
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
