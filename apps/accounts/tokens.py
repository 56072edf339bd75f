"""Links that let a person set their password: an invitation or a reset an admin issued.

Django's password-reset tokens already are what such a link needs: signed with SECRET_KEY,
expiring after PASSWORD_RESET_TIMEOUT, and single use, because the signed value covers the
password hash and the last login, which setting the password (and logging in) change. Our own
salt keeps them apart from any token Django's own reset views would make.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode


class PasswordLinkTokens(PasswordResetTokenGenerator):
    key_salt = "apps.accounts.tokens.PasswordLinkTokens"


password_links = PasswordLinkTokens()


def password_link_path(user) -> str:
    """The site-relative address of a fresh set-password link for `user`."""
    return reverse(
        "accounts:password_set",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": password_links.make_token(user),
        },
    )


def link_lifetime_hours() -> int:
    """How long a link stays good, for the page that hands it out."""
    return round(settings.PASSWORD_RESET_TIMEOUT / 3600)
