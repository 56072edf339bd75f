from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.services import audit_record
from apps.projects import events
from apps.projects.models import Membership, Project, Role


@transaction.atomic
def project_create(*, name: str, description: str = "", created_by, request=None) -> Project:
    """Create a project; its creator becomes its first admin (if the platform lets them)."""
    from apps.quotas.services import check_may_create_project

    check_may_create_project(created_by)
    project = Project(name=name.strip(), description=description.strip(), created_by=created_by)
    project.full_clean()
    project.save()
    Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    audit_record(
        action="project.create", actor=created_by, project=project, target=project, request=request
    )
    return project


def _admin_count(project: Project) -> int:
    # Lock the project row first: two admins demoting each other at once must not both pass.
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
    return project.memberships.filter(role=Role.ADMIN).count()


class UnknownUsername(ValidationError):
    """No user has this username. Pages answer it exactly as they answer a successful add, so
    the form cannot be used to find out which usernames exist."""


@transaction.atomic
def membership_add(
    *, project: Project, username: str, role: str, actor, request=None
) -> Membership:
    """Add an existing user to the project with a role."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    User = get_user_model()
    try:
        user = User.objects.get(username=username.strip())
    except User.DoesNotExist:
        raise UnknownUsername({"username": f"No user named {username.strip()!r}"}) from None
    if Membership.objects.filter(project=project, user=user).exists():
        raise ValidationError({"username": f"{user.username} is already a member"})
    membership = Membership.objects.create(project=project, user=user, role=role)
    audit_record(
        action="membership.add",
        actor=actor,
        project=project,
        target=membership,
        request=request,
        data={"user": user.username, "role": role},
    )
    return membership


def _close_sockets_after_commit(membership: Membership, *, reason: str) -> None:
    # After commit: a socket that reconnects at once must find the change in the database.
    user_id, project_id = membership.user_id, membership.project_id
    transaction.on_commit(
        lambda: events.ring_membership_revoked(
            user_id=user_id, project_id=project_id, reason=reason
        )
    )


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor, request=None) -> Membership:
    """Change a member's role; a project always keeps at least one admin."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    old = membership.role
    if old == role:
        return membership
    if old == Role.ADMIN and _admin_count(membership.project) <= 1:
        raise ValidationError("A project needs at least one admin")
    membership.role = role
    membership.save(update_fields=["role"])
    _close_sockets_after_commit(membership, reason=events.ROLE_CHANGED)
    audit_record(
        action="membership.role",
        actor=actor,
        project=membership.project,
        target=membership,
        request=request,
        data={"user": membership.user.username, "from": old, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor, request=None) -> None:
    """Remove a member; the last admin cannot be removed."""
    if membership.role == Role.ADMIN and _admin_count(membership.project) <= 1:
        raise ValidationError("A project needs at least one admin")
    audit_record(
        action="membership.remove",
        actor=actor,
        project=membership.project,
        target=membership,
        request=request,
        data={"user": membership.user.username, "role": membership.role},
    )
    _close_sockets_after_commit(membership, reason=events.REMOVED)
    membership.delete()


SETTINGS_FIELDS = ("name", "description", "require_dataset_approval", "max_concurrent_jobs")


@transaction.atomic
def project_update_settings(*, project: Project, actor, request=None, **values) -> Project:
    """Change a project's settings; what changed is audited."""
    changes = {}
    for field in SETTINGS_FIELDS:
        if field in values and getattr(project, field) != values[field]:
            changes[field] = {"from": getattr(project, field), "to": values[field]}
            setattr(project, field, values[field])
    if not changes:
        return project
    if "max_concurrent_jobs" in changes:
        from apps.quotas.services import check_project_concurrency

        check_project_concurrency(project.max_concurrent_jobs)
    project.full_clean()
    project.save(update_fields=list(changes))
    audit_record(
        action="project.settings",
        actor=actor,
        project=project,
        target=project,
        request=request,
        data=changes,
    )
    return project
