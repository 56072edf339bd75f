"""The model card (README.md) written beside an adapter or a merged model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.common.timing import timed

__all__ = ["write_model_card"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


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
) -> Path:
    """A Hugging Face style README.md: front matter, provenance, parameters, metrics, usage."""
    base = str(card_info.get("base_model", ""))
    lines = [
        "---",
        f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
        f"base_model: {json.dumps(base, ensure_ascii=False)}",
        "tags: [lora, sft, atelier]",
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
        lines.append(f"- **{key.replace('_', ' ')}**: {_fmt(value)}")
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
        lines += [
            "",
            "## Use",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            'base = AutoModelForCausalLM.from_pretrained("BASE_MODEL_DIR")',
            'tokenizer = AutoTokenizer.from_pretrained("BASE_MODEL_DIR")',
            'model = PeftModel.from_pretrained(base, "ADAPTER_DIR")',
            "```",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
