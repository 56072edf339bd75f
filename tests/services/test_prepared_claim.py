"""The claim's UPDATE, compiled once (apps/jobs/prepared.py): same rows, same limits as the ORM's.

The claim embeds two constants (the default project limit and the platform's ceiling) and runs
with five values of its own (job, worker, device, two times); these tests change each and read
the row back, on whichever database the suite runs (SQLite here, PostgreSQL in CI).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from apps.jobs.models import Job
from apps.jobs.prepared import Prepared
from apps.jobs.services import job_claim
from apps.jobs.states import JobState
from apps.projects.models import Project
from apps.quotas.models import PlatformPolicy
from apps.quotas.services import forget_policy
from tests import factories


@pytest.fixture
def policy(db):
    forget_policy()
    yield PlatformPolicy.current()
    forget_policy()


def _job(project, people) -> Job:
    return factories.make_job(project, people["member"])


def test_a_claim_writes_this_workers_values_and_times(project, people):
    first, second = _job(project, people), _job(project, people)
    long_device = "cuda:0 " + "x" * 300
    before = timezone.now()

    assert job_claim(job_id=first.pk, worker_id="gpu@a:1", device="cpu") is not None
    assert job_claim(job_id=second.pk, worker_id="gpu@b:2", device=long_device) is not None

    lease = timedelta(seconds=settings.ATELIER["LEASE_SECONDS"])
    for job, worker, device in ((first, "gpu@a:1", "cpu"), (second, "gpu@b:2", long_device)):
        job.refresh_from_db()
        assert (job.state, job.attempt, job.lease_owner) == (JobState.RUNNING, 1, worker)
        assert job.device == device[:200]
        assert job.started_at == job.attempt_started_at and job.started_at >= before
        assert job.lease_until == job.started_at + lease
        assert job.dispatched_at is None and job.last_seq == 2


def test_a_ceiling_lowered_after_a_claim_holds_the_next_claim_back(project, people, policy):
    Project.objects.filter(pk=project.pk).update(max_concurrent_jobs=5)
    running, waiting = _job(project, people), _job(project, people)
    assert job_claim(job_id=running.pk, worker_id="w") is not None

    policy.project_concurrency_ceiling = 1
    policy.save()
    assert job_claim(job_id=waiting.pk, worker_id="w") is None

    policy.project_concurrency_ceiling = 3
    policy.save()
    assert job_claim(job_id=waiting.pk, worker_id="w") is not None


def test_a_prepared_select_runs_with_each_calls_values(project, people):
    other = Project.objects.create(name="Other")
    for _ in range(3):
        _job(project, people)
    factories.make_job(other, people["member"])
    count_in = Prepared(
        lambda key, *, project_id, state: (
            Job.objects.filter(project_id=project_id, state=state)
            .values("project_id")
            .annotate(n=Count("pk"))
            .values("n")
        ),
        project_id="int",
        state="text",
    )

    assert count_in.execute(project_id=project.pk, state=JobState.QUEUED) == [(3,)]
    assert count_in.execute(project_id=other.pk, state=JobState.QUEUED) == [(1,)]
    assert count_in.execute(project_id=other.pk, state=JobState.RUNNING) == []


def test_a_statement_that_drops_a_value_is_refused(db):
    dropped = Prepared(
        lambda key, *, job_id, worker_id: Job.objects.filter(pk=job_id),
        job_id="int",
        worker_id="text",
    )

    with pytest.raises(ValueError, match="worker_id"):
        dropped.execute(job_id=1, worker_id="w")
