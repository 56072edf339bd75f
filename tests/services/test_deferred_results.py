"""A runner's deferred writes (image jobs' PNGs and rows) and the job's outcome land together:
the job says succeeded only with its outputs in place, a failure or a lost lease leaves no
output behind, and a handed-off job is finished by the worker's finisher thread."""

from __future__ import annotations

import pytest

from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.outputs.models import Output
from tests import factories
from workers.tasks.runtime import FINISHER, HANDED_OFF, execute_job

pytestmark = pytest.mark.django_db(transaction=True)


def _job(project, user, **params) -> Job:
    return factories.make_job(project, user, "test.deferred", **params)


def test_a_deferred_result_is_written_with_the_outcome(project, member):
    job = _job(project, member, text="the answer")
    assert execute_job(job.pk, worker_id="w1") == JobState.SUCCEEDED
    job.refresh_from_db()
    output = Output.objects.get(job=job)
    assert output.text == "the answer" and job.result == {"output_id": output.pk}
    assert output.created_at <= job.finished_at  # in the gallery before the job says succeeded
    assert job.events.filter(kind="state", data__state="succeeded").count() == 1


def test_writes_that_fail_leave_no_output_and_a_failed_job(project, member):
    job = _job(project, member, fail_after_write=True)
    assert execute_job(job.pk, worker_id="w1") == JobState.FAILED
    job.refresh_from_db()
    assert job.state == JobState.FAILED and "failed on purpose after writing" in job.error
    assert not Output.objects.filter(job=job).exists()  # rolled back with the outcome


def test_a_job_lost_while_writing_keeps_none_of_its_rows(project, member):
    job = _job(project, member, lose_the_job=True)
    assert execute_job(job.pk, worker_id="w1") == "lost"
    assert not Output.objects.filter(job=job).exists()  # the attempt that owns it writes its own
    job.refresh_from_db()
    assert job.state == JobState.RUNNING  # not finished by the attempt that lost it


def test_a_handed_off_job_is_finished_by_the_finisher_thread(project, member):
    project.max_concurrent_jobs = 3  # a job being finished still holds its run slot
    project.save()
    jobs = [_job(project, member, text=f"answer {i}") for i in range(3)]
    try:
        for job in jobs:
            assert execute_job(job.pk, worker_id="w1", handoff=True) == HANDED_OFF
    finally:
        assert FINISHER.drain(timeout=60)
    for i, job in enumerate(jobs):
        job.refresh_from_db()
        assert job.state == JobState.SUCCEEDED
        assert Output.objects.get(job=job).text == f"answer {i}"
    finished = [j.finished_at for j in jobs]
    assert finished == sorted(finished)  # in the order they were handed off


def test_a_job_being_finished_keeps_its_run_slot(project, member):
    project.max_concurrent_jobs = 1
    project.save()
    first, second = _job(project, member, text="first"), _job(project, member, text="second")
    try:
        assert execute_job(first.pk, worker_id="w1", handoff=True) == HANDED_OFF
        first.refresh_from_db()
        if first.state == JobState.RUNNING:  # still being written: the project's one slot
            assert execute_job(second.pk, worker_id="w1", handoff=True) == "not-claimed"
    finally:
        assert FINISHER.drain(timeout=60)
    first.refresh_from_db()
    assert first.state == JobState.SUCCEEDED
