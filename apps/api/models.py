"""Personal API tokens: a script or an OpenAI client acts as its user, with the user's roles.

Only the SHA-256 of a token is stored (tokens are 190 random bits, so a fast hash is as good as a
slow one and the lookup is one indexed equality); the token itself is shown once, when made. A
token has a default project: the one the OpenAI-compatible endpoints (/v1/) work in, since those
URLs name no project. The native API (/api/v1/) names its project in the URL and checks the
membership there, as the pages do, so a token never reaches further than its user.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    project = models.ForeignKey(
        "projects.Project",
        on_delete=models.CASCADE,
        related_name="api_tokens",
        help_text="The project the OpenAI-compatible endpoints (/v1/) work in.",
    )
    # "atl_" + the first 8 characters of the secret part: enough to tell tokens apart in a list
    # and in the audit log, not enough to use.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()
