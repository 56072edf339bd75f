"""A reviewer clears a queue of three flagged outputs with the keyboard, in a real browser against
a real web process; the author, on their job's page, sees the decisions arrive without reloading."""

from __future__ import annotations

import pytest

from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Output
from apps.outputs.services import output_create
from apps.projects.models import Membership, Project
from tests.browser.test_live_job_page import browser  # noqa: F401  (the shared Chromium fixture)
from tests.factories import make_job

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.click("button:has-text('Log in')")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def test_a_reviewer_clears_three_flagged_outputs_with_the_keyboard(
    processes,
    browser,  # noqa: F811
    make_user,
    monkeypatch,
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    project = Project.objects.create(name="Review room")
    author, reviewer = make_user("author"), make_user("judge")
    Membership.objects.create(project=project, user=author, role="member")
    Membership.objects.create(project=project, user=reviewer, role="reviewer")
    ruleset_current(project.pk)
    ruleset_save(
        project=project,
        rows=[{"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"}],
        actor=reviewer,
    )
    job = make_job(project, author)
    outputs = [
        output_create(
            project_id=project.pk,
            job_id=job.pk,
            kind="text",
            sha256=f"{i:064x}",
            created_by_id=author.pk,
            text=f"answer {i} mentions zorblax",
        )
        for i in range(3)
    ]
    assert all(o.moderation == "flagged" for o in outputs)
    base = processes.web()
    # Two contexts (two windows, two sessions): neither page is a background tab.
    watcher = browser.new_context().new_page()
    judge = browser.new_context().new_page()
    for page in (watcher, judge):
        page.set_default_timeout(30000)
    try:
        login(watcher, base, "author")
        watcher.goto(f"{base}/projects/{project.pk}/jobs/{job.pk}/")
        watcher.evaluate("window.__noReload = true")
        login(judge, base, "judge")
        judge.goto(base + "/review/")
        judge.wait_for_selector("#rv-live[data-status=live]")
        assert judge.locator(".rv-item").count() == 3
        assert judge.locator("[data-review-count]").inner_text().strip() == "3"
        judge.keyboard.press("a")  # approve the first
        judge.wait_for_function("() => document.querySelectorAll('.rv-item').length === 2")
        judge.keyboard.press("j")
        judge.keyboard.press("a")  # approve the (now) second
        judge.wait_for_function("() => document.querySelectorAll('.rv-item').length === 1")
        judge.keyboard.press("r")
        judge.keyboard.type("spam about zorblax")
        judge.keyboard.press("Enter")  # reject the last with a reason
        judge.wait_for_selector("#rv-empty")
        watcher.wait_for_function(
            "() => document.body.innerText.includes('rejected by judge: spam about zorblax')"
        )
        assert watcher.evaluate("window.__noReload === true")
    except Exception as exc:
        shot = processes.log_dir / "review-failure.png"
        judge.screenshot(path=str(shot), full_page=True)
        watcher.screenshot(path=str(processes.log_dir / "review-author.png"), full_page=True)
        events = list(job.events.order_by("seq").values_list("seq", "kind", "data"))
        events += list(Output.objects.values_list("pk", "moderation", "job_id"))
        raise AssertionError(
            f"{exc}\nscreenshot: {shot}\nevents: {events}\nweb log:\n{processes.log('web')[-3000:]}"
        ) from exc
    states = sorted(Output.objects.filter(project=project).values_list("moderation", flat=True))
    assert states == ["approved", "approved", "rejected"]
