"""Audit logins and failed logins. Auth signals are the one hook covering the app and admin logins."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from apps.audit.services import audit_record


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit_record(action="auth.login", actor=user, request=request)


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
