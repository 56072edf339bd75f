"""A gpu worker claims its next job during the current one's last step (workers/tasks/runtime
Lookahead): the next job runs in the same Celery task with no broker round trip or claim in
between, its own message then does nothing, a moved queue is left to the messages, and a warm
shutdown queues a job claimed ahead again without using up one of its attempts."""

from __future__ import annotations

import pytest

from apps.jobs.models import Job
from apps.jobs.states import JobState
from apps.outputs.models import Output
from tests import factories
from workers.tasks import runtime
from workers.tasks.runtime import FINISHER, HANDED_OFF, execute_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clean_worker_state():
    yield
    assert FINISHER.drain(timeout=60)
    runtime.SHUTDOWN.clear()
    runtime._CLAIMED_AHEAD.clear()
    assert runtime.LOOKAHEAD.take(timeout=10) is None  # nothing left claimed and not run


def _job(project, user, **params) -> Job:
    return factories.make_job(project, user, "test.gpu_ahead", **params)


def test_the_next_job_runs_in_the_same_task_and_its_message_does_nothing(project, member):
    first, second = _job(project, member, text="first"), _job(project, member, text="second")

    assert execute_job(first.pk, worker_id="gpu@a:1", handoff=True, queue="gpu") == HANDED_OFF
    assert FINISHER.drain(timeout=60)

    for job, text in ((first, "first"), (second, "second")):
        job.refresh_from_db()
        assert (job.state, job.attempt, job.lease_owner) == (JobState.SUCCEEDED, 1, "gpu@a:1")
        assert Output.objects.get(job=job).text == text
    assert second.started_at < first.finished_at  # claimed before the first one's rows
    # The second job's own message comes later: it finds the job done and changes nothing.
    assert execute_job(second.pk, worker_id="gpu@b:2", handoff=True, queue="gpu") == "not-claimed"
    second.refresh_from_db()
    assert (second.state, second.attempt, second.lease_owner) == (JobState.SUCCEEDED, 1, "gpu@a:1")
    assert Output.objects.filter(job=second).count() == 1


def test_a_line_its_owner_moved_is_left_to_the_messages(project, people):
    first = _job(project, people["member"])
    second, third = _job(project, people["admin"]), _job(project, people["admin"])
    Job.objects.filter(pk=third.pk).update(queue_rank=1)  # its owner moved a job of the line

    assert execute_job(first.pk, worker_id="w", handoff=True, queue="gpu") == HANDED_OFF

    second.refresh_from_db()
    assert second.state == JobState.QUEUED and second.attempt == 0
    assert second.dispatched_at is not None  # its message is still on its way: not sent again


def test_a_job_of_another_queue_is_not_taken(project, member):
    first = _job(project, member)
    cpu_job = factories.make_job(project, member, "test.deferred")

    assert execute_job(first.pk, worker_id="w", handoff=True, queue="gpu") == HANDED_OFF

    cpu_job.refresh_from_db()
    assert cpu_job.state == JobState.QUEUED


def test_a_warm_shutdown_queues_a_job_claimed_ahead_again(project, member):
    second = _job(project, member)  # sent first: the lookahead's pick once `first` runs
    first = _job(project, member, shutdown_once_running=second.pk)
    max_attempts = second.max_attempts

    assert execute_job(first.pk, worker_id="gpu@a:1", handoff=True, queue="gpu") == HANDED_OFF
    assert FINISHER.drain(timeout=60)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == JobState.SUCCEEDED
    assert second.state == JobState.QUEUED and second.lease_owner == ""
    assert second.max_attempts == max_attempts + 1  # the unstarted attempt is not used up
    assert second.dispatch_count == 2  # its message was sent again
    log = [e.data.get("message", "") for e in second.events.filter(kind="state")]
    assert any("stopped before starting this job" in m for m in log)
    assert not Output.objects.filter(job=second).exists()
    # Its old message, when it comes, claims it as any message would.
    runtime.SHUTDOWN.clear()
    assert execute_job(second.pk, worker_id="gpu@b:2", handoff=True, queue="gpu") == HANDED_OFF
