"""Handed-off writes with real parts: while a job's results are written on the worker's finisher
thread the worker already runs its next job, and a worker killed before the writes are done
loses nothing: the job is still running, its lease runs out and it re-runs to one output."""

from __future__ import annotations

import signal

import pytest

from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.outputs.models import Output
from tests.integration.helpers import job_state, launch, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_while_writing_a_result_loses_nothing(processes, project, member, tmp_path):
    gate, record = tmp_path / "gate", tmp_path / "record.txt"
    processes.scheduler(interval=0.3)  # its reaper re-queues the job when the lease runs out
    processes.worker("worker-a", queues="cpu")  # concurrency 1
    job = launch(
        project,
        member,
        kind="test.deferred",
        text="kept",
        gate_file=str(gate),
        record_file=str(record),
    )
    wait_for(
        lambda: record.exists() and "1 generated" in record.read_text(),
        timeout=60,
        what="the first attempt to hand off its writes",
    )
    # The worker's only slot is free again: the next job runs while the first one's writes wait.
    nxt = launch(project, member, steps=3, step_seconds=0.01)
    wait_for(lambda: job_state(nxt) == JobState.SUCCEEDED, timeout=60, what="the next job")
    assert job_state(job) == JobState.RUNNING

    processes.kill("worker-a", signal.SIGKILL)
    assert job_state(job) == JobState.RUNNING
    assert not Output.objects.filter(job=job).exists()

    gate.touch()
    processes.worker("worker-b", queues="cpu")
    wait_for(lambda: job_state(job) == JobState.SUCCEEDED, timeout=90, what="the re-run job")
    job = Job.objects.get(pk=job.pk)
    outputs = list(Output.objects.filter(job=job))
    assert [o.text for o in outputs] == ["kept"]  # one output, none lost, none twice
    assert job.attempt == 2 and job.result == {"output_id": outputs[0].pk}
    assert outputs[0].created_at <= job.finished_at
    lines = record.read_text().split("\n")
    assert "1 writing" not in lines and "2 writing" in lines
