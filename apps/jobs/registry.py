"""Job kinds register here: a params schema, a queue and a runner. One module adds one kind.

A kind module calls `register(JobKind(...))` at import time. Modules named `jobkinds` in every
installed app are imported at start-up, plus those listed in ATELIER_JOB_KIND_MODULES (tests add a
test-only kind that way, so users never see it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from django.conf import settings
from django.utils.module_loading import autodiscover_modules


@dataclass
class JobContext:
    """What a runner gets: validated params, a Reporter, its own folder and checkpoints."""

    job_id: int
    project_id: int
    attempt: int
    params: Any  # an instance of the kind's params model
    reporter: Any  # workers.ml.reporting.Reporter
    workdir: Path
    checkpoints: Any  # workers.ml.checkpoints.CheckpointStore
    # Batch members only: finish this job now as cancelled while the rest of its batch runs on
    # (set by the runtime; a runner calls it when the member's reporter asks to stop).
    finish_early: Callable[[], None] | None = None
    # Who submitted the job (None: nobody, or not told: a runner that needs it asks the row).
    author_id: int | None = None


@dataclass(frozen=True)
class Deferred:
    """What a runner returns when its last work is writing what it made (an image job's PNGs,
    hashes, files and Output rows): ``prepare()`` writes the files (no database), then
    ``record(prepared)`` writes the rows and returns the job's result. The worker runs them on
    its finisher thread while the next job starts (Celery workers), or at once (a direct call),
    and records the job's outcome in the same database transaction as ``record``'s rows: a job
    says succeeded only with its outputs in place, and a worker killed before that leaves the
    job running, to be re-queued when its lease ends."""

    record: Callable[[Any], dict]
    prepare: Callable[[], Any] | None = None


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    queue: str
    params: type[pydantic.BaseModel]
    runner: Callable[[JobContext], dict | Deferred | None]
    description: str = ""
    # Offered on the dashboard's generic launch form. Kinds launched from their own pages (scans,
    # fine-tunes, playground) set False; the API accepts every registered kind.
    launchable: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Checks that need the database, the project and the submitting user (a dataset version
    # belongs to it, is approved, a model is ready, an output named in the params is one this user
    # may see): (project, validated params, *, user) -> {field: message}; empty means fine. `user`
    # is None for a job the platform starts itself.
    check: Callable[..., dict[str, str]] | None = None
    # Worker-level batching: jobs whose params give equal, non-None keys may run together through
    # batch_runner(contexts) -> one result dict (or exception) per context, in order.
    batch_key: Callable[[pydantic.BaseModel], Any] | None = None
    batch_runner: Callable[[list[JobContext]], list[Any]] | None = None
    # Resumable kinds (they checkpoint, and stop at their next step when should_stop() turns
    # true): a worker's warm shutdown asks them to stop and re-queues them, so they resume on
    # the next start. Other kinds finish what they run before the worker exits.
    interruptible: bool = False
    # Kinds whose work ends soon after their last reported step (an image: its decode and
    # hand-off, tens of ms): at that step the worker claims its next job, so the next one starts
    # without a broker round trip and a claim between the two (workers/tasks/runtime.Lookahead).
    lookahead: bool = False
    # The compute budget (apps/quotas): (project, validated params, PlatformPolicy) ->
    # {field: message} when the request asks for more than one job may use.
    budget: Callable[[Any, pydantic.BaseModel, Any], dict[str, str]] | None = None
    # The params fields that hold user-written prompts: the submit checks (register_submit_check)
    # read them, and a job page shows them to other members only when its content is visible.
    prompt_fields: tuple[str, ...] = ()
    # What the job page counts progress in: "" (steps: "step 3 of 10"), "row" (a scan that
    # reports rows: "row 30 of 30") or "percent" (phases without a countable unit: the bar alone).
    progress_unit: str = ""


class UnknownKind(KeyError):
    pass


# What other apps add to a job's page: (access, user, job) -> extra template context. The spine
# shows what a job made without importing the apps that made it (outputs register theirs).
PageExtra = Callable[..., dict[str, Any]]
_PAGE_EXTRAS: list[PageExtra] = []


def register_page_extra(extra: PageExtra) -> PageExtra:
    if extra not in _PAGE_EXTRAS:
        _PAGE_EXTRAS.append(extra)
    return extra


def page_extras(*, access, user, job) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for extra in _PAGE_EXTRAS:
        context.update(extra(access=access, user=user, job=job))
    return context


# Checks every submit passes before its row is made (the moderation app refuses blocked prompts):
# (project=, user=, kind=, params=) -> {field: message}, with `kind` the JobKind and `params` its
# validated params model; any message refuses the job (JobParamsError), so it never reaches a worker.
SubmitCheck = Callable[..., dict[str, str]]
_SUBMIT_CHECKS: list[SubmitCheck] = []


def register_submit_check(check: SubmitCheck) -> SubmitCheck:
    if check not in _SUBMIT_CHECKS:
        _SUBMIT_CHECKS.append(check)
    return check


def unregister_submit_check(check: SubmitCheck) -> None:
    if check in _SUBMIT_CHECKS:
        _SUBMIT_CHECKS.remove(check)


def submit_checks(*, project, user, kind: JobKind, params: pydantic.BaseModel) -> dict[str, str]:
    """Every registered submit check's errors, merged (the first message for a field wins)."""
    errors: dict[str, str] = {}
    for check in _SUBMIT_CHECKS:
        for name, message in check(project=project, user=user, kind=kind, params=params).items():
            errors.setdefault(name, message)
    return errors


