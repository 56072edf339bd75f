"""Request bodies are bounded before anything reads them.

Django's ASGI handler reads the whole body — spooled to a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE — before any middleware or view runs, so a limit in a view (or in
Django middleware) comes after the disk was written. `BodyLimit` wraps the Django ASGI app
(webapp/asgi.py) instead:

- every route accepts ATELIER_MAX_REQUEST_BYTES (1 MiB by default): forms, JSON, logins;
- the upload routes in UPLOADS accept more, but only from a signed-in, active user whose role in
  the route's project allows the upload — decided from the session cookie before a byte is read,
  so an anonymous or foreign request never gets the big limit. The view still checks everything
  itself: this only decides how much may be read;
- one exception, by design: the public verifier (`/verify/`, anyone may ask whether a file is on
  chain) reads an image from anyone, up to IMAGE_UPLOAD_CAP; its view hashes the file as a
  stream (constant memory) and keeps nothing;
- a Content-Length over the limit is answered 413 at once, nothing read; a body without one
  (chunked) is counted as it streams and refused as soon as the count passes the limit.

A refused request gets 413 with a sentence that says the limit (JSON under /api/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.cookies import SimpleCookie
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import Resolver404, resolve

MiB = 1024 * 1024
# Multipart boundaries and the other form fields beside the file.
FORM_OVERHEAD = MiB
# Gallery images and PNG info have their own, smaller limits (30 MB, 50 MB): nothing beyond
# this is ever worth reading for them.
IMAGE_UPLOAD_CAP = 64 * MiB


@dataclass(frozen=True)
class Upload:
    need: str  # the capability (apps/projects/selectors.py) the view asks for
    image: bool = False  # capped at IMAGE_UPLOAD_CAP
    public: bool = False  # anyone, without a session (the route has no project): image-capped

    def limit(self) -> int:
        most = int(settings.ATELIER_MAX_UPLOAD_BYTES)
        capped = self.image or self.public
        return (min(most, IMAGE_UPLOAD_CAP) if capped else most) + FORM_OVERHEAD


# URL name -> who may send a large body there. Every other route gets ATELIER_MAX_REQUEST_BYTES.
UPLOADS: dict[str, Upload] = {
    "datasets:upload": Upload(need="launch_job"),
    "api:datasets": Upload(need="launch_job"),
    "galleries:upload": Upload(need="launch_job", image=True),
    "galleries:png_info": Upload(need="view", image=True),
    "provenance:verify": Upload(need="", public=True),
    # OpenAI-compatible file upload (training JSONL): the token's project.
    "openai:files": Upload(need="launch_job"),
    "openai:image_edits": Upload(need="launch_job", image=True),
}


def default_limit() -> int:
    return int(settings.ATELIER_MAX_REQUEST_BYTES)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def _content_length(scope) -> int | None:
    raw = _header(scope, b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # the server refuses these; if not, the body is counted


def _path(scope) -> str:
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _session_user(session_key: str):
    """The active user signed in with this session, or None. Read-only (unlike auth.get_user,
    which may flush or re-key the session): the view's own authentication runs afterwards."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
    from django.utils.crypto import constant_time_compare

    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id, backend = session.get(SESSION_KEY), session.get(BACKEND_SESSION_KEY)
    if not user_id or backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend).get_user(user_id)
    if user is None or not user.is_active:
        return None
    session_hash = session.get(HASH_SESSION_KEY) or ""
    if not constant_time_compare(session_hash, user.get_session_auth_hash()):
        return None
    return user


# The API token lookup (apps/api/tokens.py token_lookup), set by the API app when it loads: the
# apps import this module (their upload views name their limits), so it must not import them.
bearer_lookup = None


def _may_upload(session_key: str, project_id, need: str, bearer: str = "") -> bool:
    """Whether the session's user (or, with `bearer`, the API token's) may upload in the
    project; a token without a project in the URL uploads to its own project."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    from apps.projects.selectors import project_access

    if bearer:
        token = bearer_lookup(bearer) if bearer_lookup is not None else None
        if token is None:
            return False
        user = token.user
        project_id = project_id if project_id is not None else token.project_id
    else:
        user = _session_user(session_key)
    if user is None or project_id is None:
        return False
    try:
        project_access(user=user, project_id=project_id, need=need)
    except (Http404, PermissionDenied):
        return False
    return True


async def route_limit(scope) -> int:
    """How many body bytes this request may send (ATELIER_MAX_REQUEST_BYTES unless an upload
    route and an uploader's session)."""
    try:
        match = resolve(_path(scope))
    except Resolver404:
        return default_limit()
    upload = UPLOADS.get(match.view_name)
    if upload is not None and upload.public:
        return max(upload.limit(), default_limit())
    if upload is None:
        return default_limit()
    authorization = (_header(scope, b"authorization") or b"").decode("latin-1")
    if authorization[:7].lower() == "bearer ":
        allowed = await database_sync_to_async(_may_upload)(
            "", match.kwargs.get("project_id"), upload.need, authorization[7:].strip()
        )
        return max(upload.limit(), default_limit()) if allowed else default_limit()
    if "project_id" not in match.kwargs:
        return default_limit()
    cookie = SimpleCookie()
    try:
        cookie.load((_header(scope, b"cookie") or b"").decode("latin-1"))
    except Exception:  # noqa: BLE001 - a malformed cookie header is an anonymous request
        return default_limit()
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    if morsel is None or not morsel.value:
        return default_limit()
    allowed = await database_sync_to_async(_may_upload)(
        morsel.value, match.kwargs["project_id"], upload.need
    )
    return max(upload.limit(), default_limit()) if allowed else default_limit()


async def refuse(scope, send, limit: int) -> None:
    """413 with the limit in words (JSON for the API)."""
    message = (
        f"Request body too large: this address accepts at most {limit:,} bytes"
        " (uploads need a signed-in user allowed to upload in the project)"
    )
    if _path(scope).startswith("/api/"):
        body = json.dumps({"error": {"message": message, "limit": limit}}).encode()
        content_type = b"application/json"
    else:
        body = (message + "\n").encode()
        content_type = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                # The unread body is still on the wire: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware around the Django app: see the module docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _content_length(scope)
        if length is not None:
            if length > default_limit():
                limit = await route_limit(scope)
                if length > limit:
                    return await refuse(scope, send, limit)
            # The server delivers no more than Content-Length bytes.
            return await self.app(scope, receive, send)
        return await self._counted(scope, receive, send)

    async def _counted(self, scope, receive, send):
        state = {"seen": 0, "limit": default_limit(), "resolved": False, "over": False}
        started = False

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request" and not state["over"]:
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > state["limit"] and not state["resolved"]:
                    # Asked only once a body outgrows the default: most requests cost nothing.
                    state["limit"], state["resolved"] = await route_limit(scope), True
                if state["seen"] > state["limit"]:
                    # Django reads this as the client going away: it stops reading, closes
                    # what it spooled and returns without answering; we answer below.
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
        if state["over"] and not started:
            await refuse(scope, send, state["limit"])
