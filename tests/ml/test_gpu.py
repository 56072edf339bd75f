"""GPU checks, run by `make gpu-check` on a CUDA machine (skipped elsewhere): a short real LoRA
fine-tune in bf16/fp16 and a generation on CUDA, plus 4-bit loading when bitsandbytes is present."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check on a GPU machine)"
    ),
]

ROWS = [
    {"question": f"What is {a} plus {b}?", "answer": f"{a + b}"}
    for a in range(1, 9)
    for b in range(1, 9)
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_a_lora_fine_tune_runs_on_cuda_in_half_precision(tiny, tmp_path):
    from workers.ml.finetune import LoraFinetuneConfig, resolve_precision, train_lora
    from workers.ml.reporting import RecordingReporter

    config = LoraFinetuneConfig(
        max_steps=30,
        logging_steps=5,
        save_steps=15,
        warmup_steps=0,
        learning_rate=0.02,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        max_seq_length=64,
    )
    reporter = RecordingReporter()
    result = train_lora(
        config,
        base_model_dir=tiny,
        train_rows=ROWS,
        template="### 问题:{question}\n### 回答:{answer}",
        output_dir=tmp_path / "run",
        reporter=reporter,
    )

    assert result.status == "succeeded"
    assert resolve_precision("auto") in ("bf16", "fp16")
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"]


def test_generation_runs_on_cuda_and_is_deterministic_for_a_seed(tiny):
    from workers.ml.cache import ModelCache
    from workers.ml.textgen import GenerationSettings, generate_text

    cache = ModelCache(2**30)
    settings = GenerationSettings(max_new_tokens=16, seed=5)
    a = generate_text(tiny, "Hello", settings, cache=cache, device="cuda")
    b = generate_text(tiny, "Hello", settings, cache=cache, device="cuda")

    assert a.device.startswith("cuda") and a.text == b.text and b.loaded is False


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed"
)
def test_4bit_loading_works_with_bitsandbytes(tiny):
    from workers.ml.models import load_causal_lm

    model, _ = load_causal_lm(tiny, quantization="4bit")
    assert next(model.parameters()).is_cuda
