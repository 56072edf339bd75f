"""Default LoRA target modules: by architecture, checked against (or found in) the weight names."""

from __future__ import annotations

__all__ = ["LORA_TARGET_CANDIDATES", "LORA_TARGETS", "detect_lora_targets"]

# Default LoRA targets by config.model_type (attention query/value projections).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "phi",
            "opt",
            "gptj",
            "starcoder2",
            "olmo",
            "olmo2",
            "stablelm",
            "cohere",
            "granite",
            "smollm3",
        ),
        ("q_proj", "v_proj"),
    ),
    "phi3": ("qkv_proj",),
    "gpt2": ("c_attn",),
    "gpt_bigcode": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "falcon": ("query_key_value",),
    "bloom": ("query_key_value",),
    "mpt": ("Wqkv",),
    "t5": ("q", "v"),
}
# Fallback: the first group whose module names all appear among the weight keys.
LORA_TARGET_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("q_proj", "v_proj"),
    ("qkv_proj",),
    ("query_key_value",),
    ("c_attn",),
    ("Wqkv",),
    ("query", "value"),
    ("q", "v"),
)


def detect_lora_targets(model_type: str, weight_keys: list[str] | tuple[str, ...]) -> tuple:
    """Default LoRA target modules: by architecture, checked against (or found in) the keys."""
    modules = {
        key.rsplit(".", 2)[-2]
        for key in weight_keys
        if key.count(".") >= 1 and key.endswith("weight")
    }
    known = LORA_TARGETS.get(model_type)
    if known and (not modules or all(m in modules for m in known)):
        return known
    for group in LORA_TARGET_CANDIDATES:
        if all(m in modules for m in group):
            return group
    return known or ()