def prompt_texts(kind: JobKind, params: pydantic.BaseModel | dict[str, Any]) -> dict[str, str]:
    """The user-written prompts of a job's params, by field (the kind's prompt_fields)."""
    get = params.get if isinstance(params, dict) else lambda name: getattr(params, name, None)
    return {name: str(get(name) or "") for name in kind.prompt_fields}


# Who may see a job's generated content (its `text` and `preview` events, its prompts): the
# outputs app registers its one visibility rule (apps/outputs/selectors.py) as
# (access=, user=, jobs=) -> the ids of those jobs whose content this viewer may see. Several
# rules: a job is shown only when every rule shows it; none registered: everything is shown.
ContentRule = Callable[..., set[int]]
_CONTENT_RULES: list[ContentRule] = []


def register_content_rule(rule: ContentRule) -> ContentRule:
    if rule not in _CONTENT_RULES:
        _CONTENT_RULES.append(rule)
    return rule


def jobs_with_visible_content(*, access, user, jobs) -> set[int]:
    jobs = list(jobs)
    shown = {job.pk for job in jobs}
    for rule in _CONTENT_RULES:
        if not shown:
            break
        shown &= rule(access=access, user=user, jobs=[j for j in jobs if j.pk in shown])
    return shown


# Periodic work that apps add to the scheduler (the provenance batcher): `manage.py scheduler`
# calls each hook once `every_seconds` have passed since its last call, in its own process, so
# the spine runs features' rounds without importing them. A hook takes no arguments.
@dataclass(frozen=True)
class PeriodicTask:
    name: str
    fn: Callable[[], Any]
    every_seconds: float


_PERIODIC: dict[str, PeriodicTask] = {}


def register_periodic(name: str, fn: Callable[[], Any], *, every_seconds: float) -> PeriodicTask:
    """Ask the scheduler to call `fn` every `every_seconds` (registering a name again replaces it)."""
    if every_seconds <= 0:
        raise ValueError(f"periodic task {name}: every_seconds must be positive")
    task = PeriodicTask(name=name, fn=fn, every_seconds=float(every_seconds))
    _PERIODIC[name] = task
    return task


def periodic_tasks() -> list[PeriodicTask]:
    return list(_PERIODIC.values())


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if kind.queue not in {"gpu", "cpu", "chain"}:
        raise ValueError(f"job kind {kind.name}: unknown queue {kind.queue!r}")
    _KINDS[kind.name] = kind
    return kind


def get(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def find(name: str) -> JobKind | None:
    return _KINDS.get(name)


def all_kinds() -> list[JobKind]:
    return sorted(_KINDS.values(), key=lambda k: k.label)


def runner_at(path: str) -> Callable[..., Any]:
    """``"apps.<app>.runners:run_x"`` as a callable that imports the runner when a worker calls it:
    jobkinds modules stay light at start-up, and a test or bench that patches the runner module's
    function is the one that runs."""
    module, _, attr = path.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__name__ = attr
    call.__qualname__ = path
    return call


def autodiscover() -> None:
    autodiscover_modules("jobkinds")
    for module in settings.ATELIER["JOB_KIND_MODULES"]:
        importlib.import_module(module)


def validate_params(kind: JobKind, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validated, JSON-ready params, or errors keyed by field name."""
    try:
        model = kind.params.model_validate(raw)
    except pydantic.ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "__all__"
            errors.setdefault(key, err["msg"])
        return {}, errors
    return model.model_dump(mode="json"), {}


def form_fields(kind: JobKind) -> list[dict[str, Any]]:
    """Describe the params model for a generic HTML form."""
    schema = kind.params.model_json_schema()
    defs = schema.get("$defs", {})
    fields = []
    for name, prop in schema.get("properties", {}).items():
        if "$ref" in prop:
            prop = {
                **defs[prop["$ref"].split("/")[-1]],
                **{k: v for k, v in prop.items() if k != "$ref"},
            }
        if "allOf" in prop and prop["allOf"] and "$ref" in prop["allOf"][0]:
            prop = {**defs[prop["allOf"][0]["$ref"].split("/")[-1]], **prop}
        if "enum" in prop:
            ftype, choices = "choice", prop["enum"]
        else:
            ftype = {"integer": "integer", "number": "number", "boolean": "boolean"}.get(
                prop.get("type", "string"), "string"
            )
            choices = []
        fields.append(
            {
                "name": name,
                "label": prop.get("title", name),
                "type": ftype,
                "default": prop.get("default"),
                "help": prop.get("description", ""),
                "choices": choices,
                "minimum": prop.get("minimum", prop.get("exclusiveMinimum")),
                "maximum": prop.get("maximum", prop.get("exclusiveMaximum")),
            }
        )
    return fields


def coerce_form(kind: JobKind, data) -> dict[str, Any]:
    """Turn HTML form strings into the raw dict the params model validates."""
    raw: dict[str, Any] = {}
    for f in form_fields(kind):
        name = f["name"]
        if f["type"] == "boolean":
            raw[name] = name in data and data.get(name) not in ("", "0", "false", "off")
        elif name in data and data.get(name) != "":
            raw[name] = data.get(name)
    return raw
