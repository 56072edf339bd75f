"""A real browser (Debian's Chromium via Playwright) against real web and worker processes."""

from __future__ import annotations

import os
import shutil

import pytest
from django.core.management import call_command

from apps.jobs.models import Job
from apps.projects.models import Project

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (make test installs it)")
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_the_demo_member_starts_a_job_and_watches_it_reach_100_percent_live(
    processes, browser, monkeypatch
):
    monkeypatch.setenv("ATELIER_DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    base = processes.web()
    processes.worker()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60000)
    try:
        drive_the_job_page(page, base)
    except Exception as exc:
        shot = processes.log_dir / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(
            f"{exc}\nscreenshot: {shot}\nworker log:\n{processes.log('worker')[-3000:]}"
            f"\nweb log:\n{processes.log('web')[-2000:]}"
        ) from exc
    job = Job.objects.get(project=Project.objects.get(name="Demo project"))
    assert job.state == "succeeded" and job.created_by.username == "member"


def drive_the_job_page(page, base: str) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", "member")
    page.fill("input[name=password]", "demo-pass-123")
    page.click("button:has-text('Log in')")
    page.click("text=Demo project")
    card = page.locator("form:has(button[data-kind='test.steps'])")
    card.locator("input[name=steps]").fill("15")
    card.locator("input[name=step_seconds]").fill("0.1")
    card.locator("button[data-kind='test.steps']").click()
    page.wait_for_url("**/jobs/*/")
    # A marker that a reload would wipe: the bar must reach 100% on this very page.
    page.evaluate("window.__noReload = true")
    bar = page.locator("#job-progress")
    page.wait_for_function(
        # A function, not an expression: Playwright evals expressions in the page, which the
        # Content-Security-Policy (no 'unsafe-eval') refuses.
        "() => document.querySelector('#job-progress').getAttribute('aria-valuenow') === '100'",
        timeout=60000,
    )
    assert "100%" in bar.inner_text()
    assert page.evaluate("window.__noReload === true")
    # The last progress event comes a moment before the final state event: wait for the badge.
    page.wait_for_function(
        "() => document.querySelector('#job-state').textContent.toLowerCase().includes('succeeded')"
    )
    assert page.locator("#job-charts canvas").count() >= 1
