"""Quantization on the tiny Llama: an int8 folder that loads back (safetensors, no pickle), with
its size, tokens/s and perplexity reported, and outputs close to the original's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from workers.ml.craft import QuantizeConfig
from workers.ml.craft.int8 import load_int8_folder
from workers.ml.craft.quantize import quantize
from workers.ml.reporting import JobFailed, RecordingReporter

TEMPLATE = "### 问题:{question}\n### 回答:{answer}"
ROWS = [
    {"question": "What is the capital of France?", "answer": "The capital of France is Paris."},
    {"question": "How many days are in a week?", "answer": "There are seven days in a week."},
    {"question": "今天天气怎么样?", "answer": "今天天气很好, 阳光明媚。"},
    {
        "question": "What do models do?",
        "answer": "A model learns from examples and makes predictions.",
    },
    {"question": "中国的首都是哪里?", "answer": "中国的首都是北京。"},
    {"question": "What colour is the sky?", "answer": "The sky is blue."},
]
TEXTS = [
    "Fine-tuning adapts a pretrained model to a new task with a small dataset.",
    "微调可以让预训练模型适应新的任务。",
    "Please answer the question briefly and politely.",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny", seed=0)


def _quantize(base: Path, out: Path, method: str, reporter=None):
    return quantize(
        QuantizeConfig(method=method, speed_tokens=8, speed_prompts=2),
        model_dir=base,
        eval_rows=ROWS,
        template=TEMPLATE,
        output_dir=out,
        reporter=reporter,
        source_info={"model": "tiny"},
    )


@pytest.fixture(scope="module")
def weight_only(base, tmp_path_factory):
    reporter = RecordingReporter()
    return _quantize(base, tmp_path_factory.mktemp("int8"), "int8-weight-only", reporter), reporter


def _top1(model, tokenizer):
    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt")).logits[0].argmax(-1) for t in TEXTS]


def test_the_int8_report_gives_size_speed_and_perplexity_before_and_after(weight_only):
    result, reporter = weight_only
    r = result.report

    assert result.status == "succeeded" and r["method"] == "int8-weight-only"
    # Linear weights go from 4 bytes to 1 (+ a scale per row); embeddings stay float32.
    assert r["size_bytes_after"] < 0.6 * r["size_bytes_before"]
    assert r["tokens_per_second_before"] > 0 and r["tokens_per_second_after"] > 0
    # Weight-only int8 barely moves the model: perplexity within 2 %, top-1 agreement >= 90 %.
    assert r["perplexity_after"] == pytest.approx(r["perplexity_before"], rel=0.02)
    assert r["top1_agreement"] >= 0.9
    assert any("top1_agreement" in m for _, m in reporter.metric_steps)


def test_the_int8_folder_loads_back_and_predicts_like_the_original(weight_only, base):
    from workers.ml.models import load_causal_lm

    folder = Path(weight_only[0].model_dir)
    original, tokenizer = load_causal_lm(base, device="cpu")
    # The platform's loader (the playground's, a worker's) recognises the int8 folder.
    quantized, q_tokenizer = load_causal_lm(folder, device="auto")
    assert any(type(m).__name__ == "Int8Linear" for m in quantized.modules())

    a, b = _top1(original, tokenizer), _top1(quantized, q_tokenizer)
    same = sum(int((x == y).sum()) for x, y in zip(a, b, strict=True))
    total = sum(len(x) for x in a)
    # Held-out text (not the validation rows): the same top-1 token at >= 90 % of positions.
    assert same / total >= 0.9
    out = quantized.generate(**q_tokenizer("Hello", return_tensors="pt"), max_new_tokens=3)
    assert out.shape[1] > 1


def test_the_int8_folder_is_safetensors_only_and_a_plain_loader_refuses_it(weight_only):
    from transformers import AutoModelForCausalLM

    folder = Path(weight_only[0].model_dir)
    names = {p.name for p in folder.iterdir()}

    assert {"model.int8.safetensors", "quantization.json", "config.json", "report.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    # A loader that does not know the format fails loudly instead of using random weights.
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)


def test_a_folder_missing_an_int8_layer_is_refused(weight_only, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(weight_only[0].model_dir, folder)
    tensors = load_file(str(folder / "model.int8.safetensors"))
    name = next(k for k in tensors if k.endswith(".qweight"))
    del tensors[name]
    save_file(tensors, str(folder / "model.int8.safetensors"))

    with pytest.raises(JobFailed, match="no int8 weights for"):
        load_int8_folder(folder)


def test_int8_dynamic_quantizes_activations_too_on_the_cpu(base, tmp_path):
    result = _quantize(base, tmp_path, "int8-dynamic")
    r = result.report

    assert r["size_bytes_after"] < 0.6 * r["size_bytes_before"]
    # int8 activations cost more accuracy (on SmolLM2-135M: 39 % agreement, see int8.py); on
    # the tiny model the top-1 token still agrees at >= 80 % of positions.
    assert r["top1_agreement"] >= 0.8
    model, _ = load_int8_folder(result.model_dir)
    assert type(model.lm_head).__module__.startswith("torch.ao.nn.quantized")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_bitsandbytes_is_refused_on_the_cpu_with_what_to_choose_instead(base, tmp_path):
    with pytest.raises(JobFailed) as info:
        _quantize(base, tmp_path, "bnb-4bit")

    assert "needs a CUDA GPU" in str(info.value) and "int8-weight-only" in str(info.value)
    assert not (tmp_path / "model").exists()


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available(),
    reason="needs a CUDA GPU and bitsandbytes (make gpu-check)",
)
@pytest.mark.parametrize("method", ["bnb-8bit", "bnb-4bit"])
def test_bitsandbytes_folders_load_back_on_the_gpu(base, tmp_path, method):
    from workers.ml.craft.quantize import load_quantized

    result = _quantize(base, tmp_path, method)
    model, tokenizer = load_quantized(result.model_dir)

    assert result.report["device"] == "cuda"
    assert result.report["size_bytes_after"] < result.report["size_bytes_before"]
    assert result.report["top1_agreement"] >= 0.8
    assert (
        model.generate(
            **tokenizer("Hello", return_tensors="pt").to("cuda"), max_new_tokens=2
        ).shape[1]
        > 1
    )
