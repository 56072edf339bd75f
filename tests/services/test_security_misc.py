"""Issue 10, item 6: revoked websockets, tracebacks for admins only, Content-Disposition, CSP,
and an add-member form that does not reveal which usernames exist."""

from __future__ import annotations

import asyncio
import html
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.datasets.services import dataset_import
from apps.jobs.models import EventKind, JobEvent
from apps.jobs.services import job_create
from apps.projects.models import Membership, Project
from apps.projects.services import membership_change_role, membership_remove
from tests.test_authorization import fill_route, http_routes, world  # noqa: F401  (the fixture)
from webapp.asgi import application
from workers.tasks.runtime import execute_job

REVOKED, ROLE_CHANGED = 4403, 1012


def _cookie_headers(_client, user) -> list[tuple[bytes, bytes]]:
    client = Client()  # a session of its own: logging another user in would end this one
    client.force_login(user)
    session = client.cookies["sessionid"].value
    return [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={session}".encode()),
    ]


async def _open(path: str, headers) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert connected, path
    return ws


async def _drain(ws: WebsocketCommunicator, quiet: float = 0.3) -> list[dict]:
    """Everything the socket sends until it has been quiet for `quiet` seconds."""
    out = []
    while not await ws.receive_nothing(timeout=quiet):
        out.append(await ws.receive_output())
    return out


