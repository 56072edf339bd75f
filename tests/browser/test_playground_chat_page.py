"""The playground in a real browser against real web and worker processes: what an adapter was
trained on, system prompt presets, a stop that asks first and says so at once, a two-turn chat
that survives a reload, recent outputs that appear without one, and the conversation exported
as JSONL that the dataset import reads as a chat dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.jobs.models import Job
from apps.models.models import Adapter, BaseModel
from apps.outputs.models import Output
from apps.projects.models import Project
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QA = "### 问题:{question}\n### 回答:{answer}"
SHOTS = Path("/tmp/shots/E")


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("ATELIER_DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    project = Project.objects.get(name="Demo project")
    tiny = BaseModel.objects.get(reference="tiny-llama")
    # Only its row: the page reads the template; nothing generates with it here.
    Adapter.objects.create(
        project=project, name="qa-lora", base_model=tiny, storage_path="none", template=QA
    )
    return project


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_member_chats_in_the_playground_and_exports_the_conversation(
    demo,
    processes,
    browser,  # noqa: F811
    tmp_path,
):
    base = processes.web()
    page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page.set_default_timeout(60000)
    try:
        login(page, base, demo)
        adapter_format(page)
        presets(page)
        stop_asks_and_says_so_at_once(page, demo)
        processes.worker()
        chat(page, demo)
        export_and_import(page, tmp_path)
        new_chat(page)
    except Exception as exc:
        page.screenshot(path=str(processes.log_dir / "failure.png"), full_page=True)
        raise AssertionError(
            f"{exc}\nscreenshot: {processes.log_dir / 'failure.png'}\n"
            f"worker log:\n{processes.log('worker')[-3000:]}\nweb log:\n{processes.log('web')[-2000:]}"
        ) from exc


def login(page, base: str, project) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", "member")
    page.fill("input[name=password]", "demo-pass-123")
    page.click("button:has-text('Log in')")
    page.goto(f"{base}/projects/{project.pk}/playground/")
    tiny = BaseModel.objects.get(reference="tiny-llama")
    page.select_option("#pg-base_model_id", value=str(tiny.pk))


def adapter_format(page) -> None:
    """Choosing an adapter trained on a dataset template turns the chat template off and says
    why; turning it back on warns."""
    assert page.is_checked("#pg-use_chat_template")
    page.select_option("#pg-adapter-1", label="qa-lora")
    assert not page.is_checked("#pg-use_chat_template")
    assert "### 问题:{question}" in page.inner_text("#pg-formats")
    assert page.is_hidden("#pg-format-warning")
    page.check("#pg-use_chat_template")
    assert "trained without the chat template" in page.inner_text("#pg-format-warning")
    shot(page, "adapter-format-warning")
    page.select_option("#pg-adapter-1", value="")
    assert page.is_hidden("#pg-format-warning") and page.is_hidden("#pg-formats")


def presets(page) -> None:
    page.select_option("#pg-preset", label="Concise")
    assert page.input_value("#pg-system").startswith("Answer in at most two sentences")
    page.fill("#pg-system", "Answer like a pirate.")
    page.once("dialog", lambda d: d.accept("pirate"))
    page.click("#pg-preset-save")
    assert page.locator("#pg-presets-saved option", has_text="pirate").count() == 1
    page.select_option("#pg-preset", label="Concise")
    page.select_option("#pg-preset", label="pirate")
    assert page.input_value("#pg-system") == "Answer like a pirate."


def stop_asks_and_says_so_at_once(page, project) -> None:
    """No worker yet: the run waits queued. Stop asks first; once confirmed the badge says
    Cancelling before the server has answered, then Cancelled."""
    page.fill("#pg-max_new_tokens", "6")
    page.fill("#pg-prompt", "Hello")
    page.click("#pg-run")
    page.wait_for_selector("#pg-stop:visible")
    job = Job.objects.get(project=project, kind="textgen")

    page.once("dialog", lambda d: d.dismiss())
    page.click("#pg-stop")
    job.refresh_from_db()
    assert job.state == "queued" and "Cancelling" not in page.inner_text("#pg-state")

    held = []

    def hold(route) -> None:
        held.append(route)

    page.route("**/cancel/", hold)
    page.once("dialog", lambda d: d.accept())
    page.click("#pg-stop")
    page.wait_for_function("() => document.querySelector('#pg-state').textContent === 'Cancelling'")
    assert len(held) == 1  # the server has not answered yet
    job.refresh_from_db()
    assert job.state == "queued"
    held[0].continue_()
    page.wait_for_function("() => document.querySelector('#pg-state').textContent === 'Cancelled'")
    page.unroute("**/cancel/", hold)
    job.refresh_from_db()
    assert job.state == "cancelled"
    # Nothing joined the conversation; the message is still there to send again.
    assert page.is_hidden("#pg-chat-box") and page.input_value("#pg-prompt") == "Hello"


def chat(page, project) -> None:
    page.evaluate("window.__noReload = true")
    page.click("#pg-run")
    page.wait_for_function("() => document.querySelectorAll('#pg-turns li').length === 2")
    assert page.input_value("#pg-prompt") == ""
    page.fill("#pg-prompt", "And then?")
    page.press("#pg-prompt", "Control+Enter")
    page.wait_for_function("() => document.querySelectorAll('#pg-turns li').length === 4")

    first, second = Job.objects.filter(project=project, state="succeeded").order_by("pk")
    answer = Output.objects.get(job=first).text
    assert second.params["messages"] == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And then?"},
    ]
    assert page.locator("#pg-turns .pg-turn-text").nth(1).inner_text() == answer
    # The recent outputs table took both runs in without a reload.
    page.wait_for_selector(f'#pg-recent tr[data-job-id="{second.pk}"]')
    assert page.evaluate("window.__noReload === true")
    shot(page, "chat-two-turns")

    page.reload()
    assert page.locator("#pg-turns li").count() == 4
    assert page.input_value("#pg-system") == "Answer like a pirate."
    assert page.locator("#pg-presets-saved option", has_text="pirate").count() == 1


def export_and_import(page, tmp_path) -> None:
    from workers.data.importer import import_file

    with page.expect_download() as info:
        page.click("#pg-export")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.name.endswith(".jsonl")

    result = import_file(path, path.name, out_dir=tmp_path / "imported")

    assert (result.format, result.schema, result.rows) == ("openai_chat", "chat", 1)
    record = json.loads(Path(result.canonical_path).read_text().splitlines()[0])
    # The tiny random model may stop at once: an exchange with an empty answer is left out of
    # the export (the import refuses empty messages), the others keep their order.
    answers = [o.text for o in Output.objects.filter(job__kind="textgen").order_by("job_id")]
    expected = [("system", "Answer like a pirate.")]
    for question, answer in zip(["Hello", "And then?"], answers[-2:], strict=True):
        if answer.strip():
            # The import keeps line ends as "\n" (a random model may emit a lone "\r").
            answer = answer.replace("\r\n", "\n").replace("\r", "\n")
            expected += [("user", question), ("assistant", answer)]
    assert [(m["role"], m["content"]) for m in record["messages"]] == expected


def new_chat(page) -> None:
    page.once("dialog", lambda d: d.accept())
    page.click("#pg-new-chat")
    assert page.is_hidden("#pg-chat-box")
    page.reload()
    assert page.locator("#pg-turns li").count() == 0 and page.is_hidden("#pg-chat-box")
