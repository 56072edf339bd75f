"""A reviewer clears a queue of three flagged outputs with the keyboard, in a real browser against
a real web process; the author, on their job's page, sees the decisions arrive without reloading.
A dataset version that may not be approved yet (no PII scan) cannot be approved from the inbox,
which says why. A page the reviewer's role does not open is the site's own 403, in English and in
Chinese, logged as one line."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.datasets.models import Approval, DatasetVersion
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Output
from apps.outputs.services import output_create
from apps.projects.models import Membership, Project
from tests.browser.test_live_job_page import browser  # noqa: F401  (the shared Chromium fixture)
from tests.factories import make_job
from tests.services.test_datasets import QA_ROWS, do_import, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def login(page, base: str, username: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.press("input[name=password]", "Enter")  # the button's words depend on the language
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


PII_FIRST = "Run a PII scan first"
NOT_ALLOWED = {"en": "Not allowed", "zh": "无权访问"}
ROLE_REASON_ZH = "你的角色（审核员）不能在此启动任务"


def test_a_reviewer_clears_the_queue_with_the_keyboard_and_meets_the_styled_403(
    processes,
    browser,  # noqa: F811
    make_user,
    monkeypatch,
    tmp_path,
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    project = Project.objects.create(name="Review room")
    author, reviewer = make_user("author"), make_user("judge")
    Membership.objects.create(project=project, user=author, role="member")
    Membership.objects.create(project=project, user=reviewer, role="reviewer")
    # Waiting longest, so first in the queue: imported by the author, not scanned for PII yet.
    version, _ = do_import(project, author, write_csv(tmp_path / "qa.csv", QA_ROWS))
    assert version.approval == Approval.PENDING and version.pii_report is None
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
        assert judge.locator(".rv-item").count() == 4
        assert judge.locator("[data-review-count]").inner_text().strip() == "4"
        dataset = judge.locator(f".rv-item[data-key='dataset:{version.pk}']")
        assert dataset.get_attribute("aria-current") == "true"
        assert PII_FIRST in dataset.inner_text()  # the reason, before anyone asks the server
        judge.keyboard.press("a")  # approve the dataset version: refused here, with the reason
        judge.wait_for_function(
            f"() => document.getElementById('rv-status').textContent.includes({PII_FIRST!r})"
        )
        assert judge.locator("#rv-status").inner_text().startswith("Clinic QA v1: ")
        judge.keyboard.press("x")  # selected, it disables "Approve selected" and says why
        assert judge.locator("#rv-approve").is_disabled()
        assert judge.locator("#rv-reject").is_enabled()
        assert PII_FIRST in judge.locator("#rv-refusal").inner_text()
        judge.keyboard.press("x")
        assert (
            judge.locator("#rv-approve").is_enabled() and judge.locator("#rv-refusal").is_hidden()
        )
        assert judge.locator(".rv-item").count() == 4
        assert DatasetVersion.objects.get(pk=version.pk).approval == Approval.PENDING
        judge.keyboard.press("j")
        judge.keyboard.press("a")  # approve the first output
        judge.wait_for_function("() => document.querySelectorAll('.rv-item').length === 3")
        judge.keyboard.press("a")  # approve the (now) second
        judge.wait_for_function("() => document.querySelectorAll('.rv-item').length === 2")
        judge.keyboard.press("r")
        judge.keyboard.type("spam about zorblax")
        judge.keyboard.press("Enter")  # reject the last output with a reason
        judge.wait_for_function("() => document.querySelectorAll('.rv-item').length === 1")
        dataset.locator("input[name=item]").check()  # rejecting it is allowed
        judge.fill("#rv-reason", "unscanned patient phone numbers")
        judge.click("#rv-reject")
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
    version.refresh_from_db()
    assert version.approval == Approval.REJECTED and version.decided_by == reviewer

    assert_the_styled_403(browser, processes, base, judge, project)


def assert_the_styled_403(browser, processes, base: str, judge, project) -> None:  # noqa: F811
    """A member-only page (launching a fine-tune) opened by the reviewer: the site's 403 in its
    frame, in English and in Chinese, and one log line for each."""
    path = reverse("finetunes:new", args=[project.pk])
    zh = browser.new_context(locale="zh-CN").new_page()
    zh.set_default_timeout(30000)
    login(zh, base, "judge")
    for language, page in (("en", judge), ("zh", zh)):
        response = page.goto(base + path)
        assert response.status == 403, language
        assert page.locator("header.topbar nav").count() == 1, language  # the site's navigation
        assert page.locator("h1").inner_text() == NOT_ALLOWED[language]
        assert page.locator(f"#forbidden a[href='{reverse('projects:list')}']").count() == 1
        assert "403 Forbidden" not in page.content()
    assert "cannot launch jobs" in judge.locator("#forbidden-reason").inner_text()
    assert zh.evaluate("() => document.documentElement.lang") == "zh-hans"
    assert zh.locator("#forbidden-reason").inner_text() == ROLE_REASON_ZH
    # The web log has one line per refusal, no traceback (webapp/logfilters.py).
    log = processes.log("web")
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    forbidden = [r for r in records if f"Forbidden (Permission denied): {path}" in r]
    assert len(forbidden) == 2, forbidden
    assert all("\n" not in r.strip() for r in forbidden), forbidden
    assert "Traceback" not in log, log[-3000:]
