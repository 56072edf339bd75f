"""Websockets: /ws/projects/<id>/ (job state changes) and /ws/jobs/<id>/?after=<seq> (events).

Each consumer checks membership through the same selector as the views, and closes when that
membership is removed or its role changes (see Resync). The job consumer joins the group first,
then replays from the database; live doorbells carry the events, and anything at or below the
last sequence sent is dropped, so a client sees every event exactly once.

Doorbells reach sockets through LocalGroups: one channel-layer membership per group per process,
shared by every socket of that process in the group, instead of one per socket (with 1,000 sockets
on a job, one Redis message and one decode per doorbell, not a thousand receive loops).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.jobs import events as doorbell
from apps.jobs import selectors, services
from apps.jobs.models import Job
from apps.jobs.states import TERMINAL
from apps.projects import events as access_events
from apps.projects.selectors import current_roles, project_access
from workers.common.timing import timed

log = logging.getLogger(__name__)
REPLAY_BATCH = 1000
# Events in one frame of a replay (a doorbell's flush is one frame whatever its size).
FRAME_EVENTS = 200
INBOX_SIZE = 1000  # doorbells waiting for one socket (the channel layer's capacity)
# Close codes: 4000-4999 tell live.js the server refused us (it stops); 1012 ("service restart")
# makes it reconnect, and the new connection is authorized with the user's new role.
REVOKED = 4403
ROLE_CHANGED = 1012
# The ASGI server's own send callable, kept in the scope by ServerSend.
SERVER_SEND = "atelier.server_send"


class ServerSend:
    """Outermost websocket middleware: keeps the server's `send` in the scope (SERVER_SEND), so
    the consumers' event frames skip channels' send wrappers. The session middleware wraps every
    send to save the session on an HTTP response; for a websocket frame it only reads the lazy
    session twice and passes the message on, which cost ~15 % of the web process's CPU when a
    doorbell fanned out to 1,000 sockets (py-spy, bench/dispatch.py). Handshakes, closes and
    replies still go through the whole stack."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        return await self.app({**scope, SERVER_SEND: send}, receive, send)


