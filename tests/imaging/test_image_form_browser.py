"""The image page in a real browser: picking another model moves the fields the user has not
changed to that model's suggested settings (or the page's defaults), and keeps the user's own."""

from __future__ import annotations

import os

import pytest

from apps.models.models import BaseModel, ModelSource
from tests.browser.test_live_job_page import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Set to a folder to keep a screenshot of the form after each switch (a look by eye).
SHOTS = os.environ.get("ATELIER_FORM_SHOTS", "")


def fields(page) -> dict[str, str | float]:
    """The fields a model may suggest, numbers as numbers ("5" and "5.0" are the same CFG)."""
    values: dict[str, str | float] = {"sampler": page.input_value("#im-sampler")}
    for name in ("steps", "cfg_scale", "width", "height", "hires_denoise"):
        values[name] = float(page.input_value(f"#im-{name}"))
    return values


def shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.locator("#im-form").screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def test_switching_models_switches_untouched_fields_to_the_models_suggestions(
    people,
    project,
    processes,
    browser,  # noqa: F811
):
    ids = {}
    for name, info in (
        (
            "A digits model",
            {
                "native_size": 32,
                "suggested": {"sampler": "DDIM", "cfg_scale": 5.0, "hires_denoise": 0.3},
            },
        ),
        ("B plain model", {}),
    ):
        ids[name] = str(
            BaseModel.objects.create(
                name=name, kind="image", source=ModelSource.FOLDER, reference=name, info=info
            ).pk
        )
    base = processes.web()
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.set_default_timeout(60000)
    page.goto(base + "/")
    page.fill("input[name=username]", "member")
    page.fill("input[name=password]", "pw-member")
    page.click("button:has-text('Log in')")
    page.goto(f"{base}/projects/{project.pk}/images/")
    page.locator("#im-hires summary").click()

    assert fields(page) == {
        "sampler": "DDIM",
        "steps": 20,
        "cfg_scale": 5,
        "width": 32,
        "height": 32,
        "hires_denoise": 0.3,
    }
    shot(page, "1-digits")
    page.fill("#im-cfg_scale", "6")  # the user's own value

    page.select_option("#im-model_id", ids["B plain model"])
    shot(page, "2-plain")
    assert fields(page) == {
        "sampler": "DPM++ 2M Karras",
        "steps": 20,
        "cfg_scale": 6,
        "width": 512,
        "height": 512,
        "hires_denoise": 0.5,
    }

    page.fill("#im-width", "256")
    page.select_option("#im-model_id", ids["A digits model"])
    shot(page, "3-digits-again")
    assert fields(page) == {
        "sampler": "DDIM",
        "steps": 20,
        "cfg_scale": 6,
        "width": 256,
        "height": 32,
        "hires_denoise": 0.3,
    }
