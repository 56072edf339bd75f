"""Request bodies are bounded before they are read (webapp/limits.py around the ASGI app).

These drive the real ASGI application (webapp.asgi.application), as uvicorn does: the Django
test client bypasses it. The body is fed in 1 MiB chunks and every byte the application pulls is
counted; a refused request must have read nothing (Content-Length) or no more than the limit
(chunked), and Django must never have spooled anything to disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.urls import reverse

from apps.jobs.models import Job
from webapp.asgi import application
from workers.tasks.runtime import execute_job

MiB = 1024 * 1024
CHUNK = b"x" * MiB
CSRF = "c" * 32


class Spooled(tempfile.SpooledTemporaryFile):
    """Records whether Django's body spool (django.core.handlers.asgi) went to disk."""

    rolled: list[int] = []

    def rollover(self):
        Spooled.rolled.append(self.tell())
        super().rollover()


@pytest.fixture
def spool(monkeypatch):
    Spooled.rolled = []
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", Spooled)
    return Spooled.rolled


def _temp_files() -> set[str]:
    folders = {tempfile.gettempdir(), settings.FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir()}
    return {os.path.join(d, name) for d in folders for name in os.listdir(d)}


def _multipart(fields: dict[str, str], filename: str, payload: bytes) -> tuple[bytes, bytes]:
    boundary = "atelier-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}".encode()


