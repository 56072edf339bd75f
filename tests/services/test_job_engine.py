"""The job engine's services on a real database: create, claim, lease, reap, cancel, retry, events."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.jobs import services
from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.services import (
    JobParamsError,
    job_append_events,
    job_cancel,
    job_claim,
    job_create,
    job_events_after,
    job_finish,
    job_heartbeat,
    job_retry,
    reap_expired_leases,
)
from apps.jobs.states import IllegalTransition, JobState
from tests import factories
from workers.tasks.runtime import execute_job

FAST = {"steps": 3, "step_seconds": 0}


@pytest.fixture
def make_job(project, people):
    def make(**params) -> Job:
        return factories.make_job(project, people["member"], **params)

    return make


def _states(job: Job) -> list[str]:
    return [
        e.data["state"]
        for e in JobEvent.objects.filter(job=job, kind=EventKind.STATE).order_by("seq")
    ]


def _expire_lease(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


# --------------------------------------------------------------------------- job_create


def test_job_create_rejects_params_that_fail_the_kinds_schema_and_names_the_fields(project, people):
    with pytest.raises(JobParamsError) as info:
        job_create(
            project=project,
            kind="test.steps",
            params={"steps": 0, "colour": "red"},
            created_by=people["member"],
        )

    assert set(info.value.errors) == {"steps", "colour"}
    assert "greater than or equal to 1" in info.value.errors["steps"]
    assert not Job.objects.exists()
    assert not JobEvent.objects.exists()
    assert not AuditEvent.objects.filter(action="job.launch").exists()


def test_job_create_rejects_an_unknown_kind(project, people):
    with pytest.raises(JobParamsError) as info:
        job_create(project=project, kind="no.such.kind", params={}, created_by=people["member"])

    assert set(info.value.errors) == {"kind"}
    assert not Job.objects.exists()


def test_job_create_stores_validated_params_and_a_first_queued_event(project, people):
    job = job_create(
        project=project, kind="test.steps", params={"steps": "4"}, created_by=people["member"]
    )

    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert job.queue == "cpu"
    assert job.params["steps"] == 4  # coerced by the schema, defaults filled in
    assert job.params["step_seconds"] == 0.05
    # A slot was free: the row is made marked as sent; its message goes out after the commit.
    assert job.attempt == 0 and job.dispatched_at is not None and job.dispatch_count == 1
    events = list(JobEvent.objects.filter(job=job))
    assert [(e.seq, e.kind, e.data["state"]) for e in events] == [
        (1, EventKind.STATE, JobState.QUEUED)
    ]
    assert job.last_seq == 1


def test_job_create_writes_a_launch_audit_event(project, people):
    job = job_create(
        project=project, kind="test.steps", params=dict(FAST), created_by=people["member"]
    )

    audit = AuditEvent.objects.get(action="job.launch")
    assert audit.actor == people["member"]
    assert audit.actor_username == "member"
    assert audit.project == project
    assert (audit.target_type, audit.target_id) == ("job", str(job.pk))
    assert audit.data == {"kind": "test.steps", "retry_of": None}


# --------------------------------------------------------------------------- claim


def test_the_first_claim_runs_the_job_under_a_lease(make_job):
    job = make_job()
    before = timezone.now()

    claimed = job_claim(job_id=job.pk, worker_id="worker-a")

    assert claimed is not None
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.attempt == 1
    assert job.lease_owner == "worker-a"
    assert job.lease_until > before
    assert job.started_at is not None
    assert _states(job) == [JobState.QUEUED, JobState.RUNNING]


def test_a_second_claim_does_nothing(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    job.refresh_from_db()
    lease_until, last_seq = job.lease_until, job.last_seq

    assert job_claim(job_id=job.pk, worker_id="worker-b") is None

    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.attempt == 1
    assert job.lease_owner == "worker-a"
    assert job.lease_until == lease_until
    assert job.last_seq == last_seq


def test_a_claim_of_a_cancelled_job_does_nothing(make_job, people):
    job = make_job()
    assert job_cancel(job=job, actor=people["member"])

    assert job_claim(job_id=job.pk, worker_id="worker-a") is None

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert job.attempt == 0
    assert job.lease_owner == ""
    assert job.lease_until is None


def test_a_claim_of_a_missing_job_does_nothing(db):
    assert job_claim(job_id=987654, worker_id="worker-a") is None


# --------------------------------------------------------------------------- concurrency


def test_a_project_at_its_concurrency_limit_keeps_the_next_job_waiting(project, make_job):
    project.max_concurrent_jobs = 1
    project.save()
    first, second = make_job(), make_job()
    Job.objects.filter(pk=second.pk).update(dispatched_at=timezone.now())  # its message arrives
    assert job_claim(job_id=first.pk, worker_id="worker-a") is not None

    assert job_claim(job_id=second.pk, worker_id="worker-b") is None

    second.refresh_from_db()
    assert second.state == JobState.QUEUED
    assert second.attempt == 0
    assert second.dispatched_at is None  # so dispatch_waiting sends it again when a slot frees
    assert _states(second) == [JobState.QUEUED]


def test_a_finished_job_frees_its_slot_for_the_next_one(project, make_job):
    project.max_concurrent_jobs = 1
    project.save()
    first, second = make_job(), make_job()
    job_claim(job_id=first.pk, worker_id="worker-a")
    assert job_claim(job_id=second.pk, worker_id="worker-b") is None

    assert (
        job_finish(job_id=first.pk, attempt=1, target=JobState.SUCCEEDED, result={"ok": True})
        is True
    )
    claimed = job_claim(job_id=second.pk, worker_id="worker-b")

    assert claimed is not None
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == JobState.SUCCEEDED
    assert first.result == {"ok": True}
    assert first.progress == 1.0
    assert first.lease_until is None and first.finished_at is not None
    assert second.state == JobState.RUNNING
    assert second.lease_owner == "worker-b"


def test_job_finish_of_a_stale_attempt_changes_nothing(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")

    assert job_finish(job_id=job.pk, attempt=7, target=JobState.SUCCEEDED) is False

    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.finished_at is None


# --------------------------------------------------------------------------- heartbeat and fencing


def test_a_heartbeat_renews_the_lease_of_the_owning_attempt(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    almost = timezone.now() + timedelta(milliseconds=100)
    Job.objects.filter(pk=job.pk).update(lease_until=almost)

    assert job_heartbeat(job_id=job.pk, attempt=1) == JobState.RUNNING

    job.refresh_from_db()
    assert job.lease_until > almost + timedelta(seconds=1)


def test_a_heartbeat_reports_cancelling_so_the_worker_can_stop(make_job, people):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    job_cancel(job=job, actor=people["member"])

    assert job_heartbeat(job_id=job.pk, attempt=1) == JobState.CANCELLING


def test_a_heartbeat_from_a_stale_attempt_is_fenced_out(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    _expire_lease(job)
    reap_expired_leases()
    job_claim(job_id=job.pk, worker_id="worker-b")  # attempt 2 owns it now
    job.refresh_from_db()
    lease_until = job.lease_until

    assert job_heartbeat(job_id=job.pk, attempt=1) is None

    job.refresh_from_db()
    assert job.attempt == 2
    assert job.lease_owner == "worker-b"
    assert job.lease_until == lease_until


def test_events_from_a_stale_attempt_are_not_written(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    _expire_lease(job)
    reap_expired_leases()
    job_claim(job_id=job.pk, worker_id="worker-b")
    job.refresh_from_db()
    last_seq, progress = job.last_seq, job.progress

    written = job_append_events(
        job_id=job.pk, events=[(EventKind.LOG, {"message": "late"})], attempt=1, progress=0.9
    )

    assert written is None
    job.refresh_from_db()
    assert job.last_seq == last_seq
    assert job.progress == progress
    assert not JobEvent.objects.filter(job=job, kind=EventKind.LOG).exists()


def test_events_of_a_fenced_attempt_are_refused_once_the_job_is_finished(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    job_finish(job_id=job.pk, attempt=1, target=JobState.SUCCEEDED)
    job.refresh_from_db()

    assert (
        job_append_events(job_id=job.pk, events=[(EventKind.LOG, {"message": "x"})], attempt=1)
        is None
    )
    assert JobEvent.objects.filter(job=job).count() == job.last_seq


# --------------------------------------------------------------------------- the reaper


def test_the_reaper_requeues_a_running_job_whose_lease_expired(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    _expire_lease(job)

    assert reap_expired_leases() == 1

    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert job.lease_owner == ""
    assert job.lease_until is None
    assert job.attempt == 1  # the next claim makes it 2
    last = JobEvent.objects.filter(job=job).order_by("-seq").first()
    assert last.kind == EventKind.STATE
    assert last.data["state"] == JobState.QUEUED
    assert "re-queue" in last.data["message"]
    assert "worker-a" in last.data["message"]


def test_the_reaper_leaves_a_job_with_a_valid_lease_alone(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    job.refresh_from_db()
    before = (job.state, job.lease_until, job.lease_owner, job.last_seq)

    assert reap_expired_leases() == 0

    job.refresh_from_db()
    assert (job.state, job.lease_until, job.lease_owner, job.last_seq) == before


def test_the_reaper_finishes_a_cancelling_job_whose_worker_is_gone(make_job, people):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    job_cancel(job=job, actor=people["member"])
    _expire_lease(job)

    assert reap_expired_leases() == 1

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert job.lease_until is None
    assert job.finished_at is not None
    assert _states(job)[-1] == JobState.CANCELLED


def test_the_reaper_fails_a_job_that_used_up_its_attempts(make_job):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    job_claim(job_id=job.pk, worker_id="worker-a")
    _expire_lease(job)

    assert reap_expired_leases() == 1

    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.lease_until is None
    assert job.finished_at is not None
    assert "lost 1 times" in job.error
    last = JobEvent.objects.filter(job=job).order_by("-seq").first()
    assert last.data["state"] == JobState.FAILED
    assert last.data["error"] == job.error


def test_a_reaped_job_can_be_claimed_again_with_a_new_attempt(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")
    _expire_lease(job)
    reap_expired_leases()

    assert job_claim(job_id=job.pk, worker_id="worker-b") is not None

    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.attempt == 2
    assert job.lease_owner == "worker-b"
    assert _states(job) == [JobState.QUEUED, JobState.RUNNING, JobState.QUEUED, JobState.RUNNING]


# --------------------------------------------------------------------------- cancel


def test_cancelling_a_queued_job_cancels_it_at_once(make_job, people):
    job = make_job()

    assert job_cancel(job=job, actor=people["member"]) is True

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert job.finished_at is not None
    audit = AuditEvent.objects.get(action="job.cancel")
    assert audit.actor == people["member"]
    assert (audit.project, audit.target_id) == (job.project, str(job.pk))


def test_cancelling_a_running_job_asks_the_worker_to_stop(make_job, people):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="worker-a")

    assert job_cancel(job=job, actor=people["admin"]) is True

    job.refresh_from_db()
    assert job.state == JobState.CANCELLING
    assert job.finished_at is None
    last = JobEvent.objects.filter(job=job).order_by("-seq").first()
    assert last.data["state"] == JobState.CANCELLING
    assert "admin" in last.data["message"]
    assert AuditEvent.objects.filter(action="job.cancel", actor=people["admin"]).count() == 1


@pytest.mark.parametrize("final", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_cancelling_a_finished_job_returns_false_and_changes_nothing(make_job, people, final):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(state=final)

    assert job_cancel(job=job, actor=people["member"]) is False

    job.refresh_from_db()
    assert job.state == final
    assert job.last_seq == 1
    assert not AuditEvent.objects.filter(action="job.cancel").exists()


# --------------------------------------------------------------------------- retry


@pytest.mark.parametrize("final", [JobState.FAILED, JobState.CANCELLED])
def test_retrying_a_failed_or_cancelled_job_starts_a_new_one_with_the_same_params(
    make_job, people, final
):
    job = make_job(steps=7, step_seconds=0)
    Job.objects.filter(pk=job.pk).update(state=final)

    new = job_retry(job=job, actor=people["admin"])

    new.refresh_from_db()
    assert new.pk != job.pk
    assert new.retry_of_id == job.pk
    assert (new.kind, new.params, new.project_id) == (job.kind, job.params, job.project_id)
    assert new.state == JobState.QUEUED
    assert new.created_by == people["admin"]
    job.refresh_from_db()
    assert job.state == final
    audit = AuditEvent.objects.get(action="job.retry")
    assert audit.target_id == str(new.pk)
    assert audit.data == {"kind": "test.steps", "retry_of": job.pk}


@pytest.mark.parametrize(
    "state", [JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING, JobState.SUCCEEDED]
)
def test_retrying_a_job_that_is_not_failed_or_cancelled_is_refused(make_job, people, state):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(state=state)

    with pytest.raises(IllegalTransition):
        job_retry(job=job, actor=people["member"])

    assert Job.objects.count() == 1


# --------------------------------------------------------------------------- events and replay


def test_events_are_numbered_without_gaps_across_fenced_and_unfenced_writes(make_job):
    job = make_job()  # seq 1: queued
    job_claim(job_id=job.pk, worker_id="worker-a")  # seq 2: running
    job_append_events(job_id=job.pk, events=[(EventKind.LOG, {"message": "a"})])  # 3
    job_append_events(
        job_id=job.pk,
        attempt=1,
        progress=0.5,
        events=[
            (EventKind.METRICS, {"step": 1, "values": {"loss": 1.0}}),
            (EventKind.PROGRESS, {"step": 1}),
        ],
    )  # 4, 5
    job_append_events(job_id=job.pk, events=[(EventKind.LOG, {"message": "b"})])  # 6
    job_append_events(job_id=job.pk, attempt=1, events=[(EventKind.LOG, {"message": "c"})])  # 7

    seqs = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 8))
    job.refresh_from_db()
    assert job.last_seq == 7
    assert job.progress == 0.5
    fenced = JobEvent.objects.filter(job=job, seq__in=[4, 5, 7]).values_list("attempt", flat=True)
    assert set(fenced) == {1}


def test_an_empty_append_writes_nothing(make_job):
    job = make_job()

    assert job_append_events(job_id=job.pk, events=[]) == []

    job.refresh_from_db()
    assert job.last_seq == 1


def test_events_of_one_job_do_not_take_numbers_from_another(make_job):
    a, b = make_job(), make_job()
    job_append_events(job_id=a.pk, events=[(EventKind.LOG, {"message": "a"})] * 3)
    job_append_events(job_id=b.pk, events=[(EventKind.LOG, {"message": "b"})])

    assert list(JobEvent.objects.filter(job=a).values_list("seq", flat=True)) == [1, 2, 3, 4]
    assert list(JobEvent.objects.filter(job=b).values_list("seq", flat=True)) == [1, 2]


def test_replay_returns_exactly_the_events_after_a_sequence_in_order(make_job):
    job = make_job()
    for i in range(3):
        job_append_events(
            job_id=job.pk,
            events=[(EventKind.LOG, {"message": f"m{i}a"}), (EventKind.LOG, {"message": f"m{i}b"})],
        )
    total = 7

    for after in range(total + 2):
        replay = job_events_after(job_id=job.pk, after=after)
        assert [e.seq for e in replay] == list(range(after + 1, total + 1))
    assert [e.data.get("message") for e in job_events_after(job_id=job.pk, after=5)] == [
        "m2a",
        "m2b",
    ]


def test_replay_respects_its_limit(make_job):
    job = make_job()
    job_append_events(
        job_id=job.pk, events=[(EventKind.LOG, {"message": str(i)}) for i in range(5)]
    )

    assert [e.seq for e in job_events_after(job_id=job.pk, after=1, limit=2)] == [2, 3]


# --------------------------------------------------------------------------- execute_job, in-process


@pytest.fixture
def run_job(transactional_db, project, people):
    def make(**params) -> Job:
        return factories.make_job(project, people["member"], **params)

    return make


def test_execute_job_runs_a_job_to_success_with_its_events_in_order(run_job):
    job = run_job()

    assert execute_job(job.pk, worker_id="test-worker") == "succeeded"

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.progress == 1.0
    assert job.result == {"steps": 3, "resumed_from": 0}
    assert job.lease_until is None and job.finished_at is not None
    events = list(JobEvent.objects.filter(job=job).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert job.last_seq == len(events)
    states = [(e.seq, e.data["state"]) for e in events if e.kind == EventKind.STATE]
    assert [s for _, s in states] == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    assert events[-1].kind == EventKind.STATE and events[-1].data["state"] == JobState.SUCCEEDED
    running_seq = states[1][0]
    work = [e for e in events if e.kind in (EventKind.PROGRESS, EventKind.METRICS)]
    assert work and all(running_seq < e.seq < events[-1].seq for e in work)
    metrics = [e.data["step"] for e in events if e.kind == EventKind.METRICS]
    assert metrics == [1, 2, 3]  # every metrics point is kept, throttling or not
    progress = [e.data for e in events if e.kind == EventKind.PROGRESS]
    assert progress[-1]["step"] == 3 and progress[-1]["fraction"] == 1.0


def test_execute_job_records_a_deliberate_failure(run_job):
    job = run_job(fail_at=2)

    assert execute_job(job.pk, worker_id="test-worker") == "failed"

    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.error == "failed on purpose at step 2"
    events = list(JobEvent.objects.filter(job=job).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].data == {
        "state": JobState.FAILED,
        "attempt": 1,
        "error": "failed on purpose at step 2",
    }
    logs = [e.data for e in events if e.kind == EventKind.LOG]
    assert {"message": "failed on purpose at step 2", "level": "error"} in logs


def test_executing_the_same_job_again_is_not_claimed(run_job):
    job = run_job()
    assert execute_job(job.pk, worker_id="test-worker") == "succeeded"
    job.refresh_from_db()
    last_seq = job.last_seq

    assert execute_job(job.pk, worker_id="another-worker") == "not-claimed"

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.attempt == 1
    assert job.last_seq == last_seq


def test_the_service_module_names_its_worker_id_after_the_host():
    assert services.default_worker_id()


# --------------------------------------------------------------------------- dispatch accounting


@pytest.fixture
def broker(monkeypatch):
    """The job ids put on Celery queues, in order. The real broker path is covered by
    tests/integration/test_reliability.py; here only the dispatcher's bookkeeping is checked."""
    sent: list[int] = []

    def publish(job_id: int, queue: str) -> bool:
        sent.append(job_id)
        return True

    monkeypatch.setattr(services, "_publish", publish)
    return sent


