"""Budgets and quotas: caps, compute budgets and GPU hours refused at submit with the limit and
the usage; the concurrency ceiling; who may create projects; usage accounting and its page."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.services import JobQuotaExceeded, job_claim
from apps.jobs.states import JobState
from apps.projects.models import Project
from apps.projects.services import project_update_settings
from apps.quotas.models import PlatformPolicy, ProjectQuota
from apps.quotas.services import forget_policy
from tests import factories

FAST = {"steps": 3, "step_seconds": 0}


@pytest.fixture
def rules(db):
    forget_policy()
    policy = PlatformPolicy.current()
    yield policy
    forget_policy()


def set_rules(policy: PlatformPolicy, **values) -> None:
    for name, value in values.items():
        setattr(policy, name, value)
    policy.save()  # post_save drops the cached policy


def submit(project, user, kind="test.steps", **params):
    return factories.make_job(project, user, kind, **params)


# --------------------------------------------------------------------------- caps


def test_a_user_over_the_queued_and_running_cap_is_refused_with_limit_and_usage(
    rules, project, people
):
    set_rules(rules, user_active_jobs=3)
    for _ in range(3):
        submit(project, people["member"])
    with pytest.raises(JobQuotaExceeded, match=r"You have 3 jobs queued or running \(limit 3"):
        submit(project, people["member"])
    assert Job.objects.count() == 3
    submit(project, people["admin"])  # another user is not held by this user's cap


def test_finished_jobs_free_the_users_cap(rules, project, people):
    set_rules(rules, user_active_jobs=1)
    job = submit(project, people["member"])
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    submit(project, people["member"])


def test_a_project_over_its_cap_is_refused(rules, project, people):
    set_rules(rules, project_active_jobs=2)
    submit(project, people["member"])
    submit(project, people["admin"])
    with pytest.raises(JobQuotaExceeded, match=r"This project has 2 jobs .*limit 2"):
        submit(project, people["member"])


# --------------------------------------------------------------------------- budgets


@pytest.fixture
def image_model(db):
    from apps.models.services import ensure_builtin_rows

    ensure_builtin_rows()
    from apps.models.models import BaseModel

    return BaseModel.objects.filter(kind="image").first()


def test_an_image_job_past_the_final_size_is_refused(rules, project, people, image_model):
    with pytest.raises(JobQuotaExceeded, match=r"8192 px on its longest side \(limit 2048 px\)"):
        submit(
            project,
            people["member"],
            kind="image.generate",
            model_id=image_model.pk,
            prompt="a cat",
            width=2048,
            height=2048,
            hires=True,
            hires_scale=4,
        )
    assert not Job.objects.exists()


def test_an_image_job_of_too_many_pixel_steps_is_refused(rules, project, people, image_model):
    with pytest.raises(JobQuotaExceeded, match=r"128 images of 1024x1024 .* limit per job"):
        submit(
            project,
            people["member"],
            kind="image.generate",
            model_id=image_model.pk,
            prompt="a cat",
            width=1024,
            height=1024,
            batch_count=16,
            batch_size=8,
        )
    job = submit(
        project,
        people["member"],
        kind="image.generate",
        model_id=image_model.pk,
        prompt="a cat",
        width=512,
        height=512,
    )
    assert job.state == JobState.QUEUED  # the form's defaults fit


def test_diagnostics_on_huge_matrices_are_refused(rules, project, people):
    with pytest.raises(JobQuotaExceeded, match=r"At most 4096 .* asked 16384"):
        submit(project, people["member"], kind="diagnostics", matrix_size=16384)


def test_a_fine_tune_past_the_step_token_budget_is_refused(rules, project, people):
    from apps.finetunes.jobkinds import LoraParams, budget

    params = LoraParams(
        base_model_id=1, dataset_version_id=1, max_steps=10_000_000, max_seq_length=4096
    )
    errors = budget(project, params, rules)
    assert "limit per fine-tune" in errors["max_steps"]
    fine = LoraParams(base_model_id=1, dataset_version_id=1, max_steps=1000, max_seq_length=512)
    assert budget(project, fine, rules) == {}


def test_admins_change_a_budget_and_it_applies_at_once_in_this_process(rules, project, people):
    set_rules(rules, diagnostics_max_matrix=64)
    with pytest.raises(JobQuotaExceeded, match="At most 64"):
        submit(project, people["member"], kind="diagnostics", matrix_size=128)


# --------------------------------------------------------------------------- GPU hours


def test_a_project_past_its_monthly_gpu_hours_is_refused_for_gpu_jobs_only(rules, project, people):
    ProjectQuota.objects.create(project=project, monthly_gpu_hours=1.0)
    used = submit(project, people["member"], kind="test.gpu_steps", **FAST)
    Job.objects.filter(pk=used.pk).update(state=JobState.SUCCEEDED, worker_seconds=3600 * 1.25)
    with pytest.raises(JobQuotaExceeded, match=r"used 1.25 of its 1 GPU hours this month"):
        submit(project, people["member"], kind="test.gpu_steps", **FAST)
    submit(project, people["member"])  # cpu work is not GPU time


def test_last_months_gpu_time_does_not_count(rules, project, people):
    set_rules(rules, default_monthly_gpu_hours=1.0)
    old = submit(project, people["member"], kind="test.gpu_steps", **FAST)
    Job.objects.filter(pk=old.pk).update(
        state=JobState.SUCCEEDED,
        worker_seconds=7200,
        created_at=timezone.now().replace(day=1) - timedelta(days=3),
    )
    submit(project, people["member"], kind="test.gpu_steps", **FAST)


# --------------------------------------------------------------------------- concurrency ceiling


def test_project_admins_may_lower_the_concurrency_but_not_raise_it_past_the_ceiling(
    rules, project, people
):
    with pytest.raises(ValidationError, match=r"At most 4 .* asked 1000000"):
        project_update_settings(
            project=project, actor=people["admin"], max_concurrent_jobs=1_000_000
        )
    project.refresh_from_db()
    assert project.max_concurrent_jobs is None
    project_update_settings(project=project, actor=people["admin"], max_concurrent_jobs=1)
    project.refresh_from_db()
    assert project.concurrency_limit == 1


def test_a_limit_set_before_the_ceiling_was_lowered_is_held_to_the_ceiling(rules, project):
    Project.objects.filter(pk=project.pk).update(max_concurrent_jobs=1000)
    project.refresh_from_db()
    set_rules(rules, project_concurrency_ceiling=3)
    assert project.concurrency_limit == 3


# --------------------------------------------------------------------------- who creates projects


def test_only_staff_create_projects_when_the_platform_says_so(rules, make_user):
    set_rules(rules, who_may_create_projects="staff")
    user, staff = make_user("plain"), make_user("boss", is_staff=True)
    client = Client()
    client.force_login(user)
    page = client.get(reverse("projects:list"))
    assert "Only platform staff may create projects" in page.content.decode()
    response = client.post(reverse("projects:list"), {"name": "Mine"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="Mine").exists()
    client.force_login(staff)
    response = client.post(reverse("projects:list"), {"name": "Theirs"})
    assert response.status_code == 302 and Project.objects.filter(name="Theirs").exists()


def test_the_api_refuses_over_quota_with_the_message(rules, project, people):
    set_rules(rules, diagnostics_max_matrix=64)
    client = Client()
    client.force_login(people["member"])
    response = client.post(
        reverse("api:jobs", args=[project.pk]),
        data={"kind": "diagnostics", "params": {"matrix_size": 128}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "At most 64" in response.content.decode()


# --------------------------------------------------------------------------- worker deaths


def test_a_job_that_killed_two_workers_fails_instead_of_being_retried(rules, project, people):
    job = submit(project, people["member"])
    job_claim(job_id=job.pk, worker_id="gpu@h:1")
    assert services.job_release_orphans(lease_owner="gpu@h:1") == 1
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.worker_losses == 1

    job_claim(job_id=job.pk, worker_id="gpu@h:2")
    assert services.job_release_orphans(lease_owner="gpu@h:2") == 1
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.worker_losses == 2
    assert "the worker died twice running this job" in job.error.lower()


def test_a_warm_shutdown_is_not_a_worker_death(rules, project, people):
    job = submit(project, people["member"])
    for n in range(3):
        job_claim(job_id=job.pk, worker_id=f"gpu@h:{n}")
        assert services.job_requeue_for_shutdown(job_id=job.pk, attempt=n + 1, worker_id="w")
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.worker_losses == 0


# --------------------------------------------------------------------------- usage accounting


@pytest.mark.django_db(transaction=True)
def test_every_job_records_its_worker_seconds_and_device_and_the_page_adds_them_up(
    project, people, make_user
):
    from workers.tasks.runtime import execute_job

    forget_policy()
    jobs = [
        submit(project, people["member"], steps=3, step_seconds=0.05),
        submit(project, people["admin"], kind="test.gpu_steps", steps=2, step_seconds=0.05),
    ]
    for job in jobs:
        assert execute_job(job.pk, worker_id="test") == "succeeded"
    recorded = {j.pk: j for j in Job.objects.all()}
    for job in jobs:
        row = recorded[job.pk]
        assert row.worker_seconds >= 0.1  # at least its sleeps
        assert row.device  # "cpu" here, "cuda:0 <name>" on a GPU worker
        assert row.attempt_started_at is None

    staff = make_user("ops", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("quotas:usage"), {"group": "user"})
    assert page.status_code == 200
    assert "member" in page.content.decode() and "admin" in page.content.decode()
    export = client.get(reverse("quotas:usage_csv"), {"group": "kind"})
    assert export.status_code == 200 and "attachment" in export["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert rows[0] == ["Job kind", "jobs", "worker_seconds", "gpu_seconds"]
    body, total = rows[1:-1], rows[-1]
    assert total[0] == "Total" and int(total[1]) == 2
    expected = sum(j.worker_seconds for j in recorded.values())
    assert float(total[2]) == pytest.approx(expected, abs=0.002)  # 3 decimals per cell
    assert sum(float(r[2]) for r in body) == pytest.approx(expected, abs=0.002)
    gpu = recorded[jobs[1].pk].worker_seconds
    assert float(total[3]) == pytest.approx(gpu, abs=0.002)
