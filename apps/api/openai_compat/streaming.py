"""Following a generation job from an HTTP response: its events in order, each exactly once.

The /v1/ generation endpoints submit an ordinary job and then watch it as the job's websocket
does (apps/jobs/consumers.py): the process joins the job's channel-layer group once
(LocalGroups, shared with the sockets of the same process), replays what the database already
has, then takes live doorbells; an event past the next expected sequence means a doorbell was
lost, and the gap is read from the database. When nothing comes for WS_RESYNC_SECONDS the
database is asked again (a doorbell lost with nothing after it, Redis restarted). The database
stays the truth: no event is lost or sent twice.

Also here: Server-Sent Events framing, cancelling the job when the client goes away, and a
refused submit in the client's words.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from apps.api.errors import ApiError
from apps.jobs import services as job_services
from apps.jobs.consumers import LocalGroups
from apps.jobs.events import job_group
from apps.jobs.models import Job
from apps.jobs.states import TERMINAL, JobState

REPLAY_BATCH = 1000
INBOX_SIZE = 1000  # doorbells waiting for one follower; a full inbox drops its oldest (then DB)
SSE_DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    """One Server-Sent Event carrying `payload` as JSON (OpenAI's stream framing)."""
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def is_terminal(event: dict[str, Any]) -> bool:
    return event.get("kind") == "state" and (event.get("data") or {}).get("state") in TERMINAL


def _events_after(job_id: int, after: int) -> list[dict[str, Any]]:
    return [
        e.as_message()
        for e in job_services.job_events_after(job_id=job_id, after=after, limit=REPLAY_BATCH)
    ]


class JobFollower:
    """The events of one job, from `after` on, as they happen:

        async with JobFollower(job_id) as follower:
            while True:
                for event in await follower.next_events():
                    ...  # the terminal state event is the last one there is

    `ring()` is LocalGroups' side: each doorbell goes into this follower's inbox.
    """

    def __init__(self, job_id: int, *, after: int = 0) -> None:
        self.job_id = int(job_id)
        self.last_seq = int(after)
        self.group = job_group(self.job_id)
        self.inbox: asyncio.Queue[dict] = asyncio.Queue(maxsize=INBOX_SIZE)
        self.hub: LocalGroups | None = None
        self.replayed = False

    # LocalGroups calls this for every doorbell of the group (on the event loop).
    def ring(self, message: dict) -> None:
        if self.inbox.full():
            self.inbox.get_nowait()
        self.inbox.put_nowait(message)

    async def __aenter__(self) -> JobFollower:
        self.hub = LocalGroups.get()
        if self.hub is not None:
            # Joined before the first replay: an event written in between comes as a doorbell.
            await self.hub.join(self.group, self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hub is not None:
            await self.hub.leave(self.group, self)

    async def _from_database(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            batch = await database_sync_to_async(_events_after)(self.job_id, self.last_seq)
            for event in batch:
                self._take(event, events)
            if len(batch) < REPLAY_BATCH:
                return events

    def _take(self, event: dict[str, Any], into: list[dict[str, Any]]) -> bool:
        if event["seq"] != self.last_seq + 1:
            return False
        into.append(event)
        self.last_seq = event["seq"]
        return True

    async def next_events(self) -> list[dict[str, Any]]:
        """The next events in sequence (at least one), waiting for them as long as it takes."""
        if not self.replayed:
            self.replayed = True
            events = await self._from_database()
            if events:
                return events
        interval = float(settings.ATELIER["WS_RESYNC_SECONDS"])
        while True:
            try:
                message = await asyncio.wait_for(self.inbox.get(), timeout=interval)
            except TimeoutError:
                if self.hub is not None:
                    await self.hub.join(self.group, self)  # idempotent; heals a lost membership
                events = await self._from_database()
                if events:
                    return events
                continue
            events = []
            for event in message.get("events") or ():
                seq = event.get("seq", 0)
                if seq <= self.last_seq:
                    continue  # already had it (replayed, or a duplicate doorbell)
                if seq > self.last_seq + 1:
                    events += await self._from_database()  # a doorbell was lost: fill the gap
                    if seq <= self.last_seq:
                        continue
                self._take(event, events)
            if events:
                return events


async def wait_for_job(job_id: int, *, timeout: float | None = None) -> Job | None:
    """The job once it is in a final state (None when `timeout` seconds pass first)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    async with JobFollower(job_id) as follower:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            try:
                events = await asyncio.wait_for(follower.next_events(), timeout=left)
            except TimeoutError:
                return None
            if any(is_terminal(e) for e in events):
                return await database_sync_to_async(Job.objects.get)(pk=job_id)


def cancel_job(job_id: int, user) -> None:
    """The caller left (or gave up waiting): stop the generation it asked for."""
    job = Job.objects.filter(pk=job_id).select_related("project").first()
    if job is not None and job.state in (JobState.QUEUED, JobState.RUNNING):
        job_services.job_cancel(job=job, actor=user)


def refusal(exc: job_services.JobParamsError, names: dict[str, str]) -> Exception:
    """A refused job submit named in the request's terms (`names`: the kind's field -> the
    client's parameter): the quota's 429 + Retry-After stays one; any other refusal is a 400
    whose message is the first reason itself (the openai client shows only the message)."""
    errors: dict[str, str] = {}
    for key, message in exc.errors.items():
        errors.setdefault(names.get(key, key), message)
    if isinstance(exc, job_services.JobQuotaExceeded):
        return job_services.JobQuotaExceeded(errors, retry_after=exc.retry_after)
    param, message = next(iter(errors.items()))
    return ApiError(
        400,
        message if param == "__all__" else f"{param}: {message}",
        code="invalid_params",
        param=None if param == "__all__" else param,
        fields=errors,
    )
