"""Projects and memberships services, and the audit trail of logins."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.projects.models import Membership, Project, Role
from apps.projects.services import (
    membership_add,
    membership_change_role,
    membership_remove,
    project_create,
)


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def studio(owner):
    return project_create(name="  Studio  ", description=" Portraits ", created_by=owner)


def _membership(project, user) -> Membership:
    return Membership.objects.get(project=project, user=user)


# --------------------------------------------------------------------------- project_create


def test_project_create_makes_the_creator_its_admin(owner):
    project = project_create(name="  Studio  ", description=" Portraits ", created_by=owner)

    project.refresh_from_db()
    assert (project.name, project.description, project.created_by) == ("Studio", "Portraits", owner)
    assert list(project.memberships.values_list("user__username", "role")) == [
        ("owner", Role.ADMIN)
    ]
    audit = AuditEvent.objects.get(action="project.create")
    assert (audit.actor, audit.project, audit.target_type, audit.target_id) == (
        owner,
        project,
        "project",
        str(project.pk),
    )


def test_project_create_rejects_a_blank_name_and_creates_nothing(owner):
    with pytest.raises(ValidationError) as info:
        project_create(name="   ", created_by=owner)

    assert "name" in info.value.message_dict
    assert not Project.objects.exists()
    assert not Membership.objects.exists()
    assert not AuditEvent.objects.filter(action="project.create").exists()


# --------------------------------------------------------------------------- membership_add


def test_membership_add_adds_an_existing_user_with_a_role(studio, owner, make_user):
    alice = make_user("alice")

    membership = membership_add(project=studio, username=" alice ", role=Role.REVIEWER, actor=owner)

    membership.refresh_from_db()
    assert (membership.project, membership.user, membership.role) == (studio, alice, Role.REVIEWER)
    audit = AuditEvent.objects.get(action="membership.add")
    assert (audit.actor, audit.project, audit.target_id) == (owner, studio, str(membership.pk))
    assert audit.data == {"user": "alice", "role": "reviewer"}


def test_membership_add_of_an_unknown_user_is_an_error_on_username(studio, owner):
    with pytest.raises(ValidationError) as info:
        membership_add(project=studio, username="ghost", role=Role.MEMBER, actor=owner)

    assert list(info.value.message_dict) == ["username"]
    assert "ghost" in info.value.message_dict["username"][0]
    assert studio.memberships.count() == 1
    assert not AuditEvent.objects.filter(action="membership.add").exists()


def test_membership_add_of_an_existing_member_is_an_error(studio, owner, make_user):
    make_user("alice")
    membership_add(project=studio, username="alice", role=Role.VIEWER, actor=owner)

    with pytest.raises(ValidationError) as info:
        membership_add(project=studio, username="alice", role=Role.ADMIN, actor=owner)

    assert "username" in info.value.message_dict
    assert list(
        studio.memberships.filter(user__username="alice").values_list("role", flat=True)
    ) == [Role.VIEWER]
    assert AuditEvent.objects.filter(action="membership.add").count() == 1


def test_membership_add_with_an_unknown_role_is_an_error_on_role(studio, owner, make_user):
    make_user("alice")

    with pytest.raises(ValidationError) as info:
        membership_add(project=studio, username="alice", role="overlord", actor=owner)

    assert list(info.value.message_dict) == ["role"]
    assert studio.memberships.count() == 1


# --------------------------------------------------------------------------- membership_change_role


def test_membership_change_role_changes_it_and_audits_from_and_to(studio, owner, make_user):
    make_user("alice")
    membership = membership_add(project=studio, username="alice", role=Role.VIEWER, actor=owner)

    membership_change_role(membership=membership, role=Role.MEMBER, actor=owner)

    membership.refresh_from_db()
    assert membership.role == Role.MEMBER
    audit = AuditEvent.objects.get(action="membership.role")
    assert (audit.actor, audit.project, audit.target_id) == (owner, studio, str(membership.pk))
    assert audit.data == {"user": "alice", "from": "viewer", "to": "member"}


def test_changing_a_role_to_the_same_role_writes_no_audit(studio, owner):
    membership = _membership(studio, owner)

    membership_change_role(membership=membership, role=Role.ADMIN, actor=owner)

    assert not AuditEvent.objects.filter(action="membership.role").exists()


def test_membership_change_role_to_an_unknown_role_is_refused(studio, owner, make_user):
    make_user("alice")
    membership = membership_add(project=studio, username="alice", role=Role.VIEWER, actor=owner)

    with pytest.raises(ValidationError):
        membership_change_role(membership=membership, role="overlord", actor=owner)

    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


def test_the_last_admin_cannot_be_demoted(studio, owner):
    membership = _membership(studio, owner)

    with pytest.raises(ValidationError):
        membership_change_role(membership=membership, role=Role.MEMBER, actor=owner)

    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert not AuditEvent.objects.filter(action="membership.role").exists()


def test_an_admin_can_be_demoted_while_another_admin_remains(studio, owner, make_user):
    make_user("alice")
    membership_add(project=studio, username="alice", role=Role.ADMIN, actor=owner)
    membership = _membership(studio, owner)

    membership_change_role(membership=membership, role=Role.MEMBER, actor=owner)

    membership.refresh_from_db()
    assert membership.role == Role.MEMBER
    assert list(
        studio.memberships.filter(role=Role.ADMIN).values_list("user__username", flat=True)
    ) == ["alice"]


# --------------------------------------------------------------------------- membership_remove


def test_membership_remove_removes_it_and_audits_who_was_removed(studio, owner, make_user):
    make_user("alice")
    membership = membership_add(project=studio, username="alice", role=Role.MEMBER, actor=owner)
    pk = membership.pk

    membership_remove(membership=membership, actor=owner)

    assert not Membership.objects.filter(pk=pk).exists()
    audit = AuditEvent.objects.get(action="membership.remove")
    assert (audit.actor, audit.project, audit.target_type, audit.target_id) == (
        owner,
        studio,
        "membership",
        str(pk),
    )
    assert audit.data == {"user": "alice", "role": "member"}


def test_the_last_admin_cannot_be_removed(studio, owner):
    membership = _membership(studio, owner)

    with pytest.raises(ValidationError):
        membership_remove(membership=membership, actor=owner)

    assert Membership.objects.filter(pk=membership.pk, role=Role.ADMIN).exists()
    assert not AuditEvent.objects.filter(action="membership.remove").exists()


def test_an_admin_can_be_removed_while_another_admin_remains(studio, owner, make_user):
    make_user("alice")
    membership_add(project=studio, username="alice", role=Role.ADMIN, actor=owner)
    membership = _membership(studio, owner)

    membership_remove(membership=membership, actor=owner)

    assert list(studio.memberships.values_list("user__username", "role")) == [("alice", Role.ADMIN)]


def test_audit_events_are_append_only(studio):
    audit = AuditEvent.objects.get(action="project.create")

    audit.action = "something.else"
    with pytest.raises(ValueError):
        audit.save()
    with pytest.raises(ValueError):
        audit.delete()

    audit.refresh_from_db()
    assert audit.action == "project.create"


# --------------------------------------------------------------------------- login audit


def test_a_login_writes_an_auth_login_audit_event(client, make_user):
    alice = make_user("alice")

    response = client.post(reverse("accounts:login"), {"username": "alice", "password": "pw-alice"})

    assert response.status_code == 302
    audit = AuditEvent.objects.get(action="auth.login")
    assert (audit.actor, audit.actor_username) == (alice, "alice")
    assert audit.ip_address == "127.0.0.1"
    assert not AuditEvent.objects.filter(action="auth.login_failed").exists()


def test_a_failed_login_is_audited_without_the_password(client, make_user):
    make_user("alice")
    secret = "Tr0ub4dor&3-wrong-guess"

    response = client.post(reverse("accounts:login"), {"username": "alice", "password": secret})

    assert response.status_code == 200  # the form again, with an error
    assert not AuditEvent.objects.filter(action="auth.login").exists()
    audit = AuditEvent.objects.get(action="auth.login_failed")
    assert audit.actor is None
    assert audit.actor_username == "alice"
    assert audit.ip_address == "127.0.0.1"
    stored = json.dumps(model_to_dict(audit), default=str) + json.dumps(audit.data) + str(audit)
    assert secret not in stored
    assert "password" not in json.dumps(audit.data)


def test_a_failed_login_for_an_unknown_user_is_audited_with_the_name_tried(client, db):
    response = client.post(
        reverse("accounts:login"), {"username": "mallory", "password": "hunter2-secret"}
    )

    assert response.status_code == 200
    audit = AuditEvent.objects.get(action="auth.login_failed")
    assert audit.actor_username == "mallory"
    assert "hunter2-secret" not in json.dumps(model_to_dict(audit), default=str)


def test_an_admin_turns_off_dataset_approval_and_the_change_is_audited(client, project, people):
    from apps.audit.models import AuditEvent

    assert project.require_dataset_approval is True
    client.force_login(people["admin"])
    response = client.post(
        reverse("projects:settings", args=[project.pk]),
        {"name": project.name, "description": "", "max_concurrent_jobs": "4"},
    )

    assert response.status_code == 302
    project.refresh_from_db()
    assert project.require_dataset_approval is False and project.max_concurrent_jobs == 4
    event = AuditEvent.objects.get(action="project.settings")
    assert event.data["require_dataset_approval"] == {"from": True, "to": False}
