from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import Http404

from apps.jobs import registry
from apps.jobs.events import socket_url
from apps.jobs.models import EventKind, Job, JobEvent, line_order
from apps.jobs.states import JobState
from apps.projects.models import Role
from apps.projects.selectors import ProjectAccess, project_access

CANCELLABLE = (JobState.QUEUED, JobState.RUNNING)
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
# Kinds whose runner continues a retry from the newest complete checkpoint of the jobs it
# retries (apps/finetunes/runners.py run_finetune passes them to train_lora's continue_from).
# A kind listed here must do so: the job page promises it on the Retry button.
RETRY_CONTINUES = frozenset({"finetune.lora"})


def job_author_id(ctx: registry.JobContext) -> int | None:
    """Who submitted the context's job: as the runtime told the context (a job a worker runs),
    else as the job's row says (a context made by hand, or a job without an author)."""
    if ctx.author_id is not None:
        return ctx.author_id
    return Job.objects.filter(pk=ctx.job_id).values_list("created_by_id", flat=True).first()


def job_access(
    *, user, project_id: int, job_id: int, need: str = "view"
) -> tuple[ProjectAccess, Job]:
    """A job of a project the user may see (404 otherwise), with the capability checked."""
    access = project_access(user=user, project_id=project_id, need=need)
    job = (
        Job.objects.select_related("created_by", "project")
        .filter(pk=job_id, project=access.project)
        .first()
    )
    if job is None:
        raise Http404("No such job")
    return access, job


# Event data only project admins and platform staff see: a crashed job's traceback has server
# paths and code (workers/tasks/runtime.py puts it there; the log line itself is the short error).
PRIVILEGED_EVENT_KEYS = frozenset({"traceback"})


def sees_full_events(*, access: ProjectAccess, user) -> bool:
    """Project admins (platform superusers are admins everywhere) and platform staff."""
    return access.role == Role.ADMIN or bool(getattr(user, "is_staff", False))


# Event kinds that carry what a job generated (streamed text, denoising previews): a viewer gets
# them only while the registry's content rule shows the job to them (the outputs' one visibility
# rule: the author, reviewers and admins at once; other members once it succeeded and all it
# made is visible to them). Other kinds (state, progress, metrics, log, artifact) are unchanged.
CONTENT_EVENT_KINDS = frozenset({EventKind.TEXT, EventKind.PREVIEW})


def job_content_visible(*, access: ProjectAccess, user, job: Job) -> bool:
    """Whether this viewer may see the job's generated text, previews and prompts."""
    return job.pk in registry.jobs_with_visible_content(access=access, user=user, jobs=[job])


def event_for_viewer(message: dict, *, full: bool, content: bool) -> dict:
    """An event message (JobEvent.as_message() or a doorbell's copy) as this viewer may see it:
    `full` keeps privileged keys (sees_full_events), `content` generated text and previews
    (job_content_visible); a withheld event keeps its seq and kind, so streams stay gapless."""
    data = message.get("data")
    if not isinstance(data, dict):
        return message
    if not content and message.get("kind") in CONTENT_EVENT_KINDS:
        kept = {"index": data["index"]} if "index" in data else {}
        return {**message, "data": {**kept, "withheld": True}}
    if full or PRIVILEGED_EVENT_KEYS.isdisjoint(data):
        return message
    return {**message, "data": {k: v for k, v in data.items() if k not in PRIVILEGED_EVENT_KEYS}}


def params_for_viewer(job: Job, *, content: bool) -> tuple[dict, list[str]]:
    """The job's params as this viewer may see them, and the prompt fields left out (the kind's
    prompt_fields, withheld while job_content_visible is false)."""
    kind = registry.find(job.kind)
    params = job.params if isinstance(job.params, dict) else {}
    if content or kind is None or not kind.prompt_fields:
        return params, []
    withheld = [name for name in kind.prompt_fields if name in params]
    return {k: v for k, v in params.items() if k not in withheld}, withheld


def job_metric_series(*, job: Job) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a job as (step, value) points, one per step, sorted by step.

    A resumed attempt restarts after its checkpoint and reports the steps between the checkpoint
    and the crash again: the newest report of a step wins (events are numbered in the order they
    were written, and writes are fenced, so a later seq is a newer attempt).
    """
    series: dict[str, dict[int, float]] = {}
    rows = (
        JobEvent.objects.filter(job_id=job.pk, kind=EventKind.METRICS)
        .order_by("seq")
        .values_list("data", flat=True)
    )
    for data in rows.iterator(chunk_size=2000):
        step = int(data.get("step", 0))
        for name, value in (data.get("values") or {}).items():
            series.setdefault(name, {})[step] = value
    return {name: sorted(points.items()) for name, points in series.items()}


def project_jobs(
    *,
    access: ProjectAccess,
    limit: int = 100,
    before: int | None = None,
    kind: str | None = None,
    state: str | None = None,
) -> list[Job]:
    """The project's newest jobs first; `before` (a job id) pages back, `kind`/`state` filter."""
    jobs = Job.objects.filter(project=access.project)
    if before is not None:
        jobs = jobs.filter(pk__lt=before)
    if kind:
        jobs = jobs.filter(kind=kind)
    if state:
        jobs = jobs.filter(state=state)
    return list(jobs.select_related("created_by").order_by("-pk")[:limit])


