"""A student built from its teacher by keeping every k-th transformer layer (DistilBERT's
recipe): same tokenizer, embeddings and head, half (or a k-th) of the depth, initialised from the
teacher's own weights so distillation starts close."""

from __future__ import annotations

import copy
import re
from typing import Any

from workers.ml.reporting import JobFailed

__all__ = ["kept_layers", "shrink_by_layers"]

# The decoder block lists of the architectures transformers ships: model.layers.N (Llama, Qwen,
# Mistral, Gemma, ...), transformer.h.N (GPT-2, Falcon), gpt_neox.layers.N, model.decoder.layers.N.
_LAYER_KEY = re.compile(r"^(.*?\.(?:layers|h|blocks)\.)(\d+)(\..+)$")
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def kept_layers(num_layers: int, keep_every: int) -> list[int]:
    """Layers 0, k, 2k, ... of `num_layers` (at least one)."""
    return list(range(0, num_layers, max(1, keep_every))) or [0]


def shrink_by_layers(teacher: Any, keep_every: int) -> tuple[Any, dict[str, Any]]:
    """(a new model with every `keep_every`-th layer of `teacher`, details). The teacher is not
    changed; the student is float32 on the CPU, weights copied from the kept layers."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(teacher.config)
    key = next((k for k in _LAYER_COUNT_KEYS if isinstance(getattr(config, k, None), int)), None)
    if key is None:
        raise JobFailed(
            f"{type(teacher).__name__}: cannot tell its number of layers; choose a registered "
            "student model instead"
        )
    total = getattr(config, key)
    kept = kept_layers(total, keep_every)
    if len(kept) == total:
        raise JobFailed(
            f"keeping every {keep_every}. layer of {total} keeps them all; the student would be "
            "the teacher. Set keep_every to 2 or more."
        )
    setattr(config, key, len(kept))
    for attr in ("layer_types", "sliding_window_pattern_layers"):  # per-layer lists in v5 configs
        value = getattr(config, attr, None)
        if isinstance(value, list) and len(value) == total:
            setattr(config, attr, [value[i] for i in kept])
    renumber = {old: new for new, old in enumerate(kept)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        match = _LAYER_KEY.match(name)
        if match is None:
            state[name] = tensor.detach().to("cpu", torch.float32).clone()
            continue
        old = int(match.group(2))
        if old in renumber:
            new_name = f"{match.group(1)}{renumber[old]}{match.group(3)}"
            state[new_name] = tensor.detach().to("cpu", torch.float32).clone()
    config.dtype = "float32"
    with torch.device("cpu"):
        student = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = student.load_state_dict(state, strict=False)
    # Tied heads have no own entry; anything else missing would be random weights.
    missing = [
        m for m in missing if not (m.endswith("lm_head.weight") and config.tie_word_embeddings)
    ]
    if missing or unexpected:
        raise JobFailed(
            f"cannot build the student from {type(teacher).__name__}'s layers "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); choose a registered student"
        )
    if getattr(config, "tie_word_embeddings", False):
        student.tie_weights()
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student, {"teacher_layers": total, "student_layers": len(kept), "kept_layers": kept}
