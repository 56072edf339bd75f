"""API token writes and reads (the token app is apps.api: tokens exist for the API alone)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.api.models import ApiToken
from apps.audit.services import audit_record
from apps.projects.selectors import project_access

PREFIX = "atl_"
# last_used_at is written at most this often per token: a busy script must not turn every call
# into a row update.
TOUCH_EVERY = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def token_create(
    *, user, name: str, project_id: int, expires_in_days: int | None = None, request=None
) -> tuple[ApiToken, str]:
    """A new token of `user` working in `project_id` (where they must be a member: 404
    otherwise). Returns the row and the token, which is not stored and cannot be shown again."""
    access = project_access(user=user, project_id=project_id)
    name = (name or "").strip()[:100] or "API token"
    raw = PREFIX + secrets.token_urlsafe(32)
    expires_at = None
    if expires_in_days:
        expires_at = timezone.now() + timedelta(days=expires_in_days)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            project=access.project,
            prefix=raw[: len(PREFIX) + 8],
            key_hash=hash_token(raw),
            expires_at=expires_at,
        )
        audit_record(
            actor=user,
            action="api_token.create",
            target=token,
            project=access.project,
            data={"name": name, "prefix": token.prefix},
            request=request,
        )
    return token, raw


def token_revoke(*, user, token_id: int, request=None) -> bool:
    """Revoke one of `user`'s own tokens (False when there is no such active token)."""
    with transaction.atomic():
        token = (
            ApiToken.objects.select_for_update()
            .filter(pk=token_id, user=user, revoked_at__isnull=True)
            .first()
        )
        if token is None:
            return False
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=user,
            action="api_token.revoke",
            target=token,
            project=token.project,
            data={"name": token.name, "prefix": token.prefix},
            request=request,
        )
    return True


def tokens_of(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).select_related("project")


def token_lookup(raw: str) -> ApiToken | None:
    """The active token `raw` names, with its user (None: unknown, revoked, expired, or its user
    inactive). Marks it used, at most once a minute."""
    if not raw.startswith(PREFIX) or len(raw) > 100:
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
