"""The bare baseline for the fine-tune benchmark: the team's recipe as a plain script.

    .venv/bin/python -m bench._finetune_bare [--steps 40] [--rows 64]

`bare_run(base_model_dir, rows, params)` follows the recipe of issue 4 with nothing of the
platform around it: `from_pretrained`, `LoraConfig(task_type="CAUSAL_LM")`, `TrainingArguments`,
`Trainer(...).train()`, `save_pretrained`. No Reporter, no checkpoint markers, no eval, no
callbacks of ours. `params` are the same fine-tune parameters the platform job gets (the fields
of `workers.ml.finetune.LoraFinetuneConfig`; missing ones take its defaults), so both runs do the
same work: the same rows rendered with the same template plus EOS, cut to max_seq_length, the same
batches, optimizer steps and checkpoint cadence (save_steps).

Throughput is measured the way the platform measures it: real (non-padding) tokens handed to the
training loop divided by the wall time of `trainer.train()`. `total_seconds` is the whole run from
loading the model to the saved adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_TEMPLATE = "### 问题:{question}\n### 回答:{answer}"


def params_of(params: Mapping[str, Any] | None) -> Any:
    from workers.ml.finetune import LoraFinetuneConfig

    return LoraFinetuneConfig.from_dict(dict(params or {}))


def bare_run(
    base_model_dir: str | os.PathLike[str],
    rows: Iterable[Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
    *,
    template: str = DEFAULT_TEMPLATE,
    output_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter the bare way; return tokens, timings and the loss.

    `rows`: canonical records (all of them are trained on: pass the platform's training split
    when comparing with a run that holds out eval rows).
    """
    t_start = time.perf_counter()
    import torch
    from transformers import DataCollatorForLanguageModeling, PrinterCallback, Trainer

    p = params_of(params)
    cuda = torch.cuda.is_available()
    precision, load_kwargs = precision_of(p, cuda)
    model, tokenizer = lora_model(base_model_dir, p, load_kwargs)
    data = _tokenize(rows, tokenizer, template, p.max_seq_length)

    inner = DataCollatorForLanguageModeling(
        tokenizer, mlm=False, pad_to_multiple_of=8 if cuda else None
    )
    seen = {"tokens": 0}

    def collate(features):
        seen["tokens"] += sum(len(f["input_ids"]) for f in features)
        return inner(features)

    with tempfile.TemporaryDirectory(prefix="bare-ft-") as scratch:
        out = Path(output_dir) if output_dir is not None else Path(scratch)
        args = training_arguments(p, out / "checkpoints", precision, cuda)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
        trainer.remove_callback(PrinterCallback)  # quiet: the bench prints its own numbers
        t0 = time.perf_counter()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        model.save_pretrained(str(out / "adapter"))
    total_seconds = time.perf_counter() - t_start
    summary = next((e for e in reversed(trainer.state.log_history) if "train_loss" in e), {})
    tokens = seen["tokens"]
    return {
        "tokens": tokens,
        "train_seconds": round(train_seconds, 4),
        "tokens_per_second": round(tokens / train_seconds, 2) if train_seconds else 0.0,
        "steps": trainer.state.global_step,
        "steps_per_second": round(trainer.state.global_step / train_seconds, 3),
        "train_loss": summary.get("train_loss"),
        "total_seconds": round(total_seconds, 4),
        "precision": precision,
        "device": "cuda" if cuda else "cpu",
    }


def precision_of(p: Any, cuda: bool) -> tuple[str, dict[str, Any]]:
    """The precision to train in ("auto" resolved) and from_pretrained's keyword arguments
    (dtype, and the bitsandbytes quantization when `load_in` asks for it)."""
    import torch

    precision = p.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    load_kwargs: dict[str, Any] = {"dtype": dtype}
    if p.load_in != "none":
        from transformers import BitsAndBytesConfig

        compute = dtype if dtype != torch.float32 else torch.float16
        load_kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
            if p.load_in == "4bit"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        load_kwargs["device_map"] = {"": 0}
    return precision, load_kwargs


def lora_model(
    base_model_dir: str | os.PathLike[str], p: Any, load_kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    """The base model and tokenizer from the folder, the model wrapped in a LoRA of `p`."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_model_dir), **load_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if p.load_in != "none":
        model = prepare_model_for_kbit_training(model)
    warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
    model = get_peft_model(
        model,
        LoraConfig(
            r=p.r,
            lora_alpha=p.lora_alpha,
            target_modules=list(p.target_modules or ("q_proj", "v_proj")),
            lora_dropout=p.lora_dropout,
            bias=p.bias,
            task_type="CAUSAL_LM",
        ),
    )
    return model, tokenizer


def _tokenize(
    rows: Iterable[Mapping[str, Any]], tokenizer: Any, template: str, max_seq_length: int
) -> list[dict[str, list[int]]]:
    """Each row rendered with the template, plus EOS, cut to `max_seq_length` tokens."""
    from workers.data.canonical import render_template

    data = []
    for row in rows:
        ids = tokenizer(render_template(template, dict(row)))["input_ids"]
        ids = (ids + [tokenizer.eos_token_id])[:max_seq_length]
        data.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    return data


def training_arguments(p: Any, output_dir: Path, precision: str, cuda: bool) -> Any:
    """TrainingArguments from the fine-tune parameters, quiet (the bench prints its own)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=p.per_device_train_batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps,
        warmup_steps=p.warmup_steps,
        num_train_epochs=p.num_train_epochs,
        max_steps=p.max_steps,
        logging_steps=p.logging_steps,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler_type,
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm,
        save_steps=p.save_steps,
        seed=p.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to="none",
        disable_tqdm=True,
        log_level="warning",
        remove_unused_columns=False,
        dataloader_pin_memory=cuda,
    )


def demo_rows(n: int = 64) -> list[dict[str, str]]:
    """A small repetitive QA set (the fine-tune tests' kind of data)."""
    return [
        {
            "question": f"{i % 8} 加 {i // 8} 等于几?",
            "answer": f"{i % 8} 加 {i // 8} 等于 {i % 8 + i // 8}。",
        }
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--model", help="a base model folder (default: build the tiny Llama)")
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    params = {
        "max_steps": opts.steps,
        "warmup_steps": 4,
        "logging_steps": 5,
        "save_steps": 20,
        "gradient_accumulation_steps": 1,
        "max_seq_length": 128,
        "learning_rate": 1e-3,
    }
    with tempfile.TemporaryDirectory(prefix="bare-base-") as tmp:
        model_dir = opts.model
        if model_dir is None:
            from workers.ml.models import build_tiny_llama

            model_dir = build_tiny_llama(Path(tmp) / "tiny-llama")
        result = bare_run(model_dir, demo_rows(opts.rows), params)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
