"""Preference rows to what trl trains on: checked pairs, prompts rendered the way the model is
prompted when it generates, cut to a token budget.

A row is {prompt, chosen, rejected} (a `preference` dataset version, e.g. the export of
reviewers' decisions). The prompt is rendered as the playground renders it for the same model
(workers.ml.textgen.build_prompt): the SFT template of the adapter a run starts from, else the
model's chat template, else the raw text; the answers follow it unchanged, as the model wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.ml.reporting import JobFailed

__all__ = [
    "PAIR_FIELDS",
    "RenderedPairs",
    "check_pairs",
    "datasets_quiet",
    "render_pairs",
    "render_text",
]

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def check_pairs(rows: Iterable[Mapping[str, Any]], *, what: str = "row") -> list[dict[str, str]]:
    """The rows as {prompt, chosen, rejected} strings; a missing or empty field is a JobFailed
    naming the row (1-based) and the field."""
    pairs = []
    for number, row in enumerate(rows, start=1):
        pair = {}
        for name in PAIR_FIELDS:
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                raise JobFailed(
                    f"{what} {number}: '{name}' is empty or missing; a preference pair needs a "
                    "prompt, a chosen and a rejected answer"
                )
            pair[name] = value
        pairs.append(pair)
    return pairs


@dataclass
class RenderedPairs:
    """Pairs with their prompts rendered, and how many prompts were cut to the token budget."""

    pairs: list[dict[str, str]]
    truncated: int


def _left_cut(text: str, tokenizer: Any, max_tokens: int) -> tuple[str, bool]:
    """The end of `text` that tokenizes to about its last `max_tokens` tokens (cut at a token's
    start, so no character is split)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text, False
    start = offsets[len(offsets) - max_tokens][0]
    return text[start:], True


def render_pairs(
    pairs: Iterable[Mapping[str, str]],
    tokenizer: Any,
    *,
    template: str | None = None,
    max_prompt_length: int | None = None,
) -> RenderedPairs:
    """Render each prompt (`template`: an SFT dataset template, cut where its answer starts;
    None: the chat template when the tokenizer has one, else the raw prompt) and keep its last
    `max_prompt_length` tokens."""
    from workers.ml.textgen import build_prompt

    out, truncated = [], 0
    for pair in pairs:
        prompt = build_prompt(
            tokenizer, pair["prompt"], template=template, use_chat_template=template is None
        )
        if max_prompt_length is not None:
            prompt, cut = _left_cut(prompt, tokenizer, max_prompt_length)
            truncated += int(cut)
        out.append({"prompt": prompt, "chosen": pair["chosen"], "rejected": pair["rejected"]})
    return RenderedPairs(out, truncated)


def render_text(tokenizer: Any, prompt: str, answer: str, template: str | None = None) -> str:
    """One prompt and answer as a reward model trained by train_reward reads them."""
    from workers.ml.textgen import build_prompt

    rendered = build_prompt(
        tokenizer, prompt, template=template, use_chat_template=template is None
    )
    return rendered + answer


def datasets_quiet() -> None:
    """No progress bars from `datasets` (trl maps the pairs through it): they would go to the
    worker's stderr on every run."""
    import datasets  # type: ignore[import-untyped]

    datasets.disable_progress_bars()
