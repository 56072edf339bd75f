"""Who is calling the API: a personal token (`Authorization: Bearer atl_…`) or the browser's
session (with its CSRF check on writes). Either way the user then goes through the same
selectors as the pages; the token only says who, never what they may do.

Each authenticated request is counted against the per-minute rate limit of its token (or of its
session's user): past it, 429 with Retry-After.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from apps.api import ratelimit
from apps.api.tokens import token_lookup


class InvalidToken(Exception):
    """A bearer token was sent and it is unknown, revoked or expired: 401, whatever else the
    request carries (a script must learn that its token stopped working)."""


class TokenAuth(HttpBearer):
    openapi_scheme = "bearer"

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = token_lookup(token.strip())
        if found is None:
            raise InvalidToken()
        ratelimit.check(f"token:{found.pk}")
        request.user = found.user
        request.api_token = found  # type: ignore[attr-defined]
        return found.user


class SessionUser(SessionAuth):
    """The browser's session (pages call the API with it); CSRF checked on writes."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if request.headers.get("Authorization", "").lower().startswith("bearer "):
            return None  # a token was sent: it alone decides
        user = super().authenticate(request, key)
        if user is not None:
            ratelimit.check(f"user:{user.pk}")
            request.api_token = None  # type: ignore[attr-defined]
        return user


token_auth = TokenAuth()
session_auth = SessionUser()
TOKEN_OR_SESSION = [token_auth, session_auth]
