"""The live pages in Chinese stay Chinese: whatever a websocket brings (states, progress, ETA, log
notes, results) is worded from the page's catalogue, not from English written into the scripts.

A real browser (language zh-Hans) against real web and worker processes walks the pages that
update live, lets their events arrive, and reads every visible piece of text; a run of three or
more ASCII letters that is not a product name, a unit, code or the users' own data is English the
user was not meant to see."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from apps.datasets.models import Dataset
from apps.jobs import registry
from apps.models.models import BaseModel, ImageAsset
from apps.moderation.services import ruleset_current, ruleset_save
from apps.outputs.models import Output
from apps.outputs.services import output_create
from apps.projects.models import Project
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture
from tests.factories import make_job

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "demo-pass-123"
# Words that stay as they are in a Chinese UI: product and format names, units, abbreviations
# and the sampler and scheduler names that A1111 users type.
ALLOWED = {
    word.lower()
    for word in """
    Atelier LoRA LoRAs DPO SFT GRPO PEFT GGUF safetensors CSV JSON JSONL TSV PNG JPEG WebP ZIP
    API URL SHA GPU CPU CUDA RAM VRAM Ethereum Merkle ControlNet ESRGAN Hub Hugging Face OpenAI
    ShareGPT Alpaca Euler DPM SDE Karras DDIM PNDM UniPC LMS Heun CFG VAE CLIP UNet SDXL int fp bf
    KiB MiB GiB TiB token tokens Enter Esc Ctrl
    AdamW DDP QLoRA bitsandbytes alpha dropout epoch Stable Diffusion WebUI DDPM LCM PLMS Exponential
    auto none all answer linear cosine constant polynomial
    """.split()
}
# (The last line: config values the forms offer and their help texts name as written.)
WORD = re.compile(r"[A-Za-z]{3,}")
# Identifiers with a digit in them are names, not words: int8-dynamic, bf16, all-MiniLM-L6-v2.
# So are snake_case names and {placeholders}: lora_only, cosine_with_restarts, {question}.
IDENTIFIER = re.compile(r"[\w.-]*[\d_][\w.-]*|\{[^}]*\}")

COLLECT = """() => {
  // What a reader sees: text nodes of rendered elements, placeholders, options and button values.
  // Code, user input and anything marked translate="no" (names, file names) is data, not UI; so
  // is text in another language on purpose (the language switch's "English"), and the harness's
  // own test-only job kinds (tests/jobkinds.py), which are not product.
  // Worker log lines are the workers' own words, like the job page's log (a <pre>).
  const skip = "script, style, code, pre, kbd, samp, textarea, svg, noscript, [translate=no],"
    + " [lang]:not([lang^=zh]), .launch-card:has([data-kind^='test.']), .pg-log, .pg-turn-text";
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || !el || el.closest(skip)) continue;
    if (el.closest("option") ? !el.closest("select").checkVisibility() : !el.checkVisibility()) continue;
    out.push(text);
  }
  for (const el of document.querySelectorAll("[placeholder], input[type=submit], input[type=button]")) {
    if (el.checkVisibility() && !el.closest(skip)) out.push(el.placeholder || el.value || "");
  }
  return out;
}"""


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("ATELIER_DEMO_PASSWORD", PASSWORD)
    call_command("seed_demo")
    return Project.objects.get(name="Demo project")


def user_data() -> list[str]:
    """Names users and admins chose (models, datasets, projects, people), longest first so a
    name inside another is removed with it."""
    names = [
        *(k.label for k in registry.all_kinds() if k.name.startswith("test.")),
        *BaseModel.objects.values_list("name", flat=True),
        *ImageAsset.objects.values_list("name", flat=True),
        *Dataset.objects.values_list("name", flat=True),
        *Project.objects.values_list("name", flat=True),
        *Project.objects.values_list("description", flat=True),
        *get_user_model().objects.values_list("username", flat=True),
    ]
    return sorted({n for n in names if n}, key=len, reverse=True)


def generated() -> list[str]:
    """What the models wrote and the prompts they were given: data, shown whole or cut short."""
    rows = Output.objects.values_list("text", "prompt")
    return [part for row in rows for part in row if part]


def english_words(texts: list[str], data: list[str]) -> list[str]:
    """Each English UI word with the text it came from."""
    found = []
    outputs = generated()
    for text in texts:
        if any(text.rstrip("…") in output for output in outputs):
            continue
        rest = text
        for name in data:
            rest = rest.replace(name, " ")
        rest = IDENTIFIER.sub(" ", rest)
        for word in WORD.findall(rest):
            if word.lower() not in ALLOWED:
                found.append(f"{word!r} in {text[:80]!r}")
    return found


class Reader:
    """Reads pages at chosen moments and keeps what English it found, page by page."""

    def __init__(self, data_extra: list[str]):
        self.found: list[str] = []
        self.extra = data_extra
        self.reads = 0

    def read(self, page, moment: str) -> None:
        self.reads += 1
        words = english_words(page.evaluate(COLLECT), [*self.extra, *user_data()])
        self.found += [f"{moment}: {w}" for w in dict.fromkeys(words)]


def zh_page(browser, base: str, username: str):  # noqa: F811
    """A logged-in page whose browser asks for Chinese, the way a Chinese system does."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(90000)
    page = context.new_page()
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    assert page.evaluate("() => document.documentElement.lang") == "zh-hans"
    return page


