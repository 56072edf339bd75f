"""What only job.js shows on the job page, in a real browser against a real web process: a
succeeded job at 100 % whatever its last progress event said, the metrics grid without an empty
first cell, and artifact links that appear when a job ends while the page is open (issue 19,
item 2). The jobs' events are written here through the engine's services, as a worker would."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.jobs.models import EventKind, Job
from apps.jobs.services import job_append_events, job_claim, job_finish
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from tests import factories
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def open_job(browser, base: str, job: Job):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30000)
    page.goto(base + "/")
    page.fill("input[name=username]", "member")
    page.fill("input[name=password]", "pw-member")
    page.click("button:has-text('Log in')")
    page.goto(f"{base}/projects/{job.project_id}/jobs/{job.pk}/")
    return page


def shot(page, name: str) -> None:
    folder = Path("/tmp/shots/B")
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_a_succeeded_job_whose_last_event_said_step_0_of_1_shows_100_percent(
    processes,
    browser,  # noqa: F811
    project,
    people,
):
    base = processes.web()
    job = factories.make_job(project, people["member"])
    factories.job_succeed(
        job,
        events=[(EventKind.PROGRESS, {"step": 0, "total": 1, "fraction": 0.0})],
        result={},
    )

    page = open_job(browser, base, job)
    page.wait_for_function("() => document.querySelector('#job-step').textContent !== ''")
    page.wait_for_function("() => document.querySelector('#job-live').dataset.status === 'closed'")
    shot(page, "succeeded-upscale")

    assert page.get_attribute("#job-progress", "aria-valuenow") == "100"
    assert page.inner_text("#job-progress .progress-label") == "100%"
    assert page.inner_text("#job-step") == "step 1 of 1"


def test_a_run_with_only_curves_starts_its_metrics_grid_with_a_chart(
    processes,
    browser,  # noqa: F811
    project,
    people,
):
    base = processes.web()
    job = factories.make_job(project, people["member"])
    points = [
        (EventKind.METRICS, {"step": s, "total": 3, "values": {"loss": 3.0 - s}}) for s in (1, 2, 3)
    ]
    factories.job_succeed(job, events=points, result={})

    page = open_job(browser, base, job)
    page.wait_for_selector("#job-charts figure.chart canvas")
    shot(page, "metrics-curves-only")

    first = page.evaluate("() => document.querySelector('#job-charts').firstElementChild.tagName")
    assert first == "FIGURE"
    assert page.locator("#job-charts .metric-summary").count() == 0


def test_a_one_off_value_is_listed_before_the_charts(
    processes,
    browser,  # noqa: F811
    project,
    people,
):
    base = processes.web()
    job = factories.make_job(project, people["member"])
    points = [
        (EventKind.METRICS, {"step": s, "total": 3, "values": {"loss": 3.0 - s}}) for s in (1, 2, 3)
    ] + [(EventKind.METRICS, {"step": 3, "total": 3, "values": {"eval_loss": 0.5}})]
    factories.job_succeed(job, events=points, result={})

    page = open_job(browser, base, job)
    page.wait_for_selector("#job-charts figure.chart canvas")

    assert page.inner_text("#job-charts > dl.metric-summary:first-child dt") == "eval_loss"
    assert page.inner_text("#job-charts > dl.metric-summary dd") == "0.5"


def test_artifact_links_named_by_role_appear_when_the_job_ends_while_the_page_is_open(
    processes,
    browser,  # noqa: F811
    project,
    people,
):
    ensure_builtin_rows()
    folder = Path(settings.MEDIA_ROOT) / "adapters" / str(project.pk) / "63"
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "adapter.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    adapter = Adapter.objects.create(
        project=project,
        name="qa-lora",
        base_model=BaseModel.objects.get(reference="tiny-llama"),
        storage_path=f"adapters/{project.pk}/63/adapter",
        created_by=people["member"],
    )
    base = processes.web()
    job = factories.make_job(project, people["member"])
    claimed = job_claim(job_id=job.pk, worker_id="tests")
    assert claimed is not None

    page = open_job(browser, base, job)
    page.wait_for_function("() => document.querySelector('#job-live').dataset.status === 'live'")
    page.evaluate("window.__noReload = true")
    job_append_events(
        job_id=job.pk,
        events=[
            (EventKind.PROGRESS, {"step": 3, "total": 3, "fraction": 1.0}),
            (EventKind.ARTIFACT, {"name": "adapter.zip", "url": None, "size": 22}),
        ],
        attempt=claimed.attempt,
    )
    page.wait_for_selector("#job-artifacts li[data-name='adapter.zip']")
    job_finish(
        job_id=job.pk,
        attempt=claimed.attempt,
        target=JobState.SUCCEEDED,
        result={"adapter_id": adapter.pk},
    )
    link = page.locator("#job-artifacts a:has-text('Adapter (zip)')")
    link.wait_for()
    shot(page, "artifacts-after-live-finish")

    assert page.evaluate("window.__noReload === true")
    assert link.get_attribute("title") == "adapter.zip"
    href = link.get_attribute("href")
    assert href == f"/projects/{project.pk}/adapters/{adapter.pk}/download/adapter.zip"
    response = page.request.get(base + href)
    assert response.status == 200 and response.body().startswith(b"PK")
