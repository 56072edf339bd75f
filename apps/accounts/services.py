"""Account writes: login throttling's audit and forgiveness, and the People pages' actions
(create, invite, reset, deactivate) and a user's own password changes, each audited."""

from __future__ import annotations

from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from apps.accounts.lockout import locks, retry_at
from apps.accounts.tokens import password_link_path
from apps.audit.services import audit_record, client_ip


def login_lockout_record(*, request: HttpRequest, username: str | None) -> None:
    """Audit a lockout once: axes reports every refused attempt, we record the one that locked."""
    credentials = getattr(request, "axes_credentials", None)
    limit = get_failure_limit(request, credentials)
    # Failures go on counting during a lockout, so a count exactly at the limit is its start.
    started = [lock.parameter for lock in locks(request, credentials) if lock.failures == limit]
    if not started:
        return
    audit_record(
        action="auth.lockout",
        actor_username=str(username or "")[:150],
        request=request,
        data={
            "locked": started,
            "failures": limit,
            "retry_at": retry_at(request, credentials).isoformat(),
        },
    )


def login_failures_forgive(*, request: HttpRequest, username: str) -> int:
    """After a successful login, clear the failures of this username from this address only.

    Not axes' AXES_RESET_ON_SUCCESS: that also clears every failure from the address, so an
    attacker could log in to their own account between guesses at another one.
    """
    deleted, _count = AccessAttempt.objects.filter(
        username=username, ip_address=client_ip(request)
    ).delete()
    return deleted


@transaction.atomic
def user_create(
    *, username: str, email: str, password: str | None, actor, request: HttpRequest | None
) -> tuple[AbstractBaseUser, str | None]:
    """Create an account; without a password, it gets none and an invitation link to set one.

    Returns the user and the invitation's path (None when a password was given). The password
    was checked against the validators by the form.
    """
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("A user with that username already exists.")})
    user = User(username=username, email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    link = None if password else password_link_path(user)
    audit_record(
        action="people.user_create",
        actor=actor,
        target=user,
        request=request,
        data={"username": username, "invited": link is not None},
    )
    return user, link


@transaction.atomic
def password_reset_issue(*, user, actor, request: HttpRequest | None) -> str:
    """Stop the user's password working now and return a link for them to choose a new one.

    The old password is made unusable at once (a reset is also how an admin shuts out whoever
    knows it), which also ends the user's sessions: their auth hash changes.
    """
    user.set_unusable_password()
    user.save(update_fields=["password"])
    audit_record(
        action="people.password_reset",
        actor=actor,
        target=user,
        request=request,
        data={"username": user.get_username()},
    )
    return password_link_path(user)


def invitation_reissue(*, user, actor, request: HttpRequest | None) -> str:
    """A fresh invitation for a user who has not set a password yet (the first one expired)."""
    if user.has_usable_password():
        raise ValidationError(_("This user has a password already; reset it instead."))
    audit_record(
        action="people.invite",
        actor=actor,
        target=user,
        request=request,
        data={"username": user.get_username()},
    )
    return password_link_path(user)


def user_set_active(*, user, active: bool, actor, request: HttpRequest | None) -> None:
    """Deactivate (no logins, no API tokens, sessions end) or reactivate an account."""
    if not active and user.pk == actor.pk:
        raise ValidationError(_("You cannot deactivate your own account."))
    if user.is_active == active:
        return
    user.is_active = active
    user.save(update_fields=["is_active"])
    audit_record(
        action="people.activate" if active else "people.deactivate",
        actor=actor,
        target=user,
        request=request,
        data={"username": user.get_username()},
    )


def password_changed_record(*, user, request: HttpRequest | None, by_link: bool) -> None:
    """Audit a password a user set themselves: on their settings page or through a link."""
    audit_record(
        action="auth.password_set_by_link" if by_link else "auth.password_change",
        actor=user,
        actor_username=user.get_username(),
        target=user,
        request=request,
    )
