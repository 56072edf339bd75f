"""Projects the caller belongs to."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema

from apps.api.native.common import ERRORS, PageQuery, page
from apps.projects import selectors as project_selectors

router = Router(tags=["projects"])


class ProjectOut(Schema):
    id: int
    name: str
    role: Literal["admin", "member", "reviewer", "viewer"]


class ProjectPage(Schema):
    data: list[ProjectOut]
    has_more: bool


@router.get("/projects/", url_name="projects", response={200: ProjectPage, **ERRORS})
def list_projects(request: HttpRequest, q: Query[PageQuery]):
    """The projects the caller is a member of, with their role in each; paged by project id."""
    memberships, more = page(
        project_selectors.memberships_for_user(user=request.user), q, key="project_id"
    )
    return {
        "data": [{"id": m.project.pk, "name": m.project.name, "role": m.role} for m in memberships],
        "has_more": more,
    }
