"""One schema for a fine-tune: the job's params model is the worker's config, field for field."""

from __future__ import annotations

import dataclasses

import pytest
from django.urls import reverse

from apps.finetunes.schemas import PLATFORM_FIELDS, LoraParams, to_config
from apps.finetunes.views import OWN_WIDGETS
from apps.jobs import registry
from workers.ml.finetune import ConfigError, LoraFinetuneConfig

CONFIG = {f.name: f for f in dataclasses.fields(LoraFinetuneConfig)}
REQUIRED = {"base_model_id": 1, "dataset_version_id": 1}


def _schema() -> dict:
    return LoraParams.model_json_schema()["properties"]


def _worker_accepts(**values) -> bool:
    try:
        LoraFinetuneConfig(**values)
    except ConfigError:
        return False
    return True


def _errors(**values) -> dict[str, str]:
    return registry.validate_params(registry.get("finetune.lora"), {**REQUIRED, **values})[1]


def test_the_params_have_the_config_fields_and_the_platform_fields_only():
    assert set(_schema()) == set(CONFIG) | set(PLATFORM_FIELDS)
    assert not set(CONFIG) & set(PLATFORM_FIELDS)


@pytest.mark.parametrize("name", sorted(CONFIG))
def test_the_params_and_the_config_agree_on_a_field(name):
    field, prop = CONFIG[name], _schema()[name]
    meta = field.metadata

    expected_default = field.default if name != "target_modules" else ""  # None: empty text
    assert prop["default"] == expected_default
    assert prop["title"] == meta["title"] and prop["description"] == meta["help"]
    assert prop.get("enum") == (list(meta["choices"]) if "choices" in meta else None)
    assert prop.get("minimum") == meta.get("ge")
    assert prop.get("exclusiveMinimum") == meta.get("gt")
    assert prop.get("maximum") == meta.get("le")
    assert prop.get("maxLength") == meta.get("max_length")


@pytest.mark.parametrize(
    "name", sorted(n for n, f in CONFIG.items() if {"ge", "gt", "le"} & set(f.metadata))
)
def test_the_form_and_the_worker_accept_and_refuse_the_same_values_at_the_bounds(name):
    meta = CONFIG[name].metadata
    step = 1 if isinstance(CONFIG[name].default, int) else 1e-9
    accepted, refused = [], []
    if "ge" in meta:
        accepted.append(meta["ge"])
        refused.append(meta["ge"] - step)
    if "gt" in meta:
        accepted.append(meta["gt"] + step)
        refused.append(meta["gt"])
    accepted.append(meta["le"])
    refused.append(meta["le"] + step)

    for value in accepted:
        assert _worker_accepts(**{name: value}), value
        assert _errors(**{name: value}) == {}, value
    for value in refused:
        assert not _worker_accepts(**{name: value}), value
        assert name in _errors(**{name: value}), value


def test_the_default_params_make_the_worker_default_config():
    assert to_config(LoraParams(**REQUIRED)) == LoraFinetuneConfig()


def test_a_rule_across_fields_is_reported_on_the_field_it_names():
    assert _errors(max_steps=0) == {
        "max_steps": "max_steps must be -1 (use num_train_epochs) or at least 1"
    }
    assert "num_gpus" in _errors(num_gpus=2, load_in="4bit")


def test_target_modules_are_comma_separated_text_for_the_worker():
    params = LoraParams(**REQUIRED, target_modules="q_proj, k_proj")
    assert to_config(params).target_modules == ("q_proj", "k_proj")


def test_the_form_shows_every_field_of_the_schema(client, project, member):
    from apps.models.services import ensure_builtin_rows

    ensure_builtin_rows()
    client.force_login(member)
    response = client.get(reverse("finetunes:new", args=[project.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    # Every field has an input; the version select needs a dataset, and this project has none.
    for name in set(_schema()) - {"dataset_version_id"}:
        assert f'name="{name}"' in page, name
    for scheduler in CONFIG["lr_scheduler_type"].metadata["choices"]:
        assert f'<option value="{scheduler}"' in page
    assert set(OWN_WIDGETS) <= set(_schema())
