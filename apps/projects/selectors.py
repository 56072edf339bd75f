"""The one permission layer: every view, API route and websocket consumer asks here.

A user who is not a member of a project gets Http404 (the project's existence is not revealed);
a member whose role lacks the capability gets PermissionDenied (403). Platform superusers act
as project admins everywhere (they run the installation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext, gettext_lazy

from apps.projects.models import Membership, Project, Role

# capability -> roles that have it
CAPABILITIES: dict[str, frozenset[str]] = {
    "view": frozenset({Role.ADMIN, Role.MEMBER, Role.REVIEWER, Role.VIEWER}),
    "launch_job": frozenset({Role.ADMIN, Role.MEMBER}),
    "cancel_job": frozenset({Role.ADMIN, Role.MEMBER}),
    "review": frozenset({Role.ADMIN, Role.REVIEWER}),
    "scan_dataset": frozenset({Role.ADMIN, Role.MEMBER, Role.REVIEWER}),
    "manage_members": frozenset({Role.ADMIN}),
    # The project's audit log (decisions, rule changes): admins, and the reviewers it records.
    "view_audit": frozenset({Role.ADMIN, Role.REVIEWER}),
    "manage_rules": frozenset({Role.ADMIN}),
}


# What a missing capability is called in the 403 reason ("Your role (Viewer) cannot launch jobs
# here"), translated where the page is.
CAPABILITY_LABELS: dict[str, Any] = {
    "view": gettext_lazy("view this project"),
    "launch_job": gettext_lazy("launch jobs"),
    "cancel_job": gettext_lazy("cancel jobs"),
    "review": gettext_lazy("review"),
    "scan_dataset": gettext_lazy("scan datasets"),
    "manage_members": gettext_lazy("manage members"),
    "view_audit": gettext_lazy("view the audit log"),
    "manage_rules": gettext_lazy("manage the rules"),
}


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str

    def can(self, capability: str) -> bool:
        return self.role in CAPABILITIES[capability]


def role_can(role: str, capability: str) -> bool:
    return role in CAPABILITIES[capability]


def project_access(*, user, project_id: int, need: str = "view") -> ProjectAccess:
    """The project and the user's role in it; 404 for strangers, 403 for a missing capability."""
    if need not in CAPABILITIES:
        raise ValueError(f"unknown capability {need!r}")
    if user is None or not user.is_authenticated or not user.is_active:
        raise Http404("No such project")
    project: Project | None
    role: str | None
    try:
        if user.is_superuser:
            project, role = Project.objects.filter(pk=project_id).first(), Role.ADMIN
        else:
            # The membership and its project in one statement (every request asks this).
            found = (
                Membership.objects.filter(project_id=project_id, user=user)
                .select_related("project")
                .order_by()[:1]
            )
            membership = next(iter(found), None)
            project, role = (membership.project, membership.role) if membership else (None, None)
    except (ValueError, TypeError):  # an id that is not a number
        project = None
    if project is None or role is None:
        raise Http404("No such project")
    access = ProjectAccess(project=project, role=role)
    if not access.can(need):
        raise PermissionDenied(
            gettext("Your role (%(role)s) cannot %(action)s here")
            % {"role": Role(role).label, "action": CAPABILITY_LABELS[need]}
        )
    return access


# Pairs asked per statement of `current_roles` (well under SQLite's 32,766 parameters).
ROLES_CHUNK = 500


def current_roles(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """The role each (user id, project id) pair has now, by `project_access`'s rule: an active
    user; a superuser is an admin of every project that exists; anyone else has their
    membership's role. Pairs without access are left out. Three statements per `ROLES_CHUNK`
    pairs, whatever their users: a process's websocket resync round asks this for all its sockets
    at once, instead of two statements per socket (tests compare it with `project_access`)."""
    roles: dict[tuple[int, int], str] = {}
    wanted = sorted(set(pairs))
    for lo in range(0, len(wanted), ROLES_CHUNK):
        chunk = set(wanted[lo : lo + ROLES_CHUNK])
        users = dict(
            get_user_model()
            .objects.filter(pk__in={u for u, _ in chunk}, is_active=True)
            .values_list("pk", "is_superuser")
        )
        members = {u for u, superuser in users.items() if not superuser}
        if members:
            for user_id, project_id, role in Membership.objects.filter(
                user_id__in=members, project_id__in={p for u, p in chunk if u in members}
            ).values_list("user_id", "project_id", "role"):
                if (user_id, project_id) in chunk:
                    roles[user_id, project_id] = role
        admins = [(u, p) for u, p in chunk if users.get(u)]
        if admins:
            existing = set(
                Project.objects.filter(pk__in={p for _, p in admins}).values_list("pk", flat=True)
            )
            roles.update({pair: Role.ADMIN for pair in admins if pair[1] in existing})
    return roles


def memberships_for_user(*, user) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("project").order_by("project__name")


def projects_for_user(*, user) -> QuerySet[Project]:
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def project_memberships(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")
