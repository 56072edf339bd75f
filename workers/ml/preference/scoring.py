"""Reading preferences off a model: how likely a causal LM finds each answer of a pair, and what
score a reward model gives a text.

    pair_logps(model, tokenizer, pairs)        [(log p(chosen | prompt), log p(rejected | prompt))]
    preference_accuracy(logps)                 share of pairs whose chosen answer is more likely
    load_reward_model(base_dir, adapter_dir)   a sequence classifier with its LoRA and score head
    score_texts(model, tokenizer, texts)       one float per text (higher: preferred)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from workers.common.timing import timed
from workers.ml.reporting import JobFailed

__all__ = [
    "encode_for_score",
    "load_reward_base",
    "load_reward_model",
    "pair_logps",
    "preference_accuracy",
    "score_texts",
]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def _answer_ids(tokenizer: Any, prompt: str, answer: str) -> tuple[list[int], int]:
    """(ids of prompt + answer + EOS, where the answer starts): the answer starts where the
    tokenized prompt and prompt+answer diverge, as trl splits them."""
    prompt_ids = _ids(tokenizer, prompt)
    full = _ids(tokenizer, prompt + answer)
    eos = tokenizer.eos_token_id
    if eos is not None and (not full or full[-1] != eos):
        full.append(eos)
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    return full, max(start, 1)


@timed("preference.pair_logps")
def pair_logps(
    model: Any, tokenizer: Any, pairs: Sequence[Mapping[str, str]], *, batch_size: int = 8
) -> list[tuple[float, float]]:
    """The summed log-probability of each pair's chosen and rejected answer (with EOS) after its
    prompt, under `model` as it is (a PeftModel with its adapter on, or a plain model)."""
    import torch

    seqs = []
    for pair in pairs:
        seqs.append(_answer_ids(tokenizer, pair["prompt"], pair["chosen"]))
        seqs.append(_answer_ids(tokenizer, pair["prompt"], pair["rejected"]))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    sums: list[float] = []
    try:
        with torch.no_grad():
            for i in range(0, len(seqs), batch_size):
                chunk = seqs[i : i + batch_size]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.tensor([s + [pad] * (width - len(s)) for s, _ in chunk], device=device)
                mask = torch.tensor(
                    [[1] * len(s) + [0] * (width - len(s)) for s, _ in chunk], device=device
                )
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                token_logp = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                for row, (seq, start) in enumerate(chunk):
                    sums.append(float(token_logp[row, start - 1 : len(seq) - 1].sum()))
    finally:
        model.train(was_training)
    return [(sums[i], sums[i + 1]) for i in range(0, len(sums), 2)]


def preference_accuracy(logps: Sequence[tuple[float, float]]) -> float:
    """The share of pairs whose chosen answer the model finds more likely than the rejected one."""
    if not logps:
        return 0.0
    return sum(1 for chosen, rejected in logps if chosen > rejected) / len(logps)


def encode_for_score(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """A text as a reward model reads it: tokens + EOS, cut to its last `max_length` tokens (the
    score is read at the last token, so the end of a long text is what must stay)."""
    ids = _ids(tokenizer, text)
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids[-max_length:]


def _quiet_head_report() -> Any:
    """trl's filter for transformers' report that the causal LM's head is unused and the score
    head is new (expected here); a plain context where trl lacks it."""
    import contextlib

    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:
        return contextlib.nullcontext()
    return suppress_seqcls_warning()


@timed("preference.load_reward_base")
def load_reward_base(
    base_model_dir: str | os.PathLike[str], *, precision: str, load_in: str, device: str
) -> tuple[Any, Any]:
    """(sequence classifier with one output and a new score head, tokenizer) from a validated
    local folder: safetensors only, no remote code. Seed first: the head is drawn at random."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workers.ml.finetune.base_model import inspect_base_model

    folder = inspect_base_model(base_model_dir).path
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    kwargs: dict[str, Any] = {
        "num_labels": 1,
        "trust_remote_code": False,
        "local_files_only": True,
        "use_safetensors": True,
        "dtype": dtype,
    }
    if load_in != "none":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
            if load_in == "4bit"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = {"": device}
    with _quiet_head_report():
        model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(
        folder, trust_remote_code=False, local_files_only=True
    )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise JobFailed(
            "the tokenizer has neither a pad nor an EOS token; a reward model needs one"
        )
    # The score is read at the last token that is not padding.
    model.config.pad_token_id = tokenizer.pad_token_id
    if load_in == "none":
        model.to(device)
    return model, tokenizer


@timed("preference.load_reward_model")
def load_reward_model(
    base_model_dir: str | os.PathLike[str],
    adapter_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    precision: str = "fp32",
) -> tuple[Any, Any]:
    """(reward model ready to score, tokenizer): the base as a sequence classifier with the
    adapter's LoRA and trained score head."""
    from peft import PeftModel

    model, tokenizer = load_reward_base(
        base_model_dir, precision=precision, load_in="none", device=device
    )
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    model.eval()
    return model, tokenizer


@timed("preference.score_texts")
def score_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int = 1024,
) -> list[float]:
    """The reward model's score of each text (higher: preferred)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            seqs = [encode_for_score(tokenizer, t, max_length) for t in texts[i : i + batch_size]]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
            mask = torch.tensor(
                [[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device
            )
            logits = model(input_ids=ids, attention_mask=mask).logits
            scores.extend(float(v) for v in logits.float().squeeze(-1).reshape(-1).tolist())
    return scores
