"""Audit logins, failed logins and lockouts. Auth signals are the one hook covering the app and
admin logins; axes' `user_locked_out` reports lockouts."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from apps.accounts.services import login_failures_forgive, login_lockout_record
from apps.audit.services import audit_record


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit_record(action="auth.login", actor=user, request=request)
    if request is not None:
        login_failures_forgive(request=request, username=user.get_username())


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="auth.logout", actor=user, request=request)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # Never record the password: only the username that was tried.
    audit_record(
        action="auth.login_failed",
        actor_username=str(credentials.get("username", ""))[:150],
        request=request,
    )


@receiver(user_locked_out)
def _locked_out(sender, request, username=None, **kwargs):
    login_lockout_record(request=request, username=username)
