"""The job engine with real parts: Redis, a Celery worker subprocess, uvicorn and websockets."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

import pytest
import redis
from django.conf import settings

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.states import JobState
from tests.integration.helpers import collect_events, job_state, launch, session_cookie, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_jobs_events_reach_a_websocket_client_in_order_until_it_succeeds(
    processes, project, member
):
    base = processes.web()
    processes.worker()
    job = launch(project, member, steps=8, step_seconds=0.05, checkpoint_every=4)
    events, _ = asyncio.run(collect_events(base, job.pk, session_cookie(member)))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    states = [e["data"]["state"] for e in events if e["kind"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    metric_steps = [e["data"]["step"] for e in events if e["kind"] == "metrics"]
    assert metric_steps == list(range(1, 9))  # every metric point kept, in order
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.progress == 1.0


def test_a_killed_worker_loses_nothing_and_the_job_resumes_from_its_checkpoint(
    processes, project, member, tmp_path
):
    record = tmp_path / "steps.txt"
    processes.scheduler(interval=0.3)
    processes.worker("worker-a")
    job = launch(
        project, member, steps=30, step_seconds=0.1, checkpoint_every=5, record_file=str(record)
    )
    # Let it pass at least one checkpoint, then kill -9 the whole worker mid-job.
    wait_for(lambda: record.exists() and len(record.read_text().split("\n")) > 12, what="12 steps")
    processes.kill("worker-a", signal.SIGKILL)
    killed_at = [tuple(map(int, line.split())) for line in record.read_text().splitlines()]
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.attempt == 1
    processes.worker("worker-b")
    wait_for(
        lambda: job_state(job) == JobState.SUCCEEDED, timeout=60, what="resumed job to succeed"
    )
    runs = [tuple(map(int, line.split())) for line in record.read_text().splitlines()]
    assert job.attempt == 2
    last_checkpoint = max(s for _, s in killed_at if s % 5 == 0)
    second = [s for a, s in runs if a == 2]
    assert second[0] == last_checkpoint + 1, "attempt 2 resumes right after the last checkpoint"
    counts = Counter(s for _, s in runs)
    assert all(counts[s] == 1 for s in range(1, last_checkpoint + 1)), (
        "no step before the checkpoint ran twice"
    )
    assert set(counts) == set(range(1, 31))
    assert "re-queued" in json.dumps(
        list(job.events.filter(kind="state").values_list("data", flat=True))
    )


def test_flushing_redis_while_jobs_are_queued_still_runs_every_job_exactly_once(
    processes, project, member, tmp_path
):
    from apps.quotas.models import PlatformPolicy

    PlatformPolicy.objects.update_or_create(pk=1, defaults={"project_concurrency_ceiling": 10})
    project.max_concurrent_jobs = 10  # every job is sent at once (none waits for a slot)
    project.save()
    record_files = [tmp_path / f"job{i}.txt" for i in range(6)]
    # No worker yet: every job is queued, its message sitting in Redis.
    jobs = [
        launch(project, member, steps=2, step_seconds=0, record_file=str(f)) for f in record_files
    ]
    wait_for(
        lambda: all(Job.objects.get(pk=j.pk).dispatched_at for j in jobs), what="jobs dispatched"
    )
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    processes.scheduler(interval=0.3)
    processes.worker(concurrency=2)
    wait_for(
        lambda: all(job_state(j) == JobState.SUCCEEDED for j in jobs),
        timeout=60,
        what="all jobs to run",
    )
    for f in record_files:
        assert f.read_text().splitlines() == ["1 1", "1 2"], (
            "each job ran exactly once, in one attempt"
        )
    assert all(j.attempt == 1 for j in jobs)


def test_a_reconnecting_websocket_ends_with_every_event_exactly_once(processes, project, member):
    base = processes.web()
    processes.worker()
    cookie = session_cookie(member)
    job = launch(project, member, steps=40, step_seconds=0.03, checkpoint_every=100)

    async def reconnecting_client():
        got: list[dict] = []
        after = 0
        for chunk in (3, 5, 4):  # drop the socket three times mid-stream
            events, _ = await collect_events(base, job.pk, cookie, after=after, stop_after=chunk)
            got += events
            after = events[-1]["seq"]
        events, _ = await collect_events(base, job.pk, cookie, after=after)
        return got + events

    got = asyncio.run(reconnecting_client())
    job.refresh_from_db()
    assert [e["seq"] for e in got] == list(range(1, job.last_seq + 1))
    assert got[-1]["data"]["state"] == "succeeded"


def test_cancel_stops_a_running_job_at_its_next_step(processes, project, member):
    processes.worker()
    job = launch(project, member, steps=1000, step_seconds=0.05)
    wait_for(lambda: job_state(job) == JobState.RUNNING and job.progress > 0, what="job to run")
    assert services.job_cancel(job=job, actor=member)
    wait_for(lambda: job_state(job) == JobState.CANCELLED, timeout=60, what="cancelled")
    # It stopped far from its end (50 s of steps). How fast a cancel lands is a speed figure
    # for a benchmark, not an assertion.
    assert job.progress < 0.5
    states = list(
        job.events.filter(kind="state").order_by("seq").values_list("data__state", flat=True)
    )
    assert states[-2:] == ["cancelling", "cancelled"]
