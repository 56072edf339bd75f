"""The image page starts from the selected model's suggested settings (its row's info: sampler,
CFG scale, steps, size, hi-res settings), and hands every model's suggestions to images.js, which
switches them when the user picks another model (tests/imaging/test_image_form_browser.py)."""

from __future__ import annotations

import html
import json
import re

import pytest

from apps.models.models import BaseModel, ModelSource

pytestmark = pytest.mark.django_db

DEMO_INFO = {
    "native_size": 32,
    "suggested": {"sampler": "DDIM", "steps": 20, "cfg_scale": 5.0, "hires_denoise": 0.3},
}


def image_model(name: str, info: dict) -> BaseModel:
    return BaseModel.objects.create(
        name=name, kind="image", source=ModelSource.FOLDER, reference=f"/models/{name}", info=info
    )


@pytest.fixture
def two_models(db):
    """ "A digits model" (listed first: models are ordered by name) suggests its own settings;
    "B plain model" suggests nothing."""
    return image_model("A digits model", DEMO_INFO), image_model("B plain model", {})


def page(client, user, project, query: str = "") -> str:
    client.force_login(user)
    response = client.get(f"/projects/{project.pk}/images/{query}")
    assert response.status_code == 200
    return response.content.decode()


def selected_sampler(text: str) -> str:
    select = re.search(r'<select name="sampler".*?</select>', text, re.S).group(0)
    return re.search(r'<option value="([^"]+)" selected>', select).group(1)


def input_value(text: str, name: str) -> str:
    return re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', text, re.S).group(1)


def test_the_form_starts_from_the_first_models_suggested_sampler_cfg_size_and_hires(
    client, project, member, two_models
):
    text = page(client, member, project)

    assert selected_sampler(text) == "DDIM"
    assert float(input_value(text, "cfg_scale")) == 5.0
    assert input_value(text, "steps") == "20"
    assert input_value(text, "width") == "32" and input_value(text, "height") == "32"
    assert float(input_value(text, "hires_denoise")) == 0.3


def test_a_model_without_suggestions_gets_the_pages_own_defaults(
    client, project, member, two_models
):
    plain = two_models[1]

    text = page(client, member, project, f"?model_id={plain.pk}")

    assert selected_sampler(text) == "DPM++ 2M Karras"
    assert float(input_value(text, "cfg_scale")) == 7.0
    assert input_value(text, "width") == "512"


def test_every_option_carries_its_models_suggestions_for_the_script(
    client, project, member, two_models
):
    demo, plain = two_models
    text = page(client, member, project)

    def suggested(model: BaseModel) -> dict:
        found = re.search(rf'<option value="{model.pk}"[^>]*data-suggested="([^"]*)"', text)
        return json.loads(html.unescape(found.group(1)))

    assert suggested(demo) == {
        "sampler": "DDIM",
        "steps": 20,
        "cfg_scale": 5.0,
        "hires_denoise": 0.3,
        "width": 32,
        "height": 32,
    }
    assert suggested(plain) == {}
    plain_defaults = json.loads(html.unescape(re.search(r'data-plain-defaults="([^"]*)"', text)[1]))
    assert plain_defaults["sampler"] == "DPM++ 2M Karras" and plain_defaults["width"] == 512


def test_values_reused_from_an_earlier_image_win_over_the_models_suggestions(
    client, project, member, two_models
):
    text = page(client, member, project, "?sampler=Euler+a&cfg_scale=9")

    assert selected_sampler(text) == "Euler a"
    assert float(input_value(text, "cfg_scale")) == 9.0
    assert input_value(text, "width") == "32"  # not reused: still the model's


def test_junk_in_a_models_suggestions_is_left_out(client, project, member):
    image_model(
        "A odd model",
        {"native_size": True, "suggested": {"sampler": "Warp drive", "cfg_scale": [1], "eta": 1}},
    )

    text = page(client, member, project)

    assert selected_sampler(text) == "DPM++ 2M Karras"
    assert float(input_value(text, "cfg_scale")) == 7.0
    assert input_value(text, "width") == "512"
