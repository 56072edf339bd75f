"""Login throttling writes: audit a lockout when it begins; forgive a user's own failures."""

from __future__ import annotations

from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.http import HttpRequest

from apps.accounts.lockout import locks, retry_at
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
    deleted, _ = AccessAttempt.objects.filter(
        username=username, ip_address=client_ip(request)
    ).delete()
    return deleted
