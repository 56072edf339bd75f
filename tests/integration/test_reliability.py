"""Reliability with real parts (Redis, Celery workers, uvicorn, websockets): dispatch within the
free slots, metric points that survive a kill right after a checkpoint, live sockets that heal
after Redis lost its data, and a warm shutdown that re-queues a job for the next worker."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import redis
import websockets
from django.conf import settings
from django.db.models import Q

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.selectors import job_metric_series
from apps.jobs.states import ACTIVE, JobState
from tests.integration.helpers import frame_messages, job_state, launch, session_cookie, wait_for
from workers.ml.checkpoints import CheckpointStore

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_jobs_over_the_concurrency_limit_wait_unsent_and_each_job_is_sent_once(
    processes, project, member
):
    project.max_concurrent_jobs = 2
    project.save()
    services._broker_lost_its_messages()  # the scheduler knows this Redis: no flush to heal
    processes.scheduler(interval=0.3)
    processes.worker(concurrency=2)
    jobs = [launch(project, member, steps=3, step_seconds=0.05) for _ in range(20)]

    most_taken = 0

    def all_done() -> bool:
        nonlocal most_taken
        taken = (
            Job.objects.filter(project=project)
            .filter(Q(state__in=ACTIVE) | Q(state=JobState.QUEUED, dispatched_at__isnull=False))
            .count()
        )
        most_taken = max(most_taken, taken)
        return Job.objects.filter(project=project, state=JobState.SUCCEEDED).count() == len(jobs)

    wait_for(all_done, timeout=120, interval=0.01, what="20 jobs to run")
    # Never more jobs sent or running than the project's slots, and one message per job.
    assert most_taken <= 2
    counts = list(Job.objects.filter(project=project).values_list("dispatch_count", flat=True))
    assert counts == [1] * 20


def test_a_worker_killed_after_a_checkpoint_loses_no_metric_point(
    processes, project, member, tmp_path
):
    record = tmp_path / "steps.txt"
    processes.scheduler(interval=0.3)
    # Periodic event writes never come on this worker: what it reported reaches the database
    # only when a checkpoint is completed (and at the job's end, which it never reaches).
    processes.env["ATELIER_EVENT_MIN_INTERVAL"] = "100000"
    processes.worker("worker-a")
    processes.env["ATELIER_EVENT_MIN_INTERVAL"] = "0.1"
    job = launch(
        project, member, steps=40, step_seconds=0.1, checkpoint_every=5, record_file=str(record)
    )
    store = CheckpointStore(Path(settings.JOBS_DIR) / str(job.pk) / "checkpoints")

    def past_a_checkpoint():
        latest = store.latest()
        return latest is not None and latest.step >= 10 and latest.step

    wait_for(past_a_checkpoint, timeout=60, what="a checkpoint at step 10 or later")
    processes.kill("worker-a", signal.SIGKILL)
    kept = store.latest().step
    assert kept < 40, "the job must be killed mid-run"

    first_attempt = {
        e.data["step"] for e in job.events.filter(kind="metrics", attempt=1).order_by("seq")
    }
    assert set(range(1, kept + 1)) <= first_attempt  # committed before the checkpoint was

    processes.worker("worker-b")
    wait_for(lambda: job_state(job) == JobState.SUCCEEDED, timeout=90, what="the resumed job")
    series = job_metric_series(job=job)["value"]
    assert [step for step, _ in series] == list(range(1, 41))  # none missing, none twice
    assert all(value == float(step) for step, value in series)
    second_attempt = [e.data["step"] for e in job.events.filter(kind="metrics", attempt=2)]
    assert min(second_attempt) == kept + 1


def test_live_sockets_see_a_job_end_after_redis_lost_its_data(processes, project, member):
    base = processes.web()
    processes.worker()
    cookie = session_cookie(member)
    job = launch(project, member, steps=50, step_seconds=0.1, checkpoint_every=100)
    headers = {"Cookie": cookie, "Origin": base}
    ws_base = base.replace("http", "ws")
    flushed = asyncio.Event()

    async def job_socket() -> list[dict]:
        events: list[dict] = []
        async with websockets.connect(
            f"{ws_base}/ws/jobs/{job.pk}/?after=0", additional_headers=headers
        ) as ws:
            while True:
                raw = await asyncio.wait_for(ws.recv(), timeout=30)
                for msg in frame_messages(raw):
                    if msg["type"] != "event":
                        continue
                    events.append(msg)
                    if len(events) == 8:
                        # Every group membership and pending doorbell is gone with the data.
                        redis.Redis.from_url(settings.REDIS_URL).flushdb()
                        flushed.set()
                    if msg["kind"] == "state" and msg["data"]["state"] == "succeeded":
                        return events

    async def dashboard_socket() -> dict:
        async with websockets.connect(
            f"{ws_base}/ws/projects/{project.pk}/", additional_headers=headers
        ) as ws:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                job_snap = msg.get("job", {})
                if flushed.is_set() and job_snap.get("id") == job.pk:
                    if job_snap["state"] == "succeeded":
                        return job_snap

    async def both():
        return await asyncio.gather(job_socket(), dashboard_socket())

    events, final = asyncio.run(both())
    job.refresh_from_db()
    assert [e["seq"] for e in events] == list(range(1, job.last_seq + 1))  # each exactly once
    assert final["state"] == "succeeded" and final["progress"] == 1.0


def test_a_warm_shutdown_requeues_a_running_job_and_the_next_worker_resumes_it(
    processes, project, member, tmp_path
):
    record = tmp_path / "steps.txt"
    # A lease far longer than the test: only the warm shutdown's re-queue can let the job go on,
    # and no scheduler runs (its reaper and re-sends are not what resumes it).
    processes.env["ATELIER_LEASE_SECONDS"] = "3600"
    processes.worker("worker-a")
    job = launch(
        project, member, steps=400, step_seconds=0.05, checkpoint_every=1, record_file=str(record)
    )
    wait_for(
        lambda: record.exists() and len(record.read_text().splitlines()) >= 10, what="10 steps"
    )
    processes.kill("worker-a", signal.SIGTERM)  # waits until the worker process has exited

    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.lease_until is None
    assert "shutting down" in job.events.filter(kind="state").last().data["message"]
    stopped_at = max(int(line.split()[1]) for line in record.read_text().splitlines())
    assert stopped_at < 400

    processes.worker("worker-b")
    wait_for(lambda: job_state(job) == JobState.SUCCEEDED, timeout=90, what="the resumed job")
    runs = [tuple(map(int, line.split())) for line in record.read_text().splitlines()]
    assert [s for a, s in runs] == list(range(1, 401))  # every step once, across two attempts
    assert min(s for a, s in runs if a == 2) == stopped_at + 1
    series = job_metric_series(job=job)["value"]
    assert [step for step, _ in series] == list(range(1, 401))
