"""Quantized vs original text models on the same prompts: tokens/s, perplexity, top-1 agreement
and size on disk (the text half of bench/craft.py).

`measure_quantization()` measures the tiny Llama (built here) and SmolLM2-135M-Instruct when its
converted folder is already under `models_dir` (it is never converted here: ~30 s and 0.5 GB).
Each variant is loaded once; the timing rounds alternate between variants and keep each one's
best round, so a burst of load on a shared machine hurts every variant alike.

    .venv/bin/python -m bench._craft_quant [--models-dir var/models] [--tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPTS = (
    "Tell me a short story about a cat who learns to swim.",
    "Explain in two sentences why the sky is blue.",
    "请用两句话介绍一下长城。",
    "List three ways to save energy at home.",
)
TEXTS = (
    "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its food.",
    "Machine learning models learn patterns from data and use them to make predictions.",
    "今天天气很好，我们去公园散步吧。公园里有很多花，还有一条小河。",
    "To boil an egg, put it in a pot of cold water, bring it to a boil and wait ten minutes.",
    "Fine-tuning adapts a pretrained model to a new task with a small dataset.",
    "微调可以让预训练模型适应新的任务，只需要少量的数据。",
)
METHODS = ("int8-weight-only", "int8-dynamic")


def _models(models_dir: Path | None, work: Path) -> dict[str, Path]:
    from workers.ml.models import build_tiny_llama

    found = {"tiny-llama": build_tiny_llama(work / "tiny-llama", seed=0)}
    if models_dir is not None:
        smol = sorted(
            p
            for p in Path(models_dir).glob("smollm2-135m-instruct*")
            if (p / "config.json").is_file()
        )
        if smol:
            found["smollm2-135m-instruct"] = smol[-1]
    return found


def _variants(folder: Path, work: Path, methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """name -> {model, tokenizer, size_bytes} for the original and each int8 method (each
    written to disk and loaded back, as the platform would)."""
    from workers.ml.craft.evaluation import folder_bytes
    from workers.ml.craft.int8 import load_int8_folder, quantize_linear_layers, save_int8_folder
    from workers.ml.models import load_causal_lm

    model, tokenizer = load_causal_lm(folder, device="cpu", dtype="fp32")
    out = {"original": {"model": model, "tokenizer": tokenizer, "size_bytes": folder_bytes(folder)}}
    for method in methods:
        runtime = method.removeprefix("int8-")
        fresh, tok = load_causal_lm(folder, device="cpu", dtype="fp32")
        started = time.perf_counter()
        q, layers = quantize_linear_layers(fresh, runtime)
        target = work / f"{folder.name}-{method}"
        save_int8_folder(q, tok, target, runtime=runtime, layers=layers)
        seconds = time.perf_counter() - started
        del q, fresh
        loaded, ltok = load_int8_folder(target)
        out[method] = {
            "model": loaded,
            "tokenizer": ltok,
            "size_bytes": folder_bytes(target),
            "quantize_seconds": round(seconds, 3),
        }
    return out


def _examples(tokenizer: Any) -> list[dict[str, list[int]]]:
    from workers.ml.finetune.data import encode_rows

    rows = [{"text": t} for t in TEXTS]
    return encode_rows(rows, tokenizer, "{text}", max_seq_length=256, loss_on="all").examples


def _prompt_ids(tokenizer: Any) -> list[list[int]]:
    from workers.ml.textgen import build_prompt

    out = []
    for prompt in PROMPTS:
        text = build_prompt(tokenizer, prompt)
        out.append(list(tokenizer(text, add_special_tokens=text == prompt)["input_ids"]))
    return out


def _timed(
    model: Any, tokenizer: Any, prompts: list[list[int]], new_tokens: int
) -> tuple[float, float]:
    """(new tokens per wall second, process CPU milliseconds per new token) of greedy
    generation, one prompt at a time. CPU time moves less than wall time when other
    processes share the cores, so both are kept."""
    from workers.ml.craft.evaluation import tokens_per_second

    cpu0 = time.process_time()
    rate = tokens_per_second(model, tokenizer, prompts, new_tokens=new_tokens)
    cpu = time.process_time() - cpu0
    # tokens_per_second also runs one short warm-up generation: at most 4 tokens more
    return rate, 1000.0 * cpu / (new_tokens * len(prompts) + min(4, new_tokens))


def measure_model(
    folder: Path, work: Path, *, methods: tuple[str, ...], new_tokens: int, rounds: int
) -> dict[str, Any]:
    """Every variant of one model on the same prompts and texts."""
    from workers.ml.craft.evaluation import agreement, perplexity, top1_predictions

    variants = _variants(folder, work, methods)
    tokenizer = variants["original"]["tokenizer"]
    examples, prompts = _examples(tokenizer), _prompt_ids(tokenizer)
    pad = tokenizer.pad_token_id
    reference = top1_predictions(variants["original"]["model"], examples, pad_id=pad)
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    cpu_ms: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):  # alternate, so load on the machine hits every variant alike
        for name, v in variants.items():
            rate, ms = _timed(v["model"], v["tokenizer"], prompts, new_tokens)
            speeds[name].append(rate)
            cpu_ms[name].append(ms)
    out: dict[str, Any] = {}
    for name, v in variants.items():
        row = {
            "tokens_per_second": round(max(speeds[name]), 2),
            "tokens_per_second_rounds": [round(s, 2) for s in speeds[name]],
            "cpu_ms_per_token": round(min(cpu_ms[name]), 2),
            "perplexity": round(perplexity(v["model"], examples, pad_id=pad), 4),
            "size_bytes": v["size_bytes"],
        }
        if name != "original":
            row["top1_agreement"] = round(
                agreement(reference, top1_predictions(v["model"], examples, pad_id=pad)), 4
            )
            row["quantize_seconds"] = v["quantize_seconds"]
        out[name] = row
    base = out["original"]
    for name in methods:
        out[name]["speedup"] = round(out[name]["tokens_per_second"] / base["tokens_per_second"], 3)
        out[name]["cpu_speedup"] = round(
            base["cpu_ms_per_token"] / out[name]["cpu_ms_per_token"], 3
        )
        out[name]["size_ratio"] = round(base["size_bytes"] / out[name]["size_bytes"], 3)
    return out


def measure_quantization(
    *,
    models_dir: str | Path | None = None,
    methods: tuple[str, ...] = METHODS,
    new_tokens: int = 32,
    rounds: int = 2,
    threads: int | None = None,
) -> dict[str, Any]:
    """{"environment": {...}, "models": {model: {variant: {tokens_per_second, perplexity,
    cpu_ms_per_token, size_bytes, top1_agreement?, speedup?, cpu_speedup?, size_ratio?}}}} for the tiny Llama, and SmolLM2
    when it is already converted under `models_dir`."""
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="bench-craft-quant-"))
    try:
        results = {
            name: measure_model(folder, work, methods=methods, new_tokens=new_tokens, rounds=rounds)
            for name, folder in _models(Path(models_dir) if models_dir else None, work).items()
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "int8_kernel": hasattr(torch, "_weight_int8pack_mm"),
            "new_tokens": new_tokens,
            "rounds": rounds,
            "prompts": len(PROMPTS),
        },
        "models": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default="var/models")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    result = measure_quantization(
        models_dir=args.models_dir, new_tokens=args.tokens, rounds=args.rounds, threads=args.threads
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
