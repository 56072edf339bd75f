"""What the OpenAI-compatible endpoints share: the token's project, checked as the pages check it."""

from __future__ import annotations

from django.http import HttpRequest

from apps.projects.selectors import ProjectAccess, project_access


def token_project(request: HttpRequest, need: str = "view") -> ProjectAccess:
    """The token's default project and the caller's role in it (404 when they left it, 403 when
    their role lacks `need`): /v1/ URLs name no project, the token does."""
    token = getattr(request, "api_token", None)
    if token is None:  # TokenAuth runs first on every /v1/ operation; this is a programming error
        raise RuntimeError("/v1/ endpoints need TokenAuth")
    return project_access(user=request.user, project_id=token.project_id, need=need)
