from __future__ import annotations

from django.http import Http404

from apps.jobs import registry
from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.projects.selectors import ProjectAccess, project_access

CANCELLABLE = (JobState.QUEUED, JobState.RUNNING)
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)


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


def project_jobs(*, access: ProjectAccess, limit: int = 100) -> list[Job]:
    return list(Job.objects.filter(project=access.project).select_related("created_by")[:limit])


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
        "jobs": project_jobs(access=access),
        "launch_kinds": launch_kinds() if can_launch else [],
        "launch_errors": launch_errors or {},
        "launch_kind": launch_kind,
        "launch_values": launch_values or {},
    }


def job_detail_context(*, access: ProjectAccess, job: Job) -> dict:
    can_cancel = access.can("cancel_job")
    return {
        "project": access.project,
        "membership": access,
        "job": job,
        "can_cancel": can_cancel and job.state in CANCELLABLE,
        "can_retry": access.can("launch_job") and job.state in RETRYABLE,
        "may_cancel": can_cancel,
        "may_retry": access.can("launch_job"),
        "ws_url": f"/ws/jobs/{job.pk}/",
    }
