"""Reads of text model craft, scoped by project membership."""

from __future__ import annotations

from django.http import Http404

from apps.craft.text_kinds import TEXT_KINDS
from apps.jobs.models import Job
from apps.jobs.selectors import job_access
from apps.projects.selectors import ProjectAccess


def craft_text_jobs(*, access: ProjectAccess, limit: int = 20) -> list[Job]:
    """The project's newest distillation, quantization and bias probe jobs."""
    return list(
        Job.objects.filter(project=access.project, kind__in=TEXT_KINDS)
        .select_related("created_by")
        .order_by("-pk")[:limit]
    )


def craft_report_job(*, user, project_id: int, job_id: int) -> tuple[ProjectAccess, Job]:
    """A text craft job of a project the user may see; 404 for strangers and other kinds."""
    access, job = job_access(user=user, project_id=project_id, job_id=job_id)
    if job.kind not in TEXT_KINDS:
        raise Http404("No such report")
    return access, job
