"""Admins register base models: safetensors folders only, never custom code; built-ins prepared on use."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.models import services
from apps.models.models import BaseModel


@pytest.fixture
def tiny_folder(tmp_path):
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path / "tiny", seed=0)


def test_a_safetensors_folder_registers_with_its_architecture_and_lora_targets(
    db, people, tiny_folder
):
    model = services.model_register_folder(
        name="Tiny", path=str(tiny_folder), actor=people["admin"]
    )

    assert model.status == "ready" and model.architecture == "LlamaForCausalLM"
    assert model.parameters > 100_000 and model.context_length > 0
    assert set(model.default_targets) >= {"q_proj", "v_proj"}
    assert AuditEvent.objects.filter(action="model.register").count() == 1


def test_a_folder_with_pickle_weights_is_refused_naming_the_file(db, people, tiny_folder):
    (tiny_folder / "pytorch_model.bin").write_bytes(b"\x80\x04\x95")  # a pickle header

    with pytest.raises(ValidationError) as info:
        services.model_register_folder(name="Pickled", path=str(tiny_folder), actor=people["admin"])

    assert "pytorch_model.bin" in str(info.value)
    assert not BaseModel.objects.filter(name="Pickled").exists()


def test_a_folder_asking_for_remote_code_is_refused(db, people, tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (tiny_folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(ValidationError) as info:
        services.model_register_folder(name="Evil", path=str(tiny_folder), actor=people["admin"])

    assert "trust_remote_code" in str(info.value) or "custom code" in str(info.value)


def test_built_ins_are_registered_once_and_prepared_on_first_use(db, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    services.ensure_builtin_rows()
    services.ensure_builtin_rows()
    tiny = BaseModel.objects.get(reference="tiny-llama")
    assert BaseModel.objects.filter(source="builtin").count() == 4 and tiny.status == "pending"

    folder = services.model_folder(tiny)

    tiny.refresh_from_db()
    assert tiny.status == "ready" and (folder / "config.json").is_file()