class LocalGroups:
    """The groups this process's sockets listen to, each joined once on the channel layer.

    The first socket of a group makes the group's channel, adds it to the group and starts a
    reader; every doorbell that reader gets goes into each member socket's inbox (its own
    task sends it, so one slow client delays nobody else). The last socket to leave discards
    the channel. Re-joining (Resync) re-adds the channel at most once per WS_RESYNC_SECONDS.
    One instance per event loop and channel layer (tests run several loops).
    """

    _instances: dict[tuple[int, int], LocalGroups] = {}

    def __init__(self, layer) -> None:
        self.layer = layer
        self.members: dict[str, set[Resync]] = {}
        self.channels: dict[str, str] = {}
        self.readers: dict[str, asyncio.Task] = {}
        self.joined_at: dict[str, float] = {}
        self.lock = asyncio.Lock()
        # A channel of this process's that nobody reads or leaves (see join).
        self.anchor: str | None = None

    @classmethod
    def get(cls) -> LocalGroups | None:
        layer = get_channel_layer()
        if layer is None:
            return None
        loop = asyncio.get_running_loop()
        key = (id(loop), id(layer))
        hub = cls._instances.get(key)
        if hub is None or hub.layer is not layer or hub.loop is not loop:
            for k in [k for k, h in cls._instances.items() if h.loop.is_closed()]:
                del cls._instances[k]
            hub = cls._instances[key] = cls(layer)
            hub.loop = loop
        return hub

    async def join(self, group: str, member: Resync) -> None:
        self.members.setdefault(group, set()).add(member)
        interval = float(settings.ATELIER["WS_RESYNC_SECONDS"])
        if group in self.channels and time.monotonic() - self.joined_at[group] < interval:
            return
        async with self.lock:
            if group not in self.members or not self.members[group]:
                return  # everyone left while we waited
            if self.anchor is None:
                # The pub/sub layer's reader naps 0.1 s at a time while this process subscribes
                # to nothing, so the first doorbell after an idle spell (an API stream after a
                # quiet minute) would wait for the nap to end. One channel kept subscribed for
                # the process's life keeps the reader listening instead.
                self.anchor = await self.layer.new_channel()
            channel = self.channels.get(group)
            if channel is None:
                channel = await self.layer.new_channel()
            # Idempotent: also heals a membership Redis lost (FLUSHALL, restart).
            await self.layer.group_add(group, channel)
            self.joined_at[group] = time.monotonic()
            if group not in self.channels:
                self.channels[group] = channel
                self.readers[group] = asyncio.create_task(self._read(group, channel))

    async def leave(self, group: str, member: Resync) -> None:
        members = self.members.get(group)
        if members is None:
            return
        members.discard(member)
        if members:
            return
        async with self.lock:
            if self.members.get(group):
                return  # someone joined again meanwhile
            self.members.pop(group, None)
            self.joined_at.pop(group, None)
            reader = self.readers.pop(group, None)
            channel = self.channels.pop(group, None)
            if reader is not None:
                reader.cancel()
            if channel is not None:
                await self.layer.group_discard(group, channel)

    async def _read(self, group: str, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away for a moment: members resync from the database
                log.warning("doorbell reader of %s failed; retrying", group, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for member in list(self.members.get(group, ())):
                member.ring(message)


async def _each(coroutines) -> None:
    """Run these per-socket coroutines together; one that fails is logged, the others go on."""
    tasks = list(coroutines)
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            log.warning("websocket resync of a socket failed", exc_info=result)


class ResyncRounds:
    """One resync round every WS_RESYNC_SECONDS for all of this process's sockets (see Resync).

    A round asks the database a few statements for all sockets together: the roles of every
    (user, project) pair (`current_roles`), then, for the idle sockets only, each consumer
    class's `resync_many` (the job consumers: the jobs' last sequence numbers; the dashboards:
    one statement per project). A socket whose role is gone or changed is closed, one that is
    behind catches up on its own. Per socket and round this used to be two statements for the
    access check and one for the catch-up: 1,000 quiet sockets cost the web process 0.7-0.9 ms
    of CPU per socket per second, now 9 us (bench/dispatch.py --idle). One instance per event
    loop.
    """

    _instances: dict[int, ResyncRounds] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sockets: dict[Resync, None] = {}  # an ordered set
        self.task: asyncio.Task | None = None

    @classmethod
    def get(cls) -> ResyncRounds:
        loop = asyncio.get_running_loop()
        rounds = cls._instances.get(id(loop))
        if rounds is None or rounds.loop is not loop:
            for k in [k for k, r in cls._instances.items() if r.loop.is_closed()]:
                del cls._instances[k]
            rounds = cls._instances[id(loop)] = cls(loop)
        return rounds

    def add(self, socket: Resync) -> None:
        self.sockets[socket] = None
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, socket: Resync) -> None:
        self.sockets.pop(socket, None)

    async def _run(self) -> None:
        while self.sockets:
            await asyncio.sleep(float(settings.ATELIER["WS_RESYNC_SECONDS"]))
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database or Redis away for a moment: try again next round
                log.warning("websocket resync round failed; retrying", exc_info=True)

    async def round(self) -> None:
        interval = float(settings.ATELIER["WS_RESYNC_SECONDS"])
        started = time.monotonic()
        sockets = list(self.sockets)
        if not sockets:
            return
        roles = await database_sync_to_async(current_roles)({s.access_key for s in sockets})
        kept: list[Resync] = []
        closing = []
        for s in sockets:
            role = roles.get(s.access_key)
            if role is None:
                closing.append(s.close(code=REVOKED))
            elif role != s.role:
                closing.append(s.close(code=ROLE_CHANGED))
            else:
                kept.append(s)
        await _each(closing)
        by_class: dict[type[Resync], list[Resync]] = {}
        for s in kept:
            by_class.setdefault(type(s), []).append(s)
        for cls, members in by_class.items():
            await cls.access_kept_many(members)
        hub = LocalGroups.get()
        if hub is not None:
            # Idempotent: heals a group membership Redis lost (each group once per round).
            groups: dict[str, Resync] = {}
            for s in kept:
                groups.setdefault(s.group, s)
                groups.setdefault(s.user_group, s)
            try:
                for group, s in groups.items():
                    await hub.join(group, s)
            except Exception:  # Redis away: the database still tells the sockets what they missed
                log.warning("websocket resync round could not join its groups", exc_info=True)
        for cls, members in by_class.items():
            idle = [
                s for s in members if s in self.sockets and started - s._last_delivery >= interval
            ]
            if idle:
                await cls.resync_many(idle)


# The last messages encoded, by identity: a doorbell's events are one object shared by every
# socket of the process that gets them unfiltered, so each is encoded once, not once per socket.
_encoded: OrderedDict[int, tuple[dict, str]] = OrderedDict()
ENCODED_KEPT = 64


def _once(cache: OrderedDict, obj: Any, encode: Callable[[Any], str]) -> str:
    """`encode(obj)`, remembered by the object's identity (the cache holds the object, so its id
    cannot be reused while remembered)."""
    hit = cache.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    text = encode(obj)
    cache[id(obj)] = (obj, text)
    if len(cache) > ENCODED_KEPT:
        cache.popitem(last=False)
    return text


def encode_once(message: dict) -> str:
    return _once(_encoded, message, json.dumps)


def encode_job_push(snapshot: dict) -> str:
    """A dashboard's job frame, encoded once per snapshot: a job.changed doorbell's snapshot is
    one object shared by every dashboard socket of the process on that project."""
    return _once(_encoded_push, snapshot, lambda snap: json.dumps({"type": "job", "job": snap}))


_encoded_push: OrderedDict[int, tuple[dict, str]] = OrderedDict()


def encode_many(messages: list[dict]) -> str:
    """A frame of several events (a JSON array), encoded once per doorbell like encode_once:
    every socket that shows them unfiltered gets the same objects."""
    key = tuple(id(m) for m in messages)
    hit = _encoded_many.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], messages, strict=True)):
        return hit[1]
    text = "[" + ",".join(encode_once(m) for m in messages) + "]"
    _encoded_many[key] = (list(messages), text)
    if len(_encoded_many) > ENCODED_KEPT:
        _encoded_many.popitem(last=False)
    return text


