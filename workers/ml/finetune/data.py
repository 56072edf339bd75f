"""Rows to training examples: template rendering, loss masking, tokenizing, eval split, padding
or packing.

Loss masking: when the template ends with a placeholder (`### 回答:{answer}`), the loss is on that
last field (and the EOS token) only; the prompt part is masked. Otherwise, or with
`loss_on="all"`, the loss is on the whole text. An EOS token is appended to every example so the
model learns to stop.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.common.timing import timed
from workers.data.canonical import render_template, template_fields
from workers.ml.reporting import JobFailed

__all__ = [
    "IGNORE_INDEX",
    "EncodedRows",
    "ListDataset",
    "PackCollator",
    "PadCollator",
    "answer_field",
    "encode_rows",
    "split_eval",
]

IGNORE_INDEX = -100


def answer_field(template: str, loss_on: str = "auto") -> str | None:
    """The field whose text carries the loss (prompt masked), or None for loss on all text."""
    if loss_on == "all":
        return None
    names = template_fields(template)
    last = names[-1] if names else None
    ok = False
    if last is not None:
        probe = {name: f"\ue000{i}\ue000" for i, name in enumerate(names)}
        marked = render_template(template, probe)
        mark = probe[last]
        if marked.count(mark) == 1:
            head, tail = marked.split(mark)
            ok = bool(head.strip()) and not tail.strip()
    if ok:
        return last
    if loss_on == "answer":
        raise JobFailed(
            "loss_on=answer needs a template that ends with the answer placeholder, such as "
            "'### 问题:{question}\\n### 回答:{answer}'"
        )
    return None


@dataclass
class EncodedRows:
    """Encoded examples, and how many rows were skipped (nothing to learn) or cut short."""

    examples: list[dict[str, list[int]]]
    skipped: int
    truncated: int


@timed("finetune.encode_rows")
def encode_rows(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    template: str,
    *,
    max_seq_length: int,
    loss_on: str = "auto",
) -> EncodedRows:
    """Render, tokenize and label rows: input_ids, attention_mask, labels (-100 where masked)."""
    target = answer_field(template, loss_on)
    fast = bool(getattr(tokenizer, "is_fast", False))
    eos = tokenizer.eos_token_id
    examples, skipped, truncated = [], 0, 0
    for row in rows:
        text = render_template(template, dict(row))
        boundary = 0
        if target is not None and isinstance(row.get(target), str):
            head = render_template(template, {**row, target: ""})
            if text.startswith(head) and head.strip():
                boundary = len(head)
        if fast:
            enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            labels = [
                tok if end > boundary else IGNORE_INDEX
                for tok, (_, end) in zip(ids, enc["offset_mapping"], strict=True)
            ]
        else:
            ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
            n_head = len(tokenizer(text[:boundary], add_special_tokens=True)["input_ids"])
            labels = [IGNORE_INDEX] * min(n_head, len(ids)) + ids[n_head:]
        if boundary == 0:
            labels = list(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
            labels.append(eos)
        if len(ids) > max_seq_length:
            truncated += 1
            ids, labels = ids[:max_seq_length], labels[:max_seq_length]
        if all(label == IGNORE_INDEX for label in labels):
            skipped += 1
            continue
        examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return EncodedRows(examples, skipped, truncated)


def split_eval(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out round(fraction x n) rows (at least 1 when fraction > 0 and n >= 2), seeded."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []
    n_eval = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return (
        [r for i, r in enumerate(rows) if i not in held],
        [r for i, r in enumerate(rows) if i in held],
    )


class ListDataset:
    """A list of encoded examples as the map-style dataset Trainer expects."""

    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


class PadCollator:
    """Right-pads a batch; counts the real (non-pad) tokens it hands out, for tokens/s."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids, mask, labels = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_token_id] * pad)
            mask.append(f["attention_mask"] + [0] * pad)
            labels.append(f["labels"] + [IGNORE_INDEX] * pad)
            self.tokens += len(f["input_ids"])
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


class PackCollator:
    """Packs a batch into ONE row: the examples end to end, no padding, no attention mask.

    position_ids restart at 0 for each example, which is how transformers (masking_utils:
    find_packed_sequence_indices) tells the examples apart when attention_mask is None: it builds
    a block-diagonal causal mask for sdpa/eager and varlen boundaries for flash-attention, so no
    token attends across an example boundary (tests/ml/test_packing.py checks both). The label of
    each example's first token is masked: it would otherwise be predicted from the end of the
    previous example (unpacked, the first label is never a target either, the loss shifts labels).
    That needs a model run without a KV cache (train.py sets use_cache=False): with one,
    transformers does not look for packed sequences. Counts real tokens, as PadCollator does.
    """

    def __init__(self) -> None:
        self.tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        positions: list[int] = []
        labels: list[int] = []
        for f in features:
            n = len(f["input_ids"])
            ids += f["input_ids"]
            positions += range(n)
            labels += [IGNORE_INDEX, *f["labels"][1:]]
            self.tokens += n
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
        }
