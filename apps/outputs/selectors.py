"""Output reads. The one visibility rule every door uses (gallery, job pages, image and
playground pages): outputs whose moderation state is not clean or approved are seen only by
their author, reviewers and admins."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.outputs.models import Moderation, Output
from apps.projects.models import Role
from apps.projects.selectors import ProjectAccess

VISIBLE_TO_ALL = (Moderation.CLEAN, Moderation.APPROVED)


def visible_outputs(*, access: ProjectAccess, user) -> QuerySet[Output]:
    """The project's outputs this member may see."""
    qs = Output.objects.filter(project=access.project)
    if access.role in (Role.ADMIN, Role.REVIEWER):
        return qs
    return qs.filter(Q(moderation__in=VISIBLE_TO_ALL) | Q(created_by=user))


def job_page_outputs(*, access: ProjectAccess, user, job) -> dict:
    """The images a job made, for its page (registered with the job registry's page extras)."""
    return {
        "outputs": list(
            visible_outputs(access=access, user=user).filter(job=job, kind="image")[:24]
        )
    }
