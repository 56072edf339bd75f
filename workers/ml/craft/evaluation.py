"""What the craft jobs measure on a model: perplexity, KL to a teacher, top-1 agreement,
tokens/s, size on disk; and loading a text model with an optional LoRA adapter merged in."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.finetune.data import IGNORE_INDEX
from workers.ml.reporting import JobFailed

__all__ = [
    "folder_bytes",
    "held_out_kl",
    "load_text_model",
    "perplexity",
    "same_tokenizer",
    "tokens_per_second",
    "agreement",
    "top1_predictions",
]

Example = dict[str, list[int]]


@timed("craft.load_text_model")
def load_text_model(
    model_dir: str | os.PathLike[str],
    *,
    adapter_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
) -> tuple[Any, Any]:
    """(model, tokenizer) through models.load_causal_lm (safetensors only, no remote code), with
    a PEFT LoRA adapter merged in when `adapter_dir` is given."""
    from workers.ml.models import DeviceUnavailable, ModelRefused, load_causal_lm

    try:
        model, tokenizer = load_causal_lm(model_dir, device=device, dtype=dtype)
    except (ModelRefused, DeviceUnavailable) as exc:
        raise JobFailed(str(exc)) from exc
    if adapter_dir is not None:
        from peft import PeftModel

        adapter = Path(adapter_dir)
        if not (adapter / "adapter_model.safetensors").is_file():
            raise JobFailed(f"{adapter.name}: not a PEFT adapter with safetensors weights")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    return model, tokenizer


def same_tokenizer(a: Any, b: Any) -> bool:
    """True when two tokenizers map every token to the same id (soft labels line up)."""
    return bool(a.get_vocab() == b.get_vocab())


def batches(examples: Sequence[Example], size: int, pad_id: int) -> Iterator[dict[str, Any]]:
    """Right-padded tensors (input_ids, attention_mask, labels) of `size` examples at a time."""
    import torch

    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        width = max(len(e["input_ids"]) for e in chunk)
        ids, mask, labels = [], [], []
        for e in chunk:
            pad = width - len(e["input_ids"])
            ids.append(e["input_ids"] + [pad_id] * pad)
            mask.append(e["attention_mask"] + [0] * pad)
            labels.append(e["labels"] + [IGNORE_INDEX] * pad)
        yield {
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor(labels),
        }


def _device_of(model: Any) -> Any:
    import torch

    try:
        return next(p.device for p in model.parameters())
    except StopIteration:  # a fully quantized module list keeps its weights in buffers
        return torch.device("cpu")


def _shifted(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(logits at positions that predict a labelled token, those labels), as float32."""
    device = _device_of(model)
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits[:, :-1]
    labels = batch["labels"][:, 1:].to(logits.device)
    keep = labels != IGNORE_INDEX
    return logits[keep].float(), labels[keep]


@timed("craft.perplexity")
def perplexity(
    model: Any, examples: Sequence[Example], *, pad_id: int, batch_size: int = 8
) -> float:
    """exp(mean NLL) over the labelled tokens of `examples`; inf if it overflows."""
    import torch

    if not examples:
        raise JobFailed("no examples to measure perplexity on")
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in batches(examples, batch_size, pad_id):
            logits, labels = _shifted(model, batch)
            total += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            count += int(labels.numel())
    mean = total / max(count, 1)
    return math.exp(mean) if mean < 700 else float("inf")


@timed("craft.held_out_kl")
def held_out_kl(
    teacher: Any,
    student: Any,
    examples: Sequence[Example],
    *,
    pad_id: int,
    temperature: float = 1.0,
    batch_size: int = 8,
) -> float:
    """Mean per-token KL(teacher || student) over the labelled tokens (nats)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in batches(examples, batch_size, pad_id):
            t_logits, labels = _shifted(teacher, batch)
            s_logits, _ = _shifted(student, batch)
            t = F.log_softmax(t_logits / temperature, dim=-1)
            s = F.log_softmax(s_logits.to(t.device) / temperature, dim=-1)
            total += float(F.kl_div(s, t, log_target=True, reduction="sum"))
            count += int(labels.numel())
    return total / max(count, 1)


@timed("craft.top1_predictions")
def top1_predictions(
    model: Any, examples: Sequence[Example], *, pad_id: int, batch_size: int = 8
) -> list[Any]:
    """The model's most likely next token at each labelled position, batch by batch (kept to
    compare a model with its quantized self without holding both in memory)."""
    import torch

    out = []
    with torch.inference_mode():
        for batch in batches(examples, batch_size, pad_id):
            logits, _ = _shifted(model, batch)
            out.append(logits.argmax(-1).cpu())
    return out


def agreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Share of positions where two top1_predictions() lists name the same token."""
    same = sum(int((x == y).sum()) for x, y in zip(a, b, strict=True))
    return same / max(sum(int(x.numel()) for x in a), 1)


@timed("craft.tokens_per_second")
def tokens_per_second(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], *, new_tokens: int
) -> float:
    """Greedy generation of exactly `new_tokens` per prompt (after one warm-up): new tokens per
    second of wall time, one prompt at a time (what a playground user waits for)."""
    import torch

    if not prompts:
        return 0.0
    device = _device_of(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    context = getattr(model.config, "max_position_embeddings", None) or 10**9
    kwargs = {"do_sample": False, "pad_token_id": pad, "num_beams": 1}

    def run(ids: list[int], n: int) -> None:
        ids = ids[: max(1, context - n - 1)]
        x = torch.tensor([ids], device=device)
        model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n,
            min_new_tokens=n,
            **kwargs,
        )

    with torch.inference_mode():
        run(prompts[0], min(4, new_tokens))
        started = time.perf_counter()
        for ids in prompts:
            run(ids, new_tokens)
        seconds = time.perf_counter() - started
    return new_tokens * len(prompts) / seconds if seconds > 0 else 0.0


def prompt_ids(examples: Sequence[Example], n: int, max_tokens: int = 64) -> list[list[int]]:
    """The prompt part (tokens before the first labelled one) of up to `n` examples, at most
    `max_tokens` long; the first tokens of the text when the loss is on all of it."""
    out = []
    for e in examples[:n]:
        first = next((i for i, lab in enumerate(e["labels"]) if lab != IGNORE_INDEX), 0)
        ids = e["input_ids"][: first if first > 0 else min(8, len(e["input_ids"]))]
        out.append(ids[-max_tokens:] or e["input_ids"][:1])
    return out


def folder_bytes(folder: str | os.PathLike[str], pattern: str = "*.safetensors") -> int:
    """Bytes of the weight files in `folder` (what quantization shrinks)."""
    return sum(p.stat().st_size for p in Path(folder).glob(pattern) if p.is_file())
