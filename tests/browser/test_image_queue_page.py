"""The image page's "Your queue" in a real browser against a real web process: the member sees
their waiting jobs in order, "Run next" and "down" reorder them without a reload, a job that
starts (claimed as a worker claims it) leaves the list live, over the project's socket, and
Cancel takes one out."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.jobs.models import Job
from apps.jobs.services import job_claim
from apps.models.models import BaseModel
from apps.projects.selectors import project_access
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ORDER = (
    "() => [...document.querySelectorAll('#im-queue li[data-job-id]')].map(li => +li.dataset.jobId)"
)


def _image_job(project, user, prompt: str, model: BaseModel) -> Job:
    """A queued image job as job_create leaves it, without a message (no worker runs here)."""
    return Job.objects.create(
        project=project,
        created_by=user,
        kind="image.generate",
        queue="gpu",
        params={"model_id": model.pk, "prompt": prompt, "steps": 4, "width": 32, "height": 32},
        last_seq=1,
    )


def _line(project, user) -> list[int]:
    from apps.jobs.selectors import member_queue

    access = project_access(user=user, project_id=project.pk)
    return [j.pk for j in member_queue(access=access, user=user)]


def test_a_member_sees_their_queue_and_runs_a_job_next(
    project,
    people,
    processes,
    browser,  # noqa: F811
):
    model = BaseModel.objects.create(name="Queue model", kind="image", source="builtin")
    _image_job(project, people["admin"], "the admin's lighthouse", model)
    a, b, c = [
        _image_job(project, people["member"], prompt, model)
        for prompt in ("a red fox in snow", "a blue whale", "a green parrot, (detailed:1.2)")
    ]
    base = processes.web()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(30000)
    try:
        page.goto(base + reverse("accounts:login"))
        page.fill("input[name=username]", "member")
        page.fill("input[name=password]", "pw-member")
        page.click("button:has-text('Log in')")
        page.goto(base + reverse("images:index", args=[project.pk]))
        queue = page.locator("#im-queue")
        assert page.evaluate(ORDER) == [a.pk, b.pk, c.pk]
        assert "a green parrot, (detailed:1.2)" in queue.inner_text()
        assert "1 job of others ahead" in queue.inner_text()
        assert queue.locator("li").first.locator("button.im-queue-front").is_disabled()
        page.evaluate("window.__noReload = true")

        queue.locator(f"li[data-job-id='{c.pk}'] button.im-queue-front").click()
        page.wait_for_function(f"() => ({ORDER})()[0] === {c.pk}")
        assert page.evaluate(ORDER) == [c.pk, a.pk, b.pk]
        page.locator(f"#im-queue li[data-job-id='{a.pk}'] button.im-queue-down").click()
        page.wait_for_function(f"() => ({ORDER})()[1] === {b.pk}")
        assert page.evaluate(ORDER) == [c.pk, b.pk, a.pk]
        assert _line(project, people["member"]) == [c.pk, b.pk, a.pk]
        page.screenshot(path=str(processes.log_dir / "queue.png"), full_page=True)

        # The worker takes the moved job: it leaves the list on this very page.
        assert job_claim(job_id=c.pk, worker_id="test-worker") is not None
        page.wait_for_function(f"() => ({ORDER})().length === 2")
        assert page.evaluate(ORDER) == [b.pk, a.pk]
        # Cancel (the job page's own endpoint) takes a job out of the line, on this page too.
        page.locator(f"#im-queue li[data-job-id='{b.pk}'] .im-queue-cancel button").click()
        page.wait_for_function(f"() => ({ORDER})().length === 1")
        assert page.evaluate(ORDER) == [a.pk]
        assert page.evaluate("window.__noReload === true")
    except Exception as exc:
        shot = processes.log_dir / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(
            f"{exc}\nscreenshot: {shot}\nweb log:\n{processes.log('web')[-3000:]}"
        ) from exc
