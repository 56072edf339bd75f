"""The owner's line: a member reorders their own queued jobs (job_queue_move), and the worker's
next message runs the job they moved first (job_claim_turn, through execute_job in-process)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.jobs.models import EventKind, Job, JobEvent
from apps.jobs.selectors import member_queue, others_queued_ahead
from apps.jobs.services import JobNotYours, JobQueueMoveError, job_queue_move
from apps.jobs.states import JobState
from apps.projects.models import Membership
from apps.projects.selectors import project_access
from tests import factories
from workers.tasks.runtime import execute_job

ONE_STEP = {"steps": 1, "step_seconds": 0}


def _line(project, user) -> list[int]:
    access = project_access(user=user, project_id=project.pk)
    return [j.pk for j in member_queue(access=access, user=user, queue="cpu")]


def _run_order() -> list[int]:
    """Jobs in the order workers claimed them (their `running` events, numbered by the db)."""
    return [
        e.job_id
        for e in JobEvent.objects.filter(kind=EventKind.STATE, data__state=JobState.RUNNING)
        .order_by("pk")
        .only("job_id")
    ]


@pytest.fixture
def three(transactional_db, project, people) -> list[Job]:
    """Three jobs the member queued while no worker ran (their messages wait in that order)."""
    return [factories.make_job(project, people["member"], **ONE_STEP) for _ in range(3)]


# --------------------------------------------------------------------------- the worker's turns


def test_the_job_moved_to_the_front_runs_first_when_the_worker_starts(three, project, people):
    first, second, third = three

    assert job_queue_move(job=third, actor=people["member"], to="front") is True
    assert _line(project, people["member"]) == [third.pk, first.pk, second.pk]

    # The worker starts and takes the messages as the broker holds them: first, second, third.
    outcomes = [execute_job(job.pk, worker_id="w") for job in three]

    assert outcomes == ["succeeded"] * 3
    assert _run_order() == [third.pk, first.pk, second.pk]
    for job in three:
        job.refresh_from_db()
        assert job.state == JobState.SUCCEEDED and job.attempt == 1


def test_duplicate_messages_still_do_nothing_once_the_line_was_reordered(three, project, people):
    first, second, third = three
    job_queue_move(job=third, actor=people["member"], to="front")
    assert execute_job(first.pk, worker_id="w") == "succeeded"  # ran the third, on the first's turn
    assert _run_order() == [third.pk]

    # The third's own message is the turn the first lent it: the owner's next job runs on it.
    assert execute_job(third.pk, worker_id="w") == "succeeded"
    assert _run_order() == [third.pk, first.pk]
    # Copies of messages already used (at-least-once delivery) claim nothing, though the owner
    # still has a queued job.
    assert execute_job(third.pk, worker_id="w2") == "not-claimed"
    assert _run_order() == [third.pk, first.pk]
    second.refresh_from_db()
    assert second.state == JobState.QUEUED and second.attempt == 0
    # Its own message runs it; a copy of that one does nothing.
    assert execute_job(second.pk, worker_id="w") == "succeeded"
    assert execute_job(second.pk, worker_id="w2") == "not-claimed"
    # The first ran on the second's turn: its message is one more turn, with nothing left.
    assert execute_job(first.pk, worker_id="w") == "not-claimed"
    assert execute_job(first.pk, worker_id="w") == "not-claimed"
    assert _run_order() == [third.pk, first.pk, second.pk]
    assert list(Job.objects.order_by("pk").values_list("attempt", flat=True)) == [1, 1, 1]


def test_a_turn_never_passes_another_members_job(transactional_db, project, people):
    theirs = factories.make_job(project, people["admin"], **ONE_STEP)
    mine = [factories.make_job(project, people["member"], **ONE_STEP) for _ in range(2)]
    job_queue_move(job=mine[1], actor=people["member"], to="front")

    assert execute_job(theirs.pk, worker_id="w") == "succeeded"
    assert execute_job(mine[0].pk, worker_id="w") == "succeeded"

    assert _run_order() == [theirs.pk, mine[1].pk]


def test_without_a_free_slot_the_message_waits_as_before(transactional_db, project, people):
    project.max_concurrent_jobs = 1
    project.save(update_fields=["max_concurrent_jobs"])
    busy = factories.make_job(project, people["admin"], **ONE_STEP)
    Job.objects.filter(pk=busy.pk).update(state=JobState.RUNNING)
    first, second = [factories.make_job(project, people["member"], **ONE_STEP) for _ in range(2)]
    job_queue_move(job=second, actor=people["member"], to="front")

    assert execute_job(first.pk, worker_id="w") == "not-claimed"

    for job in (first, second):
        job.refresh_from_db()
        assert job.state == JobState.QUEUED and job.attempt == 0 and not job.ran_ahead
    # Unmarked: dispatch_waiting sends it again when the slot frees.
    assert first.dispatched_at is None


# --------------------------------------------------------------------------- moving


def test_up_and_down_swap_neighbours_and_the_ends_stay(db, project, people):
    member = people["member"]
    a, b, c = [factories.make_job(project, member, **ONE_STEP) for _ in range(3)]

    assert job_queue_move(job=c, actor=member, to="up") is True
    assert _line(project, member) == [a.pk, c.pk, b.pk]
    assert job_queue_move(job=a, actor=member, to="down") is True
    assert _line(project, member) == [c.pk, a.pk, b.pk]
    assert job_queue_move(job=c, actor=member, to="up") is False
    assert job_queue_move(job=b, actor=member, to="down") is False
    assert job_queue_move(job=b, actor=member, to="front") is True
    assert _line(project, member) == [b.pk, c.pk, a.pk]
    # A job submitted afterwards joins the end of the line.
    d = factories.make_job(project, member, **ONE_STEP)
    assert _line(project, member) == [b.pk, c.pk, a.pk, d.pk]


def test_only_the_owner_moves_and_only_a_queued_job(db, project, people, make_user):
    other = make_user("other-member")
    Membership.objects.create(project=project, user=other, role="member")
    job = factories.make_job(project, people["member"], **ONE_STEP)
    factories.make_job(project, people["member"], **ONE_STEP)

    for actor in (other, people["admin"]):
        with pytest.raises(JobNotYours):
            job_queue_move(job=job, actor=actor, to="down")
    # A project admin (the caller checked the role) moves it, within the owner's line.
    assert job_queue_move(job=job, actor=people["admin"], to="down", as_admin=True)
    assert _line(project, people["member"])[-1] == job.pk
    Job.objects.filter(project=project).update(queue_rank=None)
    Job.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
    with pytest.raises(JobQueueMoveError):
        job_queue_move(job=job, actor=people["member"], to="down")
    assert not Job.objects.filter(queue_rank__isnull=False).exists()


def test_others_ahead_counts_other_peoples_older_queued_jobs(db, project, people):
    factories.make_job(project, people["admin"], **ONE_STEP)
    factories.make_job(project, people["admin"], **ONE_STEP)
    factories.make_job(project, people["member"], **ONE_STEP)
    factories.make_job(project, people["admin"], **ONE_STEP)  # after the member's: not ahead
    access = project_access(user=people["member"], project_id=project.pk)

    assert others_queued_ahead(access=access, user=people["member"], queue="cpu") == 2


# --------------------------------------------------------------------------- the page's endpoint


def test_the_move_endpoint_answers_owner_other_member_viewer_and_outsider(
    client, project, people, make_user
):
    other = make_user("other-member")
    Membership.objects.create(project=project, user=other, role="member")
    member = people["member"]
    a, b = [factories.make_job(project, member, **ONE_STEP) for _ in range(2)]
    url = reverse("images:queue_move", args=[project.pk, b.pk])

    client.force_login(other)
    assert client.post(url, {"to": "front"}).status_code == 403
    refused = client.post(url, {"to": "front"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 403 and "submitted" in refused.json()["error"]
    client.force_login(people["viewer"])
    assert client.post(url, {"to": "front"}).status_code == 403
    client.force_login(people["outsider"])
    assert client.post(url, {"to": "front"}).status_code == 404
    assert _line(project, member) == [a.pk, b.pk]

    client.force_login(member)
    response = client.post(url, {"to": "front"})
    assert response.status_code == 302 and response.url.endswith("/images/#im-queue")
    assert _line(project, member) == [b.pk, a.pk]
    assert client.post(url, {"to": "down"}, HTTP_ACCEPT="application/json").json() == {
        "moved": True
    }
    Job.objects.filter(pk=b.pk).update(state=JobState.CANCELLED)
    gone = client.post(url, {"to": "up"}, HTTP_ACCEPT="application/json")
    assert gone.status_code == 409 and f"#{b.pk}" in gone.json()["error"]
