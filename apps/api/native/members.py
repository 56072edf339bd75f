"""A project's members: everyone in it may list them; admins add, change roles and remove,
through the same services as the members page (a project always keeps an admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from apps.api.native.common import ERRORS, PageQuery, page
from apps.projects import selectors as project_selectors
from apps.projects import services as project_services
from apps.projects.models import Membership

router = Router(tags=["members"])
MEMBER = "/projects/{int:project_id}/members/{int:membership_id}/"
RoleName = Literal["admin", "member", "reviewer", "viewer"]


class MemberOut(Schema):
    id: int = Field(..., description="The membership's id (what the member URLs name)")
    user_id: int
    username: str
    role: RoleName
    created_at: datetime


class MemberPage(Schema):
    data: list[MemberOut]
    has_more: bool


class MemberAdd(Schema):
    username: str = Field(..., min_length=1, max_length=150)
    role: RoleName = "member"


class MemberAdded(Schema):
    username: str
    role: RoleName
    message: str


class MemberRole(Schema):
    role: RoleName


def member_json(m: Membership) -> dict:
    return {
        "id": m.pk,
        "user_id": m.user_id,
        "username": m.user.get_username(),
        "role": m.role,
        "created_at": m.created_at,
    }


@router.get(
    "/projects/{int:project_id}/members/",
    url_name="members",
    response={200: MemberPage, **ERRORS},
)
def list_members(request: HttpRequest, project_id: int, q: Query[PageQuery]):
    """The project's members with their roles (any member may see who is in the project)."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    rows, more = page(project_selectors.project_memberships(project=access.project), q)
    return {"data": [member_json(m) for m in rows], "has_more": more}


@router.post(
    "/projects/{int:project_id}/members/",
    url_name="members",
    response={202: MemberAdded, **ERRORS},
)
def add_member(request: HttpRequest, project_id: int, body: MemberAdd):
    """Admins: give an existing user a role here. Answered alike whether or not the username
    exists (as on the members page, the form must not reveal which users exist): list the
    members to see them."""
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="manage_members"
    )
    username = body.username.strip()
    try:
        project_services.membership_add(
            project=access.project,
            username=username,
            role=body.role,
            actor=request.user,
            request=request,
        )
    except project_services.UnknownUsername:
        pass  # the same answer as an add, as on the page
    return Status(
        202,
        {
            "username": username,
            "role": body.role,
            "message": f"If a user named {username} exists, they now have the {body.role} role",
        },
    )


def _membership(request: HttpRequest, project_id: int, membership_id: int, need: str):
    access = project_selectors.project_access(user=request.user, project_id=project_id, need=need)
    membership = get_object_or_404(
        Membership.objects.select_related("user", "project"),
        pk=membership_id,
        project=access.project,
    )
    return access, membership


@router.get(MEMBER, url_name="member", response={200: MemberOut, **ERRORS})
def get_member(request: HttpRequest, project_id: int, membership_id: int):
    _, membership = _membership(request, project_id, membership_id, "view")
    return member_json(membership)


@router.patch(MEMBER, url_name="member", response={200: MemberOut, **ERRORS})
def change_role(request: HttpRequest, project_id: int, membership_id: int, body: MemberRole):
    """Admins: change a member's role (the last admin keeps theirs: 400)."""
    _, membership = _membership(request, project_id, membership_id, "manage_members")
    project_services.membership_change_role(
        membership=membership, role=body.role, actor=request.user, request=request
    )
    return member_json(membership)


@router.delete(MEMBER, url_name="member", response={204: None, **ERRORS})
def remove_member(request: HttpRequest, project_id: int, membership_id: int):
    """Admins: remove a member (not the last admin: 400)."""
    _, membership = _membership(request, project_id, membership_id, "manage_members")
    project_services.membership_remove(membership=membership, actor=request.user, request=request)
    return Status(204, None)