def request(
    path: str,
    *,
    size: int | None = None,
    body: bytes | None = None,
    chunked: bool = False,
    content_type: bytes = b"application/x-www-form-urlencoded",
    cookie: str = "",
) -> dict:
    """POST through the ASGI app; the body is `body`, or `size` bytes of junk."""
    if body is None:
        body = b""
        total = size or 0
    else:
        total = len(body)
    headers = [(b"host", b"localhost"), (b"content-type", content_type)]
    if not chunked:
        headers.append((b"content-length", str(total).encode()))
    if cookie:  # a signed-in browser: its session and its CSRF token
        headers.append(
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}; csrftoken={CSRF}".encode())
        )
        headers.append((b"x-csrftoken", CSRF.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("localhost", 80),
    }
    result = {"read": 0, "status": None, "headers": {}, "body": b""}

    def chunks():
        if body:
            for i in range(0, len(body), MiB):
                yield body[i : i + MiB]
        else:
            for i in range(0, total, MiB):
                yield CHUNK[: min(MiB, total - i)]

    feed = chunks()

    async def receive():
        piece = next(feed, None)
        if piece is None:
            if result["read"] >= total:
                # Past the body the app only listens for the client leaving: it never does.
                await asyncio.Event().wait()
            piece = b""
        result["read"] += len(piece)
        return {"type": "http.request", "body": piece, "more_body": result["read"] < total}

    async def send(message):
        if message["type"] == "http.response.start":
            result["status"] = message["status"]
            result["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            result["body"] += message.get("body", b"")

    async_to_sync(application)(scope, receive, send)
    return result


LOGIN = "/accounts/login/"


def test_the_login_page_is_where_the_tests_send_it():
    assert reverse("accounts:login") == LOGIN


# --------------------------------------------------------------------------- anonymous


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_50_mb_post_to_the_login_page_is_refused_unread(spool):
    before = _temp_files()

    response = request(LOGIN, size=50 * MiB)

    assert response["status"] == 413
    assert "at most 1,048,576 bytes" in response["body"].decode()
    assert response["read"] == 0
    assert spool == []
    assert _temp_files() - before == set()


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_50_mb_post_to_the_dataset_api_is_refused_with_a_json_error(project, spool):
    before = _temp_files()

    response = request(reverse("api:datasets", args=[project.pk]), size=50 * MiB)

    assert response["status"] == 413
    assert response["headers"]["content-type"] == "application/json"
    error = json.loads(response["body"])["error"]
    assert error["limit"] == settings.ATELIER_MAX_REQUEST_BYTES
    assert "too large" in error["message"]
    assert response["read"] == 0
    assert spool == []
    assert _temp_files() - before == set()


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(spool):
    before = _temp_files()

    response = request(LOGIN, size=50 * MiB, chunked=True)

    assert response["status"] == 413
    assert response["read"] <= settings.ATELIER_MAX_REQUEST_BYTES + MiB
    assert spool == []
    assert _temp_files() - before == set()


@pytest.mark.django_db(transaction=True)
def test_a_chunked_upload_from_an_anonymous_client_gets_only_the_small_limit(project, spool):
    response = request(reverse("datasets:upload", args=[project.pk]), size=50 * MiB, chunked=True)

    assert response["status"] == 413
    assert response["read"] <= settings.ATELIER_MAX_REQUEST_BYTES + MiB
    assert spool == []


@pytest.mark.django_db(transaction=True)
def test_a_small_login_post_still_reaches_the_login_view(make_user):
    make_user("alice")

    response = request(LOGIN, body=b"username=alice&password=wrong")

    assert response["status"] == 403  # no CSRF token: Django answered, not the limit


# --------------------------------------------------------------------------- uploaders


def _session(client, user) -> str:
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _csv(rows: int) -> bytes:
    line = "What is the blood pressure of a healthy adult at rest?,About 120 over 80.\n"
    return ("question,answer\n" + "".join(f"{i} {line}" for i in range(rows))).encode()


@pytest.mark.django_db(transaction=True)
def test_a_member_uploads_a_dataset_larger_than_the_default_limit(client, project, people):
    payload = _csv(30_000)
    assert len(payload) > 2 * MiB
    body, content_type = _multipart(
        {"name": "Big", "license": "CC0-1.0", "source": "tests"}, "big.csv", payload
    )

    response = request(
        reverse("api:datasets", args=[project.pk]),
        body=body,
        content_type=content_type,
        cookie=_session(client, people["member"]),
    )

    assert response["status"] == 202, response["body"][:500]  # every import is a job
    job_id = json.loads(response["body"])["id"]
    assert execute_job(job_id, worker_id="test") == "succeeded"
    assert Job.objects.get(pk=job_id).result["rows"] == 30_000


@pytest.mark.django_db(transaction=True)
def test_a_members_chunked_body_under_the_upload_limit_is_read_in_full(client, project, people):
    # Django parses no multipart body without a Content-Length, so the view answers 400; what
    # matters here is that the limit let every byte through.
    response = request(
        reverse("api:datasets", args=[project.pk]),
        size=5 * MiB,
        chunked=True,
        cookie=_session(client, people["member"]),
    )

    assert response["status"] == 400
    assert response["read"] == 5 * MiB


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ["viewer", "outsider"])
def test_a_signed_in_user_who_may_not_upload_there_gets_only_the_small_limit(
    client, project, people, persona, spool
):
    response = request(
        reverse("api:datasets", args=[project.pk]),
        size=5 * MiB,
        cookie=_session(client, people[persona]),
    )

    assert response["status"] == 413
    assert response["read"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_forged_session_cookie_gets_only_the_small_limit(project, spool):
    response = request(
        reverse("datasets:upload", args=[project.pk]), size=5 * MiB, cookie="not-a-session"
    )

    assert response["status"] == 413
    assert response["read"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_over_atelier_max_upload_bytes_is_refused_even_for_a_member(
    client, project, people, settings, chunked
):
    settings.ATELIER_MAX_UPLOAD_BYTES = 2 * MiB

    response = request(
        reverse("datasets:upload", args=[project.pk]),
        size=8 * MiB,
        chunked=chunked,
        cookie=_session(client, people["member"]),
    )

    assert response["status"] == 413
    assert f"at most {3 * MiB:,} bytes" in response["body"].decode()  # + 1 MiB of form fields
    assert response["read"] <= 4 * MiB


@pytest.mark.django_db(transaction=True)
def test_a_gallery_upload_is_capped_below_the_dataset_limit(client, project, people):
    response = request(
        reverse("galleries:upload", args=[project.pk]),
        size=100 * MiB,
        cookie=_session(client, people["member"]),
    )

    assert response["status"] == 413
    assert response["read"] == 0
