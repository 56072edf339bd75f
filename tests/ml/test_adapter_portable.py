"""A published adapter names its base portably, so a downloaded copy loads on another machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from workers.ml.finetune import FinetuneResult, LoraFinetuneConfig, train_lora
from workers.ml.finetune.portable import portable_base_name
from workers.ml.preference.folder import publish
from workers.ml.reporting import RecordingReporter

TEMPLATE = "Q: {question}\nA: {answer}"
ROWS = [{"question": f"{a}+{b}?", "answer": str(a + b)} for a in range(4) for b in range(4)]
CONFIG = LoraFinetuneConfig(
    max_steps=2,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    warmup_steps=0,
    logging_steps=1,
    save_steps=2,
    learning_rate=1e-2,
    eval_fraction=0.2,
    max_seq_length=32,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    # Deep inside a machine-specific folder, as a worker's models volume is.
    return build_tiny_llama(tmp_path_factory.mktemp("srv") / "models" / "tiny-llama-v1", seed=0)


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("run")
        result = train_lora(
            CONFIG,
            base_model_dir=base,
            train_rows=ROWS,
            template=TEMPLATE,
            output_dir=out,
            reporter=RecordingReporter(),
            card_info={"base_model": "tiny-llama"},
        )
    finally:
        torch.set_num_threads(before)
    assert result.status == "succeeded"
    return result


def test_the_adapter_config_names_the_base_without_a_path(trained, base):
    config = json.loads((Path(trained.adapter_dir) / "adapter_config.json").read_text())

    assert config["base_model_name_or_path"] == "tiny-llama"
    assert config["peft_type"] == "LORA" and config["target_modules"]  # the rest as peft wrote it
    with zipfile.ZipFile(trained.adapter_zip) as zf:
        zipped = json.loads(zf.read("adapter/adapter_config.json"))
    assert zipped == config
    assert str(base) not in json.dumps(zipped) and str(base.parent) not in json.dumps(zipped)


def test_the_model_card_says_which_base_to_pass(trained):
    card = (Path(trained.adapter_dir) / "README.md").read_text()

    assert 'base_model: "tiny-llama"' in card
    assert "onto its base model, **tiny-llama**" in card
    assert 'BASE = "tiny-llama"' in card and "PeftModel.from_pretrained(base" in card


LOAD = textwrap.dedent(
    """
    import json, sys
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = sys.argv[1]
    ids = AutoTokenizer.from_pretrained(base_dir)("Q: 2+3?\\nA:", return_tensors="pt").input_ids
    with torch.no_grad():
        # As downloaded, nothing edited: the config's base name is a folder in this directory.
        auto = AutoPeftModelForCausalLM.from_pretrained("adapter")(ids).logits
        explicit = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base_dir), "adapter"
        )(ids).logits
        bare = AutoModelForCausalLM.from_pretrained(base_dir)(ids).logits
    print(json.dumps({
        "same": torch.equal(auto, explicit),
        "adapter_changes_output": (auto - bare).abs().max().item(),
    }))
    """
)


def test_a_downloaded_adapter_loads_onto_its_base_in_another_folder(trained, base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with zipfile.ZipFile(trained.adapter_zip) as zf:  # what a user downloads
        zf.extractall(elsewhere)
    shutil.copytree(base, elsewhere / "tiny-llama")  # the base, kept under its portable name
    (elsewhere / "load.py").write_text(LOAD)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    # Another machine: the folder the adapter was trained from does not exist there.
    away = base.with_name(f"{base.name}-away")
    base.rename(away)
    try:
        proc = subprocess.run(
            [sys.executable, "load.py", "tiny-llama"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        away.rename(base)

    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same"] is True
    assert result["adapter_changes_output"] > 1e-4


def test_preference_adapters_are_published_portably_too(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/srv/atelier/models/smollm2", "r": 8})
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    result = FinetuneResult(status="succeeded", global_step=1, max_steps=1, metrics={})

    publish(
        result,
        tmp_path,
        method="dpo",
        config={"beta": 0.1},
        card_info={
            "base_model": "SmolLM2-135M-Instruct",
            "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        },
        template=None,
        reporter=RecordingReporter(),
    )

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "r": 8}
    assert 'BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"' in (adapter / "README.md").read_text()


@pytest.mark.parametrize(
    ("card_info", "expected"),
    [
        ({"base_model": "/srv/models/Qwen2.5-0.5B"}, "Qwen2.5-0.5B"),
        ({"base_model": "C:\\models\\phi-2"}, "phi-2"),
        (
            {"base_model": "SmolLM2", "base_model_id": "HuggingFaceTB/SmolLM2-135M"},
            "HuggingFaceTB/SmolLM2-135M",
        ),
        ({"base_model": ""}, "folder-name"),
    ],
)
def test_a_path_given_as_the_base_name_keeps_only_its_last_part(card_info, expected):
    assert portable_base_name(card_info, "/var/models/folder-name") == expected