def project_jobs_to_resync(
    *, project_id: int, known_unfinished: list[int], limit: int = 200
) -> list[Job]:
    """Jobs the project's dashboard sockets must re-check: every unfinished job of the project
    (at most `limit`) and the jobs they last saw unfinished (they may have finished while their
    doorbells were lost). The caller has checked the sockets' access."""
    from django.db.models import Q

    from apps.jobs.states import TERMINAL

    return list(
        Job.objects.filter(project_id=project_id)
        .filter(~Q(state__in=list(TERMINAL)) | Q(pk__in=known_unfinished))
        .select_related("created_by")[: limit + len(known_unfinished)]
    )


def launch_kinds() -> list[dict]:
    return [
        {
            "name": k.name,
            "label": k.label,
            "description": k.description,
            "queue": k.queue,
            "fields": registry.form_fields(k),
        }
        for k in registry.all_kinds()
        if k.launchable
    ]


def dashboard_context(
    *, access: ProjectAccess, launch_errors=None, launch_kind=None, launch_values=None
) -> dict:
    can_launch = access.can("launch_job")
    return {
        "project": access.project,
        "membership": access,
        "can_launch": can_launch,
        "ws_url": socket_url("project_socket", project_id=access.project.pk),
        "jobs": project_jobs(access=access),
        "launch_kinds": launch_kinds() if can_launch else [],
        "launch_errors": launch_errors or {},
        "launch_kind": launch_kind,
        "launch_values": launch_values or {},
    }


def job_workdir(job_id: int) -> Path:
    """The folder a job's attempts work in (workers/tasks/runtime.py creates it). Nothing removes
    it when the job ends: a retry continues from the checkpoints left there."""
    return Path(settings.JOBS_DIR) / str(job_id)


def job_retry_chain(*, job: Job, limit: int = 20) -> list[int]:
    """The ids of the jobs `job` retries, nearest first: its retry_of, that one's, and so on
    (same project and kind only; at most `limit`)."""
    chain: list[int] = []
    current = job.retry_of_id
    while current is not None and current not in chain and len(chain) < limit:
        row = (
            Job.objects.filter(pk=current, project_id=job.project_id, kind=job.kind)
            .values_list("pk", "retry_of_id")
            .first()
        )
        if row is None:
            break
        chain.append(row[0])
        current = row[1]
    return chain


def retry_continues_from(*, job: Job) -> int | None:
    """The step a retry of this (failed or cancelled) job continues from, for the Retry button:
    the newest checkpoint marked complete in its run folder or those of the jobs it retried.
    The worker checks the files and that parameters and data are the same, and starts over (and
    says so in the log) where they are not."""
    from workers.ml.finetune.checkpoints import newest_marked_step
    from workers.ml.finetune.files import CHECKPOINTS_DIR, JOB_RUN_DIR

    if job.kind not in RETRY_CONTINUES or job.state not in RETRYABLE:
        return None
    steps = [
        newest_marked_step(job_workdir(job_id) / JOB_RUN_DIR / CHECKPOINTS_DIR)
        for job_id in (job.pk, *job_retry_chain(job=job))
    ]
    return max((step for step in steps if step), default=None)


def job_detail_context(*, access: ProjectAccess, user, job: Job) -> dict:
    can_cancel = access.can("cancel_job")
    content = job_content_visible(access=access, user=user, job=job)
    _, withheld = params_for_viewer(job, content=content)
    return {
        "project": access.project,
        "membership": access,
        "job": job,
        # Prompts wait with the generated content: their names are shown, their text is not.
        "params": {k: "—" if k in withheld else v for k, v in job.params.items()},
        "can_cancel": can_cancel and job.state in CANCELLABLE,
        "can_retry": access.can("launch_job") and job.state in RETRYABLE,
        # Only for a job that has ended: while it runs, its last checkpoint is still to come.
        "retry_from_step": (retry_continues_from(job=job) if access.can("launch_job") else None),
        "may_cancel": can_cancel,
        "may_retry": access.can("launch_job"),
        "ws_url": socket_url("job_socket", job_id=job.pk),
    }


def member_queue(*, access: ProjectAccess, user, queue: str = "gpu", limit: int = 50) -> list[Job]:
    """The user's own queued jobs of the project on `queue`, in the order their turns will take
    them (services.job_queue_move reorders it, services.job_claim_turn follows it)."""
    if not getattr(user, "is_authenticated", False):
        return []
    return list(
        Job.objects.filter(
            project=access.project, created_by=user, queue=queue, state=JobState.QUEUED
        ).order_by(*line_order())[:limit]
    )


def others_queued_ahead(*, access: ProjectAccess, user, queue: str = "gpu") -> int:
    """Other people's queued jobs of the project on `queue` submitted before the user's oldest
    queued one: roughly what runs before the user's next job (turns go in submission order)."""
    mine = Job.objects.filter(
        project=access.project, created_by=user, queue=queue, state=JobState.QUEUED
    ).order_by("created_at", "id")
    oldest = mine.values_list("created_at", flat=True).first()
    if oldest is None:
        return 0
    return (
        Job.objects.filter(
            project=access.project, queue=queue, state=JobState.QUEUED, created_at__lt=oldest
        )
        .exclude(created_by=user)
        .count()
    )