def wait_live(page, selector: str) -> None:
    page.wait_for_selector(f"{selector}[data-status=live]")


def test_the_live_pages_stay_in_chinese_as_their_events_arrive(
    demo,
    processes,
    browser,  # noqa: F811
    tmp_path,
):
    base = processes.web()
    processes.worker()
    project = f"{base}/projects/{demo.pk}"
    # The users' words, and the metric the test kind reports.
    reader = Reader(data_extra=["qa.csv", "a cat", "Once upon a time", "value"])
    member = zh_page(browser, base, "member")
    watcher = zh_page(browser, base, "member")
    try:
        # The dashboard watches a job it did not start appear, run and finish.
        watcher.goto(project + "/")
        wait_live(watcher, "#project-live")
        reader.read(watcher, "dashboard")
        member.goto(project + "/")
        card = member.locator("form:has(button[data-kind='test.steps'])")
        card.locator("input[name=steps]").fill("20")
        card.locator("input[name=step_seconds]").fill("0.3")
        card.locator("button[data-kind='test.steps']").click()
        member.wait_for_url("**/jobs/*/")
        wait_live(member, "#job-live")
        member.wait_for_function(
            "() => Number(document.querySelector('#job-progress').getAttribute('aria-valuenow')) > 10"
        )
        reader.read(member, "job page, running")
        watcher.wait_for_selector("#jobs-body tr[data-job-id]")
        reader.read(watcher, "dashboard, a job running")
        member.wait_for_function(
            "() => document.querySelector('#job-progress').getAttribute('aria-valuenow') === '100'"
            " && document.querySelector('#job-root').dataset.state === 'succeeded'"
        )
        reader.read(member, "job page, finished live")
        member.reload()
        reader.read(member, "job page of a finished job")
        watcher.wait_for_function("() => !document.querySelector('#jobs-body .state-running')")
        reader.read(watcher, "dashboard, the job finished")

        review_inbox(browser, base, demo, reader)
        import_a_dataset(member, project, tmp_path, reader)
        generate_text(member, project, reader)
        generate_an_image(member, project, reader)
        member.goto(project + "/finetune/")
        member.wait_for_load_state("networkidle")
        reader.read(member, "fine-tune page")
    except Exception as exc:
        shot = processes.log_dir / "zh-failure-*.png"
        pages = [page for context in browser.contexts for page in context.pages]
        for i, page in enumerate(pages):
            page.screenshot(path=str(shot).replace("*", str(i)), full_page=True)
        raise AssertionError(
            f"{exc}\nscreenshot: {shot}\nworker log:\n{processes.log('worker')[-3000:]}"
            f"\nweb log:\n{processes.log('web')[-2000:]}"
        ) from exc
    assert reader.reads >= 12
    assert not reader.found, "English on Chinese pages:\n" + "\n".join(reader.found)


