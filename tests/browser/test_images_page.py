"""The image page in a real browser against real web and worker processes: a prompt with a
registered LoRA inserted from its chip, live progress to a finished image, then the gallery's
upscale action on it."""

from __future__ import annotations

import pytest
import torch
from django.core.management import call_command

from apps.jobs.models import Job
from apps.models import services as model_services
from apps.models.models import BaseModel
from apps.outputs.models import Output
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def registered_lora(tmp_path):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from django.contrib.auth import get_user_model
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from workers.imaging.pipeline import load_pipeline

    tiny = BaseModel.objects.get(reference="tiny-sd")
    pipe = load_pipeline(model_services.model_folder(tiny), device="cpu")
    torch.manual_seed(1)
    pipe.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=layers)
    admin = get_user_model().objects.get(username="admin")
    return model_services.asset_register(
        kind="lora",
        name="crisp",
        path=str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"),
        actor=admin,
    )


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("ATELIER_DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")


def test_a_member_generates_an_image_with_a_lora_and_upscales_it(
    demo,
    registered_lora,
    processes,
    browser,  # noqa: F811
):
    base = processes.web()
    processes.worker()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(90000)
    try:
        generate_and_upscale(page, base)
    except Exception as exc:
        shot = processes.log_dir / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(
            f"{exc}\nscreenshot: {shot}\nworker log:\n{processes.log('worker')[-3000:]}"
            f"\nweb log:\n{processes.log('web')[-2000:]}"
        ) from exc
    image = Output.objects.get(job__kind="image.generate")
    assert image.prompt == "a cat, <lora:crisp:1>" and image.created_by.username == "member"
    assert "crisp" in image.params["infotext"]
    big = Output.objects.get(job__kind="image.upscale")
    assert (big.width, big.height) == (image.width * 2, image.height * 2)
    assert Job.objects.filter(state="succeeded").count() == 2


def generate_and_upscale(page, base: str) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", "member")
    page.fill("input[name=password]", "demo-pass-123")
    page.click("button:has-text('Log in')")
    page.click("text=Demo project")
    page.click("nav >> text=Images")
    page.select_option("#im-model_id", label="Tiny SD (random, for tests)")
    page.fill("#im-prompt", "a cat")
    page.click("button.im-insert:has-text('crisp')")
    assert page.input_value("#im-prompt") == "a cat, <lora:crisp:1>"
    page.fill("#im-width", "32")
    page.fill("#im-height", "32")
    page.fill("#im-steps", "4")
    page.evaluate("window.__noReload = true")
    page.click("#im-run")
    # The image arrives over the job's websocket, on this very page.
    page.wait_for_selector("#im-results a", timeout=90000)
    assert page.evaluate("window.__noReload === true")
    # Recent images follows too, without a reload (the project's socket, then one fetch).
    page.wait_for_selector("#im-recent li.gl-card[data-output-id]", timeout=30000)
    assert page.evaluate("window.__noReload === true")
    page.locator("#im-results a").first.click()
    page.wait_for_url("**/gallery/*/")
    page.select_option("#upscaler", "lanczos")
    page.select_option("#upscale-by", "2")
    page.click(".gl-upscale button")
    page.wait_for_url("**/jobs/*/")
    page.wait_for_function(
        # A function, not an expression: Playwright evals expressions in the page, which the
        # Content-Security-Policy (no 'unsafe-eval') refuses.
        "() => document.querySelector('#job-state').textContent.toLowerCase().includes('succeeded')"
    )
    page.reload()
    assert page.locator("#job-outputs img").count() == 1