_encoded_many: OrderedDict[tuple, tuple[list[dict], str]] = OrderedDict()


class Resync:
    """Heal a socket whose doorbells stopped: Redis lost its data (FLUSHALL, a restart without
    persistence) and with it this consumer's group membership, or a doorbell was dropped.

    Every WS_RESYNC_SECONDS a round (ResyncRounds, one for all of the process's sockets) joins
    the groups again (idempotent) and, for each socket that got nothing for that long, asks the
    database what it missed (`resync_many`). The database is the truth, so a lost doorbell only
    delays a client by at most that interval.

    Access is the same: a removed member's or changed role's sockets close at once when the
    membership services ring `user.<id>` (apps/projects/events.py), and at the latest after one
    interval, when the round finds the role gone or changed.
    """

    group: str
    project_id: int
    role: str  # the user's role in the project when the socket was authorized
    _rounds: ResyncRounds | None = None
    _last_delivery: float = 0.0
    _hub: LocalGroups | None = None
    _inbox: asyncio.Queue | None = None
    _doorbell_task: asyncio.Task | None = None

    @property
    def user_group(self) -> str:
        return access_events.user_group(self.scope["user"].pk)

    async def join_groups(self) -> None:
        hub = LocalGroups.get()
        if hub is None:
            return
        self._hub = hub
        if self._inbox is None:
            self._inbox = asyncio.Queue(maxsize=INBOX_SIZE)
        await hub.join(self.group, self)
        await hub.join(self.user_group, self)

    async def leave_groups(self) -> None:
        self.stop_doorbells()
        if hasattr(self, "group") and self._hub is not None:
            await self._hub.leave(self.group, self)
            await self._hub.leave(self.user_group, self)

    def ring(self, message: dict) -> None:
        """A doorbell for this socket (LocalGroups' reader): handled in order by its own task.
        A full inbox drops its oldest doorbell: the gap is then filled from the database."""
        if self._inbox is None:
            return
        if self._inbox.full():
            self._inbox.get_nowait()
        self._inbox.put_nowait(message)

    def start_doorbells(self) -> None:
        """Handle doorbells from now on (those that came meanwhile wait in the inbox)."""
        if self._doorbell_task is None and self._inbox is not None:
            self._doorbell_task = asyncio.create_task(self._doorbells())

    def stop_doorbells(self) -> None:
        if self._doorbell_task is not None:
            self._doorbell_task.cancel()
            self._doorbell_task = None

    async def _doorbells(self) -> None:
        while True:
            message = await self._inbox.get()
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                continue
            try:
                await handler(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("doorbell %s failed on %s; closing the socket", message["type"], self)
                await self.close(code=1011)
                return

    def start_resync(self) -> None:
        """After the first replay: from now on doorbells are handled, and rounds include it."""
        self._last_delivery = time.monotonic()
        self._rounds = ResyncRounds.get()
        self._rounds.add(self)
        self.start_doorbells()

    def stop_resync(self) -> None:
        if self._rounds is not None:
            self._rounds.discard(self)
            self._rounds = None

    @property
    def access_key(self) -> tuple[int, int]:
        return self.scope["user"].pk, self.project_id

    async def send_frame(self, text: str) -> None:
        """One text frame to the client, straight to the server (ServerSend) when the app was
        built with it; through channels' send otherwise (test communicators)."""
        send = self.scope.get(SERVER_SEND) or self.base_send
        await send({"type": "websocket.send", "text": text})

    def delivered(self) -> None:
        self._last_delivery = time.monotonic()

    @classmethod
    async def access_kept_many(cls, sockets: list[Resync]) -> None:
        """The round found these sockets' roles unchanged (JobConsumer re-asks for withheld
        content)."""

    @classmethod
    async def resync_many(cls, sockets: list[Resync]) -> None:
        """Send each of these idle sockets of this class what it missed."""
        raise NotImplementedError

    async def membership_revoked(self, message) -> None:
        """The membership services ring the user's group after commit (apps/projects/events.py)."""
        if message.get("project_id") != self.project_id:
            return
        await self.close(
            code=REVOKED if message.get("reason") == access_events.REMOVED else ROLE_CHANGED
        )


class JobConsumer(Resync, AsyncJsonWebsocketConsumer):
    # No channel of its own: doorbells come through LocalGroups.
    channel_layer_alias = None

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
        self._sending = asyncio.Lock()
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

    @classmethod
    async def resync_many(cls, sockets: list[Resync]) -> None:
        """One statement for the jobs' last sequence numbers; only a socket behind its job's
        reads its events (a quiet job's 1,000 viewers cost one query a round, not 1,000)."""
        jobs = cast("list[JobConsumer]", sockets)  # the round groups sockets by class
        last = await database_sync_to_async(services.jobs_last_seq)({s.job_id for s in jobs})
        await _each(s._catch_up() for s in jobs if last.get(s.job_id, 0) > s.last_seq)

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

    @classmethod
    async def access_kept_many(cls, sockets: list[Resync]) -> None:
        """Ask again, once per user and job, whether withheld content may be shown now."""
        withheld = [s for s in cast("list[JobConsumer]", sockets) if not s.content]
        if not withheld:
            return
        asked = {(s.scope["user"].pk, s.job_id): s for s in withheld}

        def visible() -> dict[tuple[int, int], bool]:
            return {key: s._content_visible() for key, s in asked.items()}

        answers = await database_sync_to_async(visible)()
        for s in withheld:
            s.content = answers[s.scope["user"].pk, s.job_id]

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
            messages = [event.as_message() for event in batch]
            for i in range(0, len(messages), FRAME_EVENTS):
                if not await self._send_events(messages[i : i + FRAME_EVENTS]):
                    return
            if len(batch) < REPLAY_BATCH:
                return

    async def _send_events(self, messages: list[dict]) -> bool:
        """Send the next events in order as ONE frame: an event object when there is one, a JSON
        array of them when there are several (a doorbell's flush, a replay). One frame per
        doorbell instead of one per event halves uvicorn's per-socket sends for a training step
        (its progress and metrics events), the cost that limits fan-out to many sockets.
        The doorbell task and the resync round both send: one frame at a time, in order.
        Returns False once the socket closed (a terminal state was sent)."""
        async with self._sending:
            shown = []
            for message in messages:
                if message["seq"] != self.last_seq + 1 + len(shown):
                    break  # sent already, or a gap: the caller catches up from the database
                if message["kind"] == "state" and not self.content:
                    self.content = await database_sync_to_async(self._content_visible)()
                shown.append(
                    selectors.event_for_viewer(message, full=self.full_events, content=self.content)
                )
            if not shown:
                return True
            await self.send_frame(encode_once(shown[0]) if len(shown) == 1 else encode_many(shown))
            self.last_seq += len(shown)
            last = shown[-1]
        self.delivered()
        if last["kind"] == "state" and last["data"].get("state") in TERMINAL:
            # Terminal states never change and nothing follows them: end the stream cleanly.
            await self.close(code=1000)
            return False
        return True

    @timed("jobs.consumer.job_events")
    async def job_events(self, message):
        events = [e for e in message["events"] if e["seq"] > self.last_seq]
        if not events:
            return  # already sent (replayed, or a duplicate doorbell)
        if events[0]["seq"] > self.last_seq + 1:
            await self._catch_up()  # a doorbell was lost: fill the gap from the database
            return
        if await self._send_events(events) and events[-1]["seq"] > self.last_seq:
            await self._catch_up()  # a gap inside the doorbell


class ProjectConsumer(Resync, AsyncJsonWebsocketConsumer):
    channel_layer_alias = None  # doorbells come through LocalGroups
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
        await self.send_frame(encode_job_push(snap))

    @classmethod
    async def resync_many(cls, sockets: list[Resync]) -> None:
        """Push to each idle dashboard the jobs whose state or progress changed since its last
        push: the unfinished ones it knows of, and any job that is not finished yet. One
        statement per project (its dashboards share it); access was checked by the round."""
        by_project: dict[int, list[ProjectConsumer]] = {}
        for s in cast("list[ProjectConsumer]", sockets):  # the round groups sockets by class
            by_project.setdefault(s.project_id, []).append(s)
        for project_id, dashboards in by_project.items():
            known = {
                pk
                for d in dashboards
                for pk, (state, _, _) in d._sent.items()
                if state not in TERMINAL
            }
            snapshots = await database_sync_to_async(cls._snapshots_to_resync)(project_id, known)
            await _each(d._push_changed(snapshots) for d in dashboards)

    @staticmethod
    def _snapshots_to_resync(project_id: int, known_unfinished: set[int]) -> list[dict]:
        jobs = selectors.project_jobs_to_resync(
            project_id=project_id, known_unfinished=sorted(known_unfinished)
        )
        return [doorbell.job_snapshot(j) for j in jobs]

    async def _push_changed(self, snapshots: list[dict]) -> None:
        for snap in snapshots:
            sent = self._sent.get(snap["id"])
            if sent is None and snap["state"] in TERMINAL:
                continue  # another dashboard's job it saw unfinished; this one never saw it
            if sent != (snap["state"], snap["progress"], snap["attempt"]):
                await self._push(snap)

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
