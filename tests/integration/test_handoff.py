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


def test_a_worker_killed_with_a_job_claimed_ahead_loses_nothing(
    processes, project, member, tmp_path
):
    """A gpu worker claims its next job during the current one's last step (its Lookahead); killed
    then, both jobs are running on a dead worker: their leases run out, and each re-runs to one
    output on the next worker."""
    hold = tmp_path / "hold"
    processes.scheduler(interval=0.3)
    processes.worker("worker-a", queues="gpu")
    first = launch(project, member, kind="test.gpu_ahead", text="first", hold_file=str(hold))
    second = launch(project, member, kind="test.gpu_ahead", text="second")
    wait_for(
        lambda: job_state(second) == JobState.RUNNING,
        timeout=60,
        what="the second job, claimed ahead during the first one's last step",
    )
    assert Job.objects.get(pk=second.pk).lease_owner == Job.objects.get(pk=first.pk).lease_owner

    processes.kill("worker-a", signal.SIGKILL)
    hold.touch()
    processes.worker("worker-b", queues="gpu")
    for job in (first, second):
        wait_for(lambda j=job: job_state(j) == JobState.SUCCEEDED, timeout=90, what="a re-run")
    for job, text in ((first, "first"), (second, "second")):
        job = Job.objects.get(pk=job.pk)
        assert [o.text for o in Output.objects.filter(job=job)] == [text]  # once, none lost
        assert job.attempt == 2