def import_a_dataset(page, project: str, tmp_path, reader: Reader) -> None:
    """The import page while its job waits behind another (one worker), then the import done."""
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer\nWhat is BP?,Blood pressure.\nHi,Hello\n", encoding="utf-8")
    page.goto(project + "/")
    card = page.locator("form:has(button[data-kind='test.steps'])")
    card.locator("input[name=steps]").fill("60")
    card.locator("input[name=step_seconds]").fill("0.5")
    card.locator("button[data-kind='test.steps']").click()
    page.wait_for_url("**/jobs/*/")
    blocker = page.url
    page.goto(project + "/datasets/upload/")
    page.set_input_files("input[type=file]", str(csv))
    page.fill("input[name=name]", "qa.csv")
    page.select_option("select[name=license]", index=1)
    page.fill("input[name=source]", "qa.csv")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/upload/*/")
    page.locator("form:has(button[type=submit]) button[type=submit].btn").last.click()
    page.wait_for_url("**/imports/*/")
    wait_live(page, "#import-live")
    reader.read(page, "dataset import, waiting")
    # Let the import run: stop the job in front of it.
    imports = page.url
    page.goto(blocker)
    page.click("#job-cancel-form button")
    page.goto(imports)
    # The page reloads itself when the import ends, onto the new version when it succeeded.
    page.wait_for_url("**/v1/")


def generate_text(page, project: str, reader: Reader) -> None:
    page.goto(project + "/playground/")
    reader.read(page, "playground")
    tiny = BaseModel.objects.get(reference="tiny-llama")
    page.select_option("#pg-base_model_id", str(tiny.pk))
    page.fill("#pg-prompt", "Once upon a time")
    page.click("#pg-run")
    wait_live(page, "#pg-live")
    page.wait_for_selector("#pg-live[data-status=closed]")
    reader.read(page, "playground, text generated live")


def generate_an_image(page, project: str, reader: Reader) -> None:
    page.goto(project + "/images/")
    reader.read(page, "images")
    tiny = BaseModel.objects.get(reference="tiny-sd")
    page.select_option("#im-model_id", str(tiny.pk))
    page.fill("#im-prompt", "a cat")
    page.fill("#im-width", "32")
    page.fill("#im-height", "32")
    page.fill("#im-steps", "4")
    page.click("#im-run")
    page.wait_for_selector("#im-results a")
    reader.read(page, "images, an image generated live")


def review_inbox(browser, base: str, project: Project, reader: Reader) -> None:  # noqa: F811
    """The reviewer's inbox, live, with flagged outputs of the member's."""
    member = get_user_model().objects.get(username="member")
    reviewer = get_user_model().objects.get(username="reviewer")
    ruleset_current(project.pk)
    ruleset_save(
        project=project,
        rows=[{"kind": "keyword", "pattern": "zorblax", "category": "custom", "severity": "flag"}],
        actor=reviewer,
    )
    job = make_job(project, member)
    for i in range(2):
        output_create(
            project_id=project.pk,
            job_id=job.pk,
            kind="text",
            sha256=f"{i:064x}",
            created_by_id=member.pk,
            text=f"zorblax {i}",
        )
    page = zh_page(browser, base, "reviewer")
    page.goto(base + "/review/")
    wait_live(page, "#rv-live")
    reader.extra.append("zorblax")
    reader.read(page, "review inbox")
    waiting = page.locator(".rv-item").count()
    assert waiting >= 2
    page.keyboard.press("a")  # approve the first
    page.wait_for_function(
        "(n) => document.querySelectorAll('.rv-item').length === n", arg=waiting - 1
    )
    reader.read(page, "review inbox, after a decision")
