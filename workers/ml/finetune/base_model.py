"""The base model folder: refusal of unsafe folders, loading, LoRA targets, memory estimate."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.finetune.config import LoraFinetuneConfig
from workers.ml.reporting import JobFailed

__all__ = [
    "default_target_modules",
    "estimate_memory",
    "inspect_base_model",
    "load_base_model",
    "quiet_peft",
]


def inspect_base_model(base_model_dir: str | os.PathLike[str]) -> Any:
    """models.inspect_folder, with a refused folder (pickle, remote code) as JobFailed."""
    from workers.ml.models import ModelRefused, inspect_folder

    try:
        return inspect_folder(base_model_dir)
    except ModelRefused as exc:
        raise JobFailed(str(exc)) from exc


@timed("finetune.load_model")
def load_base_model(
    base_model_dir: str, *, precision: str, load_in: str, device: str
) -> tuple[Any, Any]:
    """(model, tokenizer) through models.load_causal_lm: safetensors only, no remote code."""
    from workers.ml.models import DeviceUnavailable, ModelRefused, load_causal_lm

    try:
        return load_causal_lm(
            base_model_dir,
            device=device,
            dtype=precision,
            quantization=None if load_in == "none" else load_in,
        )
    except (ModelRefused, DeviceUnavailable) as exc:
        raise JobFailed(str(exc)) from exc


def quiet_peft() -> None:
    """Silence peft's warning about a property transformers v5 renamed."""
    # peft reads a property that transformers v5 renamed and warns on every model it wraps. A
    # global filter: catch_warnings is not thread-safe, and workers run jobs in threads.
    warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)


def default_target_modules(base_model_dir: str | os.PathLike[str], model: Any = None) -> tuple:
    """LoRA targets detected from the architecture (as the model registry shows them); failing
    that, every Linear layer of `model` but the output head."""
    found = tuple(inspect_base_model(base_model_dir).lora_target_modules)
    if found or model is None:
        if not found:
            raise JobFailed("no default LoRA target modules for this architecture; set them")
        return found
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name
    }
    if not names:
        raise JobFailed("the model has no Linear layers to adapt; set target_modules")
    return tuple(sorted(names))


def estimate_memory(base_model_dir: str | os.PathLike[str], config: LoraFinetuneConfig) -> dict:
    """A rough peak-memory estimate in GiB from config.json and the safetensors headers.

    weights (by load_in / precision) + LoRA params, grads and AdamW states (fp32) + activations
    (batch x seq x hidden x layers x ~34 bytes, the usual transformer rule of thumb, x2 for the
    attention scores at long sequences is left out) + logits (batch x seq x vocab x 4 bytes x 2).
    """
    cfg = json.loads((Path(base_model_dir) / "config.json").read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    hidden = int(cfg.get("hidden_size") or cfg.get("n_embd") or 0)
    layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    inter = int(cfg.get("intermediate_size") or 4 * hidden)
    vocab = int(cfg.get("vocab_size") or 0)
    heads = int(cfg.get("num_attention_heads") or 1)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or (hidden // heads if heads else 0))
    attn = hidden * head_dim * heads * 2 + hidden * head_dim * kv_heads * 2
    mlp = 3 * hidden * inter
    embed = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    try:  # exact, from the safetensors headers
        params = int(inspect_base_model(base_model_dir).parameters) or layers * (attn + mlp) + embed
    except JobFailed:
        params = layers * (attn + mlp) + embed
    bytes_per = {"4bit": 0.55, "8bit": 1.05}.get(config.load_in)
    if bytes_per is None:
        bytes_per = 4 if config.precision == "fp32" else 2
        if config.precision == "auto":
            bytes_per = 2  # on a GPU; a CPU run loads fp32 (twice this)
    # r x (in + out) per adapted Linear; the default targets of most decoders are q_proj, v_proj
    lora = layers * config.r * ((hidden + head_dim * heads) + (hidden + head_dim * kv_heads))
    batch, seq = config.per_device_train_batch_size, config.max_seq_length
    gib = 2**30
    out = {
        "parameters": params,
        "lora_parameters": lora,
        "weights_gib": params * bytes_per / gib,
        "lora_training_gib": lora * 16 / gib,
        "activations_gib": batch * seq * hidden * layers * 34 / gib,
        "logits_gib": batch * seq * vocab * 8 / gib,
    }
    out["total_gib"] = sum(v for k, v in out.items() if k.endswith("_gib"))
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}