async def _close_code(ws: WebsocketCommunicator, within: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        message = await ws.receive_output(timeout=max(0.01, deadline - loop.time()))
        if message["type"] == "websocket.close":
            return message.get("code", 1000)


# --------------------------------------------------------------------------- 6a: revoked sockets


@pytest.fixture
def sockets_world(transactional_db, project, people, settings):
    other = Project.objects.create(name="Elsewhere")
    Membership.objects.create(project=other, user=people["member"], role="member")
    job = job_create(
        project=project, kind="test.steps", params={"steps": 1}, created_by=people["member"]
    )
    return {"project": project, "other": other, "job": job}


@pytest.mark.parametrize(
    ("change", "code"), [("remove", REVOKED), ("role", ROLE_CHANGED)], ids=["removed", "role"]
)
def test_a_membership_change_closes_that_users_sockets_on_that_project_at_once(
    client, people, sockets_world, settings, change, code
):
    # A resync round an hour away: only the membership doorbell can close the sockets in time.
    settings.ATELIER = {**settings.ATELIER, "WS_RESYNC_SECONDS": 3600.0}
    project, other, job = sockets_world["project"], sockets_world["other"], sockets_world["job"]
    member = _cookie_headers(client, people["member"])
    viewer = _cookie_headers(client, people["viewer"])

    async def scenario():
        mine = [
            await _open(f"/ws/projects/{project.pk}/", member),
            await _open(f"/ws/jobs/{job.pk}/", member),
        ]
        elsewhere = await _open(f"/ws/projects/{other.pk}/", member)
        someone_else = await _open(f"/ws/projects/{project.pk}/", viewer)
        for ws in [*mine, elsewhere, someone_else]:
            await _drain(ws)

        membership = await database_sync_to_async(Membership.objects.get)(
            project=project, user=people["member"]
        )
        if change == "remove":
            await database_sync_to_async(membership_remove)(
                membership=membership, actor=people["admin"]
            )
        else:
            await database_sync_to_async(membership_change_role)(
                membership=membership, role="viewer", actor=people["admin"]
            )

        codes = [await _close_code(ws, within=3) for ws in mine]
        untouched = [await _drain(ws, quiet=1.0) for ws in (elsewhere, someone_else)]
        reconnect = WebsocketCommunicator(
            application, f"/ws/projects/{project.pk}/", headers=member
        )
        reconnected, _ = await reconnect.connect(timeout=5)
        for ws in (elsewhere, someone_else, reconnect):
            await ws.disconnect()
        return codes, untouched, reconnected

    codes, untouched, reconnected = async_to_sync(scenario)()

    assert codes == [code, code]
    assert all(m["type"] != "websocket.close" for out in untouched for m in out)
    # Removed: the handshake is refused. Changed role: authorized again, as a viewer.
    assert reconnected is (change == "role")


def test_the_periodic_resync_closes_a_socket_whose_membership_vanished_without_a_doorbell(
    client, people, sockets_world, settings
):
    settings.ATELIER = {**settings.ATELIER, "WS_RESYNC_SECONDS": 0.3}
    project, job = sockets_world["project"], sockets_world["job"]
    member = _cookie_headers(client, people["member"])

    async def scenario():
        sockets = [
            await _open(f"/ws/projects/{project.pk}/", member),
            await _open(f"/ws/jobs/{job.pk}/", member),
        ]
        for ws in sockets:
            await _drain(ws)
        # A bare delete: no service, so no doorbell (as if Redis lost it).
        await database_sync_to_async(
            Membership.objects.filter(project=project, user=people["member"]).delete
        )()
        return [await _close_code(ws, within=3) for ws in sockets]

    assert async_to_sync(scenario)() == [REVOKED, REVOKED]


# --------------------------------------------------------------------------- 6e: tracebacks


@pytest.fixture
def crashed_job(transactional_db, project, people, tmp_path):
    # Appending step records to a folder raises IsADirectoryError: an unexpected crash.
    job = job_create(
        project=project,
        kind="test.steps",
        params={"steps": 2, "step_seconds": 0, "record_file": str(tmp_path)},
        created_by=people["member"],
    )
    assert execute_job(job.pk, worker_id="test-worker") == "failed"
    return job


def _log_events(events: list[dict]) -> list[dict]:
    return [e["data"] for e in events if e.get("kind") == EventKind.LOG]


def _leaks(text: str) -> bool:
    return "Traceback" in text or 'File "/' in text


def test_a_crash_is_stored_as_a_short_log_line_with_the_traceback_beside_it(crashed_job):
    event = JobEvent.objects.get(job=crashed_job, kind=EventKind.LOG, data__level="error")

    assert event.data["message"].startswith("IsADirectoryError: ")
    assert not _leaks(event.data["message"])
    assert event.data["traceback"].startswith("Traceback")
    assert 'File "/' in event.data["traceback"]
    crashed_job.refresh_from_db()
    assert not _leaks(crashed_job.error)


def test_the_worker_log_keeps_the_full_traceback(
    transactional_db, project, people, tmp_path, caplog
):
    job = job_create(
        project=project,
        kind="test.steps",
        params={"steps": 1, "step_seconds": 0, "record_file": str(tmp_path)},
        created_by=people["member"],
    )

    with caplog.at_level("ERROR", logger="workers.tasks.runtime"):
        assert execute_job(job.pk, worker_id="test-worker") == "failed"

    crash = [r for r in caplog.records if r.exc_info and r.name == "workers.tasks.runtime"]
    assert crash and crash[0].exc_info[0] is IsADirectoryError
    assert "Traceback" in caplog.text


def _api_events(client, user, job) -> list[dict]:
    client.force_login(user)
    url = reverse("api:job_events", args=[job.project_id, job.pk])
    response = client.get(url)
    assert response.status_code == 200
    return response.json()["data"]


@pytest.mark.parametrize("persona", ["member", "viewer", "reviewer"])
def test_other_roles_see_only_the_short_error_over_the_api(client, people, crashed_job, persona):
    events = _api_events(client, people[persona], crashed_job)

    logs = _log_events(events)
    assert any(d["message"].startswith("IsADirectoryError: ") for d in logs)
    assert all("traceback" not in d for d in logs)
    assert not _leaks(str(events))


def test_a_project_admin_and_platform_staff_see_the_traceback_over_the_api(
    client, people, crashed_job, make_user
):
    staff = make_user("operator", is_staff=True)
    Membership.objects.create(project=crashed_job.project, user=staff, role="viewer")

    for user in (people["admin"], staff):
        logs = _log_events(_api_events(client, user, crashed_job))
        assert any(d.get("traceback", "").startswith("Traceback") for d in logs), user


def _socket_events(client, user, job) -> list[dict]:
    headers = _cookie_headers(client, user)

    async def replay():
        ws = await _open(f"/ws/jobs/{job.pk}/", headers)
        messages = []
        while True:
            out = await ws.receive_output(timeout=5)
            if out["type"] == "websocket.close":  # a finished job: replay, then close
                return messages
            frame = json.loads(out["text"])  # one message, or an array of events in order
            messages += frame if isinstance(frame, list) else [frame]

    return async_to_sync(replay)()


def test_the_job_socket_strips_the_traceback_for_a_member_and_keeps_it_for_an_admin(
    client, people, crashed_job
):
    member_events = _socket_events(client, people["member"], crashed_job)
    admin_events = _socket_events(client, people["admin"], crashed_job)

    assert any(d["message"].startswith("IsADirectoryError") for d in _log_events(member_events))
    assert not _leaks(str(member_events))
    assert any("traceback" in d for d in _log_events(admin_events))


def test_event_frames_go_straight_to_the_server_past_the_session_wrapper(
    client, people, crashed_job, monkeypatch
):
    # The session middleware wraps every send to save the session on HTTP responses; a websocket
    # frame it only passes on, after reading the lazy session: a per-socket, per-event cost when
    # a doorbell fans out to 1,000 sockets. Event frames skip it (apps.jobs.consumers.ServerSend);
    # the handshake still goes through it.
    from channels.sessions import InstanceSessionWrapper

    seen: list[str] = []
    wrapped = InstanceSessionWrapper.send

    async def counting(self, message):
        seen.append(message["type"])
        return await wrapped(self, message)

    monkeypatch.setattr(InstanceSessionWrapper, "send", counting)
    events = _socket_events(client, people["member"], crashed_job)

    assert [e["seq"] for e in events[1:]] == list(range(1, crashed_job.events.count() + 1))
    assert events[0]["type"] == "snapshot" and events[-1]["data"]["state"] == "failed"
    assert "websocket.accept" in seen and "websocket.close" in seen
    assert seen.count("websocket.send") == 1  # the snapshot; no event frame


def test_the_job_page_shows_a_member_no_traceback(client, people, crashed_job):
    client.force_login(people["member"])

    page = client.get(reverse("jobs:detail", args=[crashed_job.project_id, crashed_job.pk]))

    assert page.status_code == 200
    assert "IsADirectoryError" in page.content.decode()
    assert not _leaks(html.unescape(page.content.decode()))


# --------------------------------------------------------------------------- 6c: downloads


def test_a_quote_in_a_dataset_name_cannot_add_header_parameters(
    db, client, project, people, tmp_path
):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nA?,B.\n", encoding="utf-8")
    version, _ = dataset_import(
        project=project,
        actor=people["member"],
        upload_path=path,
        filename="qa.csv",
        name='evil"; filename=x.html; a="',
        license="CC0-1.0",
        source="tests",
    )
    client.force_login(people["viewer"])
    for fmt in ("csv", "jsonl"):
        response = client.get(
            reverse("datasets:download", args=[project.pk, version.dataset_id, 1, fmt])
        )

        header = response["Content-Disposition"]
        assert header.startswith('attachment; filename="evil\\"')
        # One parameter: every quote inside the name is escaped.
        assert header.count('"') - header.count('\\"') == 2, header
        assert header.endswith(f'.{fmt}"')


# --------------------------------------------------------------------------- 6d: CSP

POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self' ws: wss:",
    "frame-ancestors 'none'",
    "object-src 'none'",
    "base-uri 'self'",
)