def test_jobs_over_the_concurrency_limit_wait_unsent(
    project, make_job, broker, django_capture_on_commit_callbacks
):
    project.max_concurrent_jobs = 2
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        jobs = [make_job() for _ in range(20)]

    assert broker == [jobs[0].pk, jobs[1].pk]  # one message each, oldest first
    sent = Job.objects.filter(dispatched_at__isnull=False).values_list("pk", flat=True)
    assert sorted(sent) == [jobs[0].pk, jobs[1].pk]
    assert Job.objects.filter(dispatched_at__isnull=True).count() == 18


def test_a_finished_job_sends_exactly_one_waiting_job(
    project, make_job, broker, django_capture_on_commit_callbacks
):
    project.max_concurrent_jobs = 2
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        jobs = [make_job() for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        job_claim(job_id=jobs[0].pk, worker_id="w")
        job_claim(job_id=jobs[1].pk, worker_id="w")
    assert broker == [jobs[0].pk, jobs[1].pk]  # claims free no slot: the jobs now run

    with django_capture_on_commit_callbacks(execute=True):
        job_finish(job_id=jobs[0].pk, attempt=1, target=JobState.SUCCEEDED)

    assert broker == [jobs[0].pk, jobs[1].pk, jobs[2].pk]
    services._broker_lost_its_messages()  # the broker epoch is known: Redis kept its data
    assert services.dispatch_pending() == 0  # nothing is due: no second message for anyone
    assert broker == [jobs[0].pk, jobs[1].pk, jobs[2].pk]
    assert sorted(Job.objects.values_list("dispatch_count", flat=True)) == [0, 0, 1, 1, 1]


def test_a_job_whose_send_failed_is_sent_by_the_next_dispatcher_round(
    project, make_job, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "_publish", lambda job_id, queue: False)  # broker away
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job()
    job.refresh_from_db()
    assert job.dispatched_at is None and job.dispatch_count == 1

    sent: list[int] = []
    monkeypatch.setattr(services, "_publish", lambda job_id, queue: sent.append(job_id) or True)
    services._broker_lost_its_messages()
    assert services.dispatch_pending() == 1
    assert sent == [job.pk]


def test_two_dispatchers_racing_for_one_job_send_it_once(project, make_job, broker):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(dispatched_at=None)  # waiting unsent, as over a limit
    assert services._send(job.pk, job.queue) is True
    assert services._send(job.pk, job.queue) is False  # already marked by the first
    assert broker == [job.pk]


def test_a_message_long_unclaimed_is_sent_again_with_back_off(
    project, make_job, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job()
    assert broker == [job.pk]
    assert services.dispatch_waiting(project_id=project.pk) == 0  # sent once already
    Job.objects.filter(pk=job.pk).update(dispatched_at=timezone.now() - timedelta(seconds=60))
    services._broker_lost_its_messages()
    assert services.dispatch_pending() == 1
    assert services.dispatch_pending() == 0  # just re-sent: not due again yet
    job.refresh_from_db()
    assert broker == [job.pk, job.pk] and job.dispatch_count == 2


# --------------------------------------------------------------------------- orphans, shutdown


def test_releasing_a_dead_workers_jobs_requeues_them_without_waiting_for_the_lease(make_job):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="gpu@host:4242")
    other = make_job()
    job_claim(job_id=other.pk, worker_id="gpu@host:5151")

    assert services.job_release_orphans(lease_owner="gpu@host:4242") == 1

    job.refresh_from_db()
    other.refresh_from_db()
    assert job.state == JobState.QUEUED and job.lease_until is None and job.lease_owner == ""
    assert other.state == JobState.RUNNING  # another worker's job is left alone
    assert "exited" in job.events.filter(kind="state").last().data["message"]
    assert services.job_release_orphans(lease_owner="gpu@host:4242") == 0


def test_releasing_a_dead_workers_cancelling_job_cancels_it(make_job, people):
    job = make_job()
    job_claim(job_id=job.pk, worker_id="gpu@host:4242")
    job_cancel(job=job, actor=people["member"])

    assert services.job_release_orphans(lease_owner="gpu@host:4242") == 1

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_a_shutdown_requeue_does_not_use_up_an_attempt(make_job):
    job = make_job()
    claimed = job_claim(job_id=job.pk, worker_id="gpu@host:1")
    before = claimed.max_attempts

    assert services.job_requeue_for_shutdown(job_id=job.pk, attempt=1, worker_id="gpu@host:1")
    assert not services.job_requeue_for_shutdown(job_id=job.pk, attempt=1, worker_id="x")

    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.max_attempts == before + 1
    assert job.lease_until is None and job.dispatched_at is None
    assert "shutting down" in job.events.filter(kind="state").last().data["message"]


def test_a_shutdown_stops_an_interruptible_job_and_requeues_it(run_job, monkeypatch):
    from workers.tasks import runtime

    monkeypatch.setattr(runtime, "SHUTDOWN", threading.Event())
    job = run_job(steps=50, step_seconds=0, checkpoint_every=1)
    runtime.SHUTDOWN.set()

    assert execute_job(job.pk, worker_id="test-worker") == "requeued"

    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.attempt == 1
    assert _states(job)[-1] == JobState.QUEUED


# --------------------------------------------------------------------------- metric series


def test_the_metric_series_keeps_each_step_once_with_the_newest_attempts_value(make_job):
    from apps.jobs.selectors import job_metric_series

    job = make_job()

    def metrics(step, value):
        return (EventKind.METRICS, {"step": step, "total": 9, "values": {"loss": value}})

    job_append_events(job_id=job.pk, events=[metrics(s, 10.0 + s) for s in (1, 2, 3, 4)])
    # attempt 2 resumed from the checkpoint of step 2 and reports 3 and 4 again
    job_append_events(job_id=job.pk, events=[metrics(s, 20.0 + s) for s in (3, 4, 5)])

    assert job_metric_series(job=job) == {
        "loss": [(1, 11.0), (2, 12.0), (3, 23.0), (4, 24.0), (5, 25.0)]
    }
