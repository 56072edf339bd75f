"""Helpers shared by the integration tests: waiting, launching jobs, websocket clients."""

from __future__ import annotations

import asyncio
import json
import time

import websockets
from django.test import Client

from apps.jobs.models import Job
from tests import factories


def frame_messages(raw) -> list[dict]:
    """The messages of one websocket frame: one object, or an array of a doorbell's events in
    order (apps/jobs/consumers.py sends a job's events flushed together as one frame)."""
    msg = json.loads(raw)
    return msg if isinstance(msg, list) else [msg]


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_state(job: Job) -> str:
    job.refresh_from_db()
    return job.state


def launch(project, user, **params) -> Job:
    return factories.make_job(project, user, params.pop("kind", "test.steps"), **params)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def collect_events(
    base: str,
    job_id: int,
    cookie: str,
    after: int = 0,
    stop_after: int | None = None,
    timeout: float = 60,
) -> tuple[list[dict], dict]:
    """Read a job socket until the job is final (or `stop_after` events), return events + snapshot."""
    url = base.replace("http", "ws") + f"/ws/jobs/{job_id}/?after={after}"
    events, snapshot = [], {}
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base}) as ws:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
            for msg in frame_messages(raw):
                if msg["type"] == "snapshot":
                    snapshot = msg["job"]
                    continue
                events.append(msg)
                if stop_after is not None and len(events) >= stop_after:
                    return events, snapshot
                if msg["kind"] == "state" and msg["data"]["state"] in (
                    "succeeded",
                    "failed",
                    "cancelled",
                ):
                    return events, snapshot
    raise AssertionError(
        f"job {job_id} did not finish over the websocket; got {len(events)} events"
    )