def test_every_page_carries_the_content_security_policy(client, world, make_user):  # noqa: F811
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    seen = 0
    for key, route in http_routes().items():
        if key == "accounts:logout":
            continue
        response = client.get(fill_route(route, world.ids()))
        header = response.get("Content-Security-Policy", "")
        # An image opened on its own: the browser's image viewer needs inline styles.
        policy = [p for p in POLICY if key != "galleries:file" or not p.startswith("style-src")]
        assert all(part in header for part in policy), (key, response.status_code, header)
        seen += response.status_code == 200
    assert seen > 15
    client.logout()
    assert "script-src 'self'" in client.get(reverse("accounts:login"))["Content-Security-Policy"]


def test_no_template_uses_inline_styles_or_scripts():
    from pathlib import Path

    from django.conf import settings

    offenders = []
    for template in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        text = template.read_text()
        if 'style="' in text or "<style" in text or "<script>" in text or " on" + "click=" in text:
            offenders.append(template.name)
    assert offenders == []


# --------------------------------------------------------------------------- 6f: add member


def _add(admin, project, username: str):
    client = Client()  # its own session: messages of one answer do not pile onto the next
    client.force_login(admin)
    response = client.post(
        reverse("projects:members", args=[project.pk]), {"username": username, "role": "viewer"}
    )
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    return (
        response.status_code,
        response.get("Location"),
        [s.replace(username, "<name>") for s in shown],
    )


def test_adding_a_member_answers_the_same_whether_the_username_exists_or_not(db, project, people):
    existing = _add(people["admin"], project, "outsider")
    unknown = _add(people["admin"], project, "ghost")

    assert existing == unknown
    assert existing[0] == 302
    assert Membership.objects.filter(project=project, user=people["outsider"]).exists()
    assert not Membership.objects.filter(project=project, user__username="ghost").exists()
    assert "ghost" not in str(list(Membership.objects.values_list("user__username", flat=True)))
