"""Single-file checkpoints (``from_single_file``) offline, with a local diffusers config folder.

The tiny random pipeline is exported to the original LDM/A1111 layout (ldm_export.py), loaded
back through ``load_pipeline(file, config=folder)`` with the hub switched off, and must give
the very same images as the diffusers folder it came from.
"""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

from tests.imaging.ldm_export import export_ldm_checkpoint
from workers.imaging.pipeline import (
    GenerationRequest,
    ModelRefused,
    generate_images,
    load_pipeline,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def network_attempts(monkeypatch) -> list:
    """Every attempt to open a connection, refused and recorded (one swallowed by a retry loop
    still counts)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="module")
def checkpoint(pipe, tmp_path_factory):
    return export_ldm_checkpoint(pipe, tmp_path_factory.mktemp("single") / "tiny.safetensors")


def request(**overrides) -> GenerationRequest:
    fields = {
        "prompt": "a (red:1.3) house on a [hill], sun",
        "negative_prompt": "blurry",
        "sampler": "DPM++ 2M",
        "steps": 5,
        "seed": 4321,
        "width": 64,
        "height": 64,
    }
    fields.update(overrides)
    return GenerationRequest(**fields)


def test_export_uses_the_original_checkpoint_names(checkpoint):
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as f:
        keys = set(f.keys())
    for expected in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.time_embed.0.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.encoder.down.0.block.0.norm1.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    ):
        assert expected in keys
    diffusers_names = ("down_blocks", "up_blocks", "mid_block", "resnets", "attentions")
    assert not [k for k in keys if any(n in k for n in diffusers_names)]


def _config(module) -> dict:
    config = module.config
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in config.items() if k not in ("_name_or_path", "name_or_path")}


def test_single_file_loads_offline_with_a_config_folder_and_gives_the_same_images(
    pipe, tiny_path, checkpoint, network_attempts
):
    single = load_pipeline(checkpoint, device="cpu", dtype="float32", config=tiny_path)
    assert network_attempts == []  # the config folder is enough: no hub lookup
    assert type(single).__name__ == "StableDiffusionPipeline"
    assert single.safety_checker is None
    assert dict(single.scheduler.config) == dict(pipe.scheduler.config)
    assert single.tokenizer.get_vocab() == pipe.tokenizer.get_vocab()

    # Both pipelines run the very same operations: equal configs, attention processors and
    # weights, with the same strides, in aligned memory. So the pixels must be bit-identical.
    # (The weights used to be views into each memory-mapped file, at offsets that differ between
    # the two files; MKL's one-row SGEMM rounds by the weight's alignment, and the images came
    # out one 8-bit level apart. load_pipeline now moves them to 64-byte aligned memory.)
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(pipe, name), getattr(single, name)
        assert _config(ours) == _config(theirs), name
        assert (ours.dtype, ours.training) == (theirs.dtype, theirs.training), name
        if name != "text_encoder":
            processors = {k: type(v) for k, v in ours.attn_processors.items()}
            assert processors == {k: type(v) for k, v in theirs.attn_processors.items()}, name
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
            assert a[key].stride() == b[key].stride(), (name, key)
            assert a[key].data_ptr() % 64 == b[key].data_ptr() % 64 == 0, (name, key)

    for req in (request(), request(sampler="Euler a", hires={"scale": 1.5, "steps": 2})):
        expected = generate_images(pipe, req)[0].image.tobytes()
        assert generate_images(single, req)[0].image.tobytes() == expected


def test_single_file_without_config_offline_is_refused_at_once_with_the_hint(
    checkpoint, network_attempts, monkeypatch
):
    from diffusers import StableDiffusionPipeline

    asked = []
    monkeypatch.setattr(
        StableDiffusionPipeline,
        "from_single_file",
        classmethod(lambda cls, *a, **k: asked.append(a)),
    )
    with pytest.raises(ModelRefused, match=r"offline, pass config= a local diffusers folder"):
        load_pipeline(checkpoint, device="cpu")
    # Refused before diffusers is asked: no hub lookup, so no retries either.
    assert asked == [] and network_attempts == []


def test_a_config_of_another_family_is_refused(tiny_path, checkpoint, tmp_path):
    folder = tmp_path / "xl-config"
    shutil.copytree(tiny_path, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelRefused, match="SDXL pipeline folder"):
        load_pipeline(checkpoint, device="cpu", config=folder)


def test_a_missing_config_folder_is_refused_offline(checkpoint, tmp_path):
    with pytest.raises(ModelRefused, match="not a local diffusers folder"):
        load_pipeline(checkpoint, device="cpu", config=tmp_path / "nowhere")


def test_a_ckpt_checkpoint_is_refused_unopened(tmp_path, tiny_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    with pytest.raises(ModelRefused, match="pickle"):
        load_pipeline(path, config=tiny_path)


@pytest.fixture(scope="module")
def lora_file(tiny_path, tmp_path_factory):
    """A real diffusers LoRA for the tiny UNet (as test_pipelines.py makes it)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = load_pipeline(tiny_path, device="cpu")
    donor.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(donor.unet))
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers)
    return folder / "pytorch_lora_weights.safetensors"


def test_a_lora_file_is_refused_as_not_a_checkpoint(lora_file, tiny_path, tmp_path):
    from safetensors.torch import save_file

    kohya = tmp_path / "kohya-lora.safetensors"
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
        },
        str(kohya),
    )
    for path in (lora_file, kohya):
        with pytest.raises(ModelRefused, match="not a Stable Diffusion checkpoint"):
            load_pipeline(path, config=tiny_path)
