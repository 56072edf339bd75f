"""The model card (README.md) written beside an adapter or a merged model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.common.timing import timed

__all__ = ["lineage_lines", "write_model_card"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def lineage_lines(lineage: Mapping[str, Any]) -> list[str]:
    """The card's Lineage section from an adapter's lineage dict (apps/finetunes/lineage.py):
    base model, dataset versions, parent adapter, reviewers' decisions, job."""
    base = lineage.get("base_model") or {}
    lines = [f"- **base model**: {_fmt(base.get('name')) if isinstance(base, Mapping) else '—'}"]
    for version in lineage.get("dataset_versions") or []:
        if not isinstance(version, Mapping):
            continue
        sha = str(version.get("sha256") or "")
        lines.append(
            f"- **dataset version**: {_fmt(version.get('dataset'))} v{_fmt(version.get('number'))}"
            f" ({_fmt(version.get('rows'))} rows, {_fmt(version.get('schema'))}"
            f"{f', sha256 {sha}' if sha else ''})"
        )
    parent = lineage.get("parent")
    if isinstance(parent, Mapping) and parent:
        lines.append(
            f"- **parent adapter**: {_fmt(parent.get('name'))} "
            f"(#{_fmt(parent.get('id'))}, {_fmt(parent.get('kind'))})"
        )
    else:
        lines.append("- **parent adapter**: none (trained from the base model)")
    review = lineage.get("review")
    if isinstance(review, Mapping) and review:
        outputs = review.get("outputs")
        count = len(outputs) if isinstance(outputs, list | tuple) else outputs
        lines.append(
            f"- **review decisions**: {_fmt(review.get('approved'))} approved, "
            f"{_fmt(review.get('rejected'))} rejected, over {_fmt(count)} outputs"
            f" (newest decision {_fmt(review.get('decided_until'))})"
        )
    if lineage.get("job") is not None:
        lines.append(f"- **job**: #{_fmt(lineage.get('job'))}")
    return lines


@timed("finetune.model_card")
def write_model_card(
    path: Path,
    *,
    title: str,
    card_info: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    details: Mapping[str, Any],
    template: str | None,
    kind: str,
    method: str = "sft",
    base: str | None = None,
) -> Path:
    """A Hugging Face style README.md: front matter, provenance, parameters, metrics, usage.

    `method`: how the adapter was trained (sft, dpo, grpo, reward): its tag; a reward model's
    usage loads a sequence classifier (one score) instead of a causal LM. `base`: the base
    model's portable name, as adapter_config.json names it (workers/ml/finetune/portable.py);
    the usage section says to pass that model."""
    head = "AutoModelForSequenceClassification" if method == "reward" else "AutoModelForCausalLM"
    head_args = ", num_labels=1" if method == "reward" else ""
    base = base or str(card_info.get("base_model", ""))
    lines = [
        "---",
        f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
        f"base_model: {json.dumps(base, ensure_ascii=False)}",
        f"tags: [lora, {method}, atelier]",
        "---",
        "",
        f"# {title}",
        "",
        "Produced by Atelier (transformers Trainer + peft LoRA).",
        "",
        "## Provenance",
        "",
    ]
    for key, value in card_info.items():
        if key == "lineage":
            continue  # its own section below
        lines.append(f"- **{key.replace('_', ' ')}**: {_fmt(value)}")
    lineage = card_info.get("lineage")
    if isinstance(lineage, Mapping) and lineage:
        lines += ["", "## Lineage", "", *lineage_lines(lineage)]
    if template:
        lines += ["", "Prompt template:", "", "```text", template, "```"]
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in config.items()]
    if details:
        lines += ["", "## Run", "", "| item | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in details.items()]
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
    if kind == "adapter":
        lines += _usage(base, head, head_args)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _usage(base: str, head: str, head_args: str) -> list[str]:
    """The card's Use section: which base model to pass, and the code that loads the adapter."""
    quoted = json.dumps(base, ensure_ascii=False)
    return [
        "",
        "## Use",
        "",
        f"Load this adapter onto its base model, **{base}**: pass that model (its Hub id, or the "
        "folder where you keep it) as the base. `adapter_config.json` names the base the same "
        "way (`base_model_name_or_path`), never by a folder of the machine that trained it, so "
        "`AutoPeftModel` finds it when the name is a Hub id or a folder beside your script.",
        "",
        "```python",
        "from peft import PeftModel",
        f"from transformers import {head}, AutoTokenizer",
        "",
        f"BASE = {quoted}  # or the folder holding this model",
        f"base = {head}.from_pretrained(BASE{head_args})",
        "tokenizer = AutoTokenizer.from_pretrained(BASE)",
        'model = PeftModel.from_pretrained(base, "ADAPTER_DIR")',
        "```",
    ]
