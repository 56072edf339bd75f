"""Websockets: /ws/projects/<id>/ (job state changes) and /ws/jobs/<id>/?after=<seq> (events).

Each consumer checks membership through the same selector as the views, and closes when that
membership is removed or its role changes (see Resync). The job consumer joins the group first,
then replays from the database; live doorbells carry the events, and anything at or below the
last sequence sent is dropped, so a client sees every event exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.jobs import events as doorbell
from apps.jobs import selectors, services
from apps.jobs.models import Job
from apps.jobs.states import TERMINAL
from apps.projects import events as access_events
from apps.projects.selectors import project_access
from workers.common.timing import timed

log = logging.getLogger(__name__)
REPLAY_BATCH = 1000
ACCESS_RECHECK_ROUNDS = 10
DOORBELLS = frozenset({"job.events", "job.changed"})
# Close codes: 4000-4999 tell live.js the server refused us (it stops); 1012 ("service restart")
# makes it reconnect, and the new connection is authorized with the user's new role.
REVOKED = 4403
ROLE_CHANGED = 1012


class Resync:
    """Heal a socket whose doorbells stopped: Redis lost its data (FLUSHALL, a restart without
    persistence) and with it this consumer's group membership, or a doorbell was dropped.

    Every WS_RESYNC_SECONDS the consumer joins its group again (idempotent) and, when nothing
    arrived for that long, asks the database what it missed (`resync()`). The database is the
    truth, so a lost doorbell only delays a client by at most that interval.

    Access is the same: a removed member's or changed role's sockets close at once when the
    membership services ring `user.<id>` (apps/projects/events.py), and at the latest after one
    interval, when the round finds the role gone or changed.
    """

    group: str
    project_id: int
    role: str  # the user's role in the project when the socket was authorized
    _resync_task: asyncio.Task | None = None
    _last_delivery: float = 0.0

    @property
    def user_group(self) -> str:
        return access_events.user_group(self.scope["user"].pk)

    async def join_groups(self) -> None:
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.user_group, self.channel_name)

    async def leave_groups(self) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    def start_resync(self) -> None:
        self._last_delivery = time.monotonic()
        self._resync_task = asyncio.create_task(self._resync_loop())

    def stop_resync(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            self._resync_task = None

    def delivered(self) -> None:
        self._last_delivery = time.monotonic()

    async def _resync_loop(self) -> None:
        interval = float(settings.ATELIER["WS_RESYNC_SECONDS"])
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            try:
                idle = time.monotonic() - self._last_delivery >= interval
                # The backstop for a lost membership.revoked doorbell: access is checked again,
                # every round while idle and every ACCESS_RECHECK_ROUNDS while events flow (a
                # busy socket costs no query per round; 100 of them would cost 100 a second).
                if idle or rounds % ACCESS_RECHECK_ROUNDS == 0:
                    code = await database_sync_to_async(self.access_changed)()
                    if code is not None:
                        await self.close(code=code)
                        return
                await self.join_groups()
                if idle:
                    await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away for a moment: try again next round
                log.warning("websocket resync of %s failed; retrying", self.group, exc_info=True)

    async def resync(self) -> None:
        raise NotImplementedError

    def access_changed(self) -> int | None:
        """None while the user keeps the role this socket was authorized with; otherwise the
        close code: REVOKED (no access any more) or ROLE_CHANGED (reconnect with the new role)."""
        user = get_user_model().objects.filter(pk=self.scope["user"].pk, is_active=True).first()
        try:
            access = project_access(user=user, project_id=self.project_id)
        except (Http404, PermissionDenied):
            return REVOKED
        return None if access.role == self.role else ROLE_CHANGED

    async def membership_revoked(self, message) -> None:
        """The membership services ring the user's group after commit (apps/projects/events.py)."""
        if message.get("project_id") != self.project_id:
            return
        await self.close(
            code=REVOKED if message.get("reason") == access_events.REMOVED else ROLE_CHANGED
        )


class DoorbellFastPath:
    """Skip Channels' per-message `aclose_old_connections` thread hop for doorbell messages.

    Those handlers touch the database only through `database_sync_to_async`, which closes stale
    connections itself. With 100 sockets on a job, the hop per socket per event was most of the
    fan-out time (bench/dispatch.py: uvicorn CPU per event 31 → 23 ms, p99 81 → 45 ms).
    """

    async def dispatch(self, message):
        if message["type"] in DOORBELLS:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)


