"""The HTML pages a user sees: dashboard, launch form, job page, members page."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from apps.jobs.models import Job
from apps.jobs.services import job_claim, job_create
from apps.jobs.states import JobState
from apps.projects.models import Membership


def _as(client, user):
    assert client.login(username=user.username, password=f"pw-{user.username}")
    return client


def _text(response) -> str:
    return html.unescape(response.content.decode())


@pytest.fixture
def jobs(project, people):
    queued = job_create(
        project=project, kind="test.steps", params={"steps": 2}, created_by=people["member"]
    )
    running = job_create(
        project=project, kind="test.steps", params={"steps": 3}, created_by=people["admin"]
    )
    job_claim(job_id=running.pk, worker_id="worker-a")
    running.refresh_from_db()
    return {"queued": queued, "running": running}


# --------------------------------------------------------------------------- dashboard


def test_the_dashboard_lists_the_projects_jobs_with_their_state(client, project, people, jobs):
    response = _as(client, people["member"]).get(reverse("projects:dashboard", args=[project.pk]))

    assert response.status_code == 200
    assert [j.pk for j in response.context["jobs"]] == [jobs["running"].pk, jobs["queued"].pk]
    page = _text(response)
    for job, state, label in (
        (jobs["queued"], "queued", "Queued"),
        (jobs["running"], "running", "Running"),
    ):
        row = page.split(f'data-job-id="{job.pk}"', 1)[1].split("</tr>", 1)[0]
        assert f'class="badge state-{state}"' in row
        assert label in row
        assert job.get_absolute_url() in row


def test_the_dashboard_does_not_list_another_projects_jobs(
    client, project, people, jobs, make_user
):
    from apps.projects.services import project_create

    other = project_create(name="Elsewhere", created_by=make_user("stranger"))
    foreign = job_create(project=other, kind="test.steps", params={"steps": 1})

    response = _as(client, people["member"]).get(reverse("projects:dashboard", args=[project.pk]))

    assert foreign.pk not in {j.pk for j in response.context["jobs"]}
    assert f'data-job-id="{foreign.pk}"' not in response.content.decode()


def test_the_diagnostics_launch_form_is_offered_to_members(client, project, people):
    response = _as(client, people["member"]).get(reverse("projects:dashboard", args=[project.pk]))

    page = response.content.decode()
    assert 'id="launch-diagnostics"' in page
    assert f'action="{reverse("jobs:launch", args=[project.pk])}"' in page
    assert 'name="matrix_size"' in page


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_no_launch_form_is_offered_to_roles_that_cannot_launch(client, project, people, role):
    response = _as(client, people[role]).get(reverse("projects:dashboard", args=[project.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="launch-diagnostics"' not in page
    assert reverse("jobs:launch", args=[project.pk]) not in page
    assert response.context["launch_kinds"] == []


# --------------------------------------------------------------------------- launch


def test_a_valid_launch_creates_the_job_and_shows_its_page(client, project, people):
    response = _as(client, people["member"]).post(
        reverse("jobs:launch", args=[project.pk]),
        {"kind": "diagnostics", "steps": "3", "device": "cpu"},
    )

    job = Job.objects.get()
    assert response.status_code == 302
    assert response.url == job.get_absolute_url()
    assert (job.kind, job.queue, job.state, job.created_by) == (
        "diagnostics",
        "gpu",
        JobState.QUEUED,
        people["member"],
    )
    assert job.params["steps"] == 3 and job.params["device"] == "cpu"


@pytest.mark.parametrize("kind", ["diagnostics", "test.steps"])
def test_a_launch_with_invalid_params_shows_the_field_error_and_creates_no_job(
    client, project, people, kind
):
    response = _as(client, people["member"]).post(
        reverse("jobs:launch", args=[project.pk]), {"kind": kind, "steps": "0"}
    )

    assert response.status_code == 400
    assert not Job.objects.exists()
    page = _text(response)
    form = page.split(f'id="launch-{kind}"', 1)[1].split("</form>", 1)[0]
    assert f'id="launch-{kind}-steps-error"' in form
    assert "greater than or equal to 1" in form
    assert 'aria-invalid="true"' in form
    assert 'value="0"' in form  # what the user typed is kept


def test_a_launch_of_an_unknown_kind_is_refused_and_creates_no_job(client, project, people):
    response = _as(client, people["member"]).post(
        reverse("jobs:launch", args=[project.pk]), {"kind": "nope"}
    )

    assert response.status_code == 400
    assert not Job.objects.exists()
    assert "Unknown job kind 'nope'" in _text(response)


# --------------------------------------------------------------------------- job page


def test_the_job_page_shows_the_progress_bar(client, project, people, jobs):
    response = _as(client, people["viewer"]).get(jobs["running"].get_absolute_url())

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="job-progress"' in page
    assert f'data-ws-url="/ws/jobs/{jobs["running"].pk}/"' in page


def test_the_job_page_offers_cancel_to_members_but_not_to_viewers(client, project, people, jobs):
    url = jobs["running"].get_absolute_url()

    assert 'id="job-cancel-form"' in _as(client, people["member"]).get(url).content.decode()
    client.logout()
    assert 'id="job-cancel-form"' not in _as(client, people["viewer"]).get(url).content.decode()


def test_the_job_page_shows_the_error_of_a_failed_job(client, project, people, jobs):
    Job.objects.filter(pk=jobs["queued"].pk).update(state=JobState.FAILED, error="out of <memory>")

    response = _as(client, people["member"]).get(jobs["queued"].get_absolute_url())

    page = response.content.decode()
    assert "out of &lt;memory&gt;" in page  # escaped
    assert 'id="job-retry-form"' in page


# --------------------------------------------------------------------------- members page


def test_an_admin_adds_an_existing_user_on_the_members_page(client, project, people):
    url = reverse("projects:members", args=[project.pk])

    response = _as(client, people["admin"]).post(url, {"username": "outsider", "role": "reviewer"})

    assert response.status_code == 302
    assert response.url == url
    membership = Membership.objects.get(project=project, user=people["outsider"])
    assert membership.role == "reviewer"
    page = _text(client.get(url))
    assert "If a user named outsider exists, they now have the Reviewer role" in page
    assert f'data-membership-id="{membership.pk}"' in page


def test_adding_an_unknown_username_adds_nobody_and_answers_as_an_add_would(
    client, project, people
):
    before = set(Membership.objects.values_list("pk", flat=True))
    url = reverse("projects:members", args=[project.pk])

    response = _as(client, people["admin"]).post(url, {"username": "ghost", "role": "member"})

    # The same answer as for an existing user: the form does not reveal which usernames exist.
    assert response.status_code == 302
    assert response.url == url
    assert "If a user named ghost exists, they now have the Member role" in _text(client.get(url))
    assert set(Membership.objects.values_list("pk", flat=True)) == before


def test_adding_someone_who_is_already_a_member_shows_an_error(client, project, people):
    response = _as(client, people["admin"]).post(
        reverse("projects:members", args=[project.pk]), {"username": "viewer", "role": "admin"}
    )

    assert response.status_code == 400
    assert "viewer is already a member" in _text(response)
    assert Membership.objects.get(project=project, user=people["viewer"]).role == "viewer"


def test_the_members_page_offers_no_add_form_to_non_admins(client, project, people):
    response = _as(client, people["member"]).get(reverse("projects:members", args=[project.pk]))

    assert response.status_code == 200
    assert response.context["is_admin"] is False
    assert 'name="username"' not in response.content.decode()


def test_an_admin_cannot_demote_the_last_admin_from_the_members_page(client, project, people):
    admin_membership = Membership.objects.get(project=project, user=people["admin"])

    response = _as(client, people["admin"]).post(
        reverse("projects:member_update", args=[project.pk, admin_membership.pk]),
        {"action": "role", "role": "viewer"},
        follow=True,
    )

    assert response.status_code == 200
    assert "A project needs at least one admin" in _text(response)
    admin_membership.refresh_from_db()
    assert admin_membership.role == "admin"