class JobConsumer(Resync, DoorbellFastPath, AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        job = await database_sync_to_async(self._authorized_job)()
        if job is None:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            self.last_seq = max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            self.last_seq = 0
        self.group = doorbell.job_group(self.job_id)
        await self.join_groups()
        await self.accept()
        await self.send_json(
            {
                "type": "snapshot",
                "job": {
                    "id": job.pk,
                    "state": job.state,
                    "progress": job.progress,
                    "attempt": job.attempt,
                    "last_seq": job.last_seq,
                },
            }
        )
        await self._catch_up()
        self.start_resync()

    async def resync(self) -> None:
        await self._catch_up()

    def _authorized_job(self) -> Job | None:
        user = self.scope.get("user")
        job = Job.objects.filter(pk=self.job_id).only("project_id").first()
        if job is None:
            return None
        try:
            access, job = selectors.job_access(
                user=user, project_id=job.project_id, job_id=self.job_id
            )
        except (Http404, PermissionDenied):
            return None
        self.project_id, self.role = job.project_id, access.role
        # Tracebacks of crashed jobs are for project admins and platform staff only.
        self.full_events = selectors.sees_full_events(access=access, user=user)
        # Generated text and previews: decided once here, asked again only while withheld, when
        # a state event passes or a resync round re-checks access (no query per event).
        self.content = selectors.job_content_visible(access=access, user=user, job=job)
        return job

    def _content_visible(self) -> bool:
        user = self.scope.get("user")
        try:
            access, job = selectors.job_access(
                user=user, project_id=self.project_id, job_id=self.job_id
            )
        except (Http404, PermissionDenied):
            return False
        return selectors.job_content_visible(access=access, user=user, job=job)

    def access_changed(self) -> int | None:
        code = super().access_changed()
        if code is None and not self.content:
            self.content = self._content_visible()
        return code

    async def disconnect(self, code):
        self.stop_resync()
        await self.leave_groups()

    async def receive_json(self, content, **kwargs):
        # Clients only listen; a ping keeps proxies from closing an idle socket.
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _catch_up(self):
        while True:
            batch = await database_sync_to_async(services.job_events_after)(
                job_id=self.job_id, after=self.last_seq, limit=REPLAY_BATCH
            )
            for event in batch:
                await self._send_event(event.as_message())
            if len(batch) < REPLAY_BATCH:
                return

    async def _send_event(self, message: dict):
        if message["seq"] != self.last_seq + 1:
            return
        if message["kind"] == "state" and not self.content:
            self.content = await database_sync_to_async(self._content_visible)()
        await self.send_json(
            selectors.event_for_viewer(message, full=self.full_events, content=self.content)
        )
        self.last_seq = message["seq"]
        self.delivered()
        if message["kind"] == "state" and message["data"].get("state") in TERMINAL:
            # Terminal states never change and nothing follows them: end the stream cleanly.
            await self.close(code=1000)

    @timed("jobs.consumer.job_events")
    async def job_events(self, message):
        for event in message["events"]:
            if event["seq"] <= self.last_seq:
                continue  # already sent (replayed, or a duplicate doorbell)
            if event["seq"] > self.last_seq + 1:
                await self._catch_up()  # a doorbell was lost: fill the gap from the database
                if event["seq"] <= self.last_seq:
                    continue
            await self._send_event(event)


class ProjectConsumer(Resync, DoorbellFastPath, AsyncJsonWebsocketConsumer):
    RECENT = 50

    async def connect(self):
        self.project_id = int(self.scope["url_route"]["kwargs"]["project_id"])
        snapshots = await database_sync_to_async(self._authorized_snapshots)()
        if snapshots is None:
            await self.close()
            return
        self.group = doorbell.project_group(self.project_id)
        await self.join_groups()
        await self.accept()
        # On (re)connect the client gets the current state of recent jobs, so nothing missed
        # while it was away stays stale.
        self._sent: dict[int, tuple] = {}
        for snap in reversed(snapshots):
            await self._push(snap)
        self.start_resync()

    async def _push(self, snap: dict) -> None:
        self._sent[snap["id"]] = (snap["state"], snap["progress"], snap["attempt"])
        await self.send_json({"type": "job", "job": snap})

    async def resync(self) -> None:
        """Push the jobs whose state or progress changed since the last push: the unfinished
        ones this socket knows of, and any job that is not finished yet."""
        unfinished = [pk for pk, (state, _, _) in self._sent.items() if state not in TERMINAL]
        snapshots = await database_sync_to_async(self._changed_snapshots)(unfinished)
        if snapshots is None:
            await self.close(code=REVOKED)  # no longer a member
            return
        for snap in snapshots:
            if self._sent.get(snap["id"]) != (snap["state"], snap["progress"], snap["attempt"]):
                await self._push(snap)

    def _changed_snapshots(self, unfinished: list[int]) -> list[dict] | None:
        try:
            access = project_access(user=self.scope.get("user"), project_id=self.project_id)
        except (Http404, PermissionDenied):
            return None
        jobs = selectors.project_jobs_to_resync(access=access, known_unfinished=unfinished)
        return [doorbell.job_snapshot(j) for j in jobs]

    def _authorized_snapshots(self) -> list[dict] | None:
        try:
            access = project_access(user=self.scope.get("user"), project_id=self.project_id)
        except (Http404, PermissionDenied):
            return None
        self.role = access.role
        return [
            doorbell.job_snapshot(j)
            for j in selectors.project_jobs(access=access, limit=self.RECENT)
        ]

    async def disconnect(self, code):
        self.stop_resync()
        await self.leave_groups()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def job_changed(self, message):
        self.delivered()
        await self._push(message["job"])
