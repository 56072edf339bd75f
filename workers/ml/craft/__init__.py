"""Text model craft: distillation, quantization and a counterfactual bias probe (issue 18).

Pure ML code like workers.ml.finetune (no Django): each entry point takes a config dataclass,
model folders, rows and a Reporter, writes into its run folder and returns a result.

    config.py       DistillConfig, QuantizeConfig, BiasProbeConfig: every knob with its default,
                    bounds and help (the schema the platform's forms and API are derived from)
    distill.py      distill(): teacher -> smaller student, KL with temperature + cross-entropy,
                    Trainer checkpoints with COMPLETE markers, resume, cooperative stop
    student.py      a student built from the teacher by keeping every k-th layer
    quantize.py     quantize(): int8 (weight-only or torch.ao dynamic) on any machine,
                    bitsandbytes 8-/4-bit on CUDA; size, tokens/s, perplexity, agreement report
    int8.py         the int8 folder format (safetensors + quantization.json) and its loader
    bias.py         run_bias_probe(): log-likelihood, refusal and sentiment gaps across swapped
                    groups, for a base model and its adapters
    lexicon.py      refusal patterns and a small zh/en sentiment lexicon
    probes/         the shipped counterfactual prompt sets (JSONL, format in probes/README.md)
    evaluation.py   perplexity, KL, top-1 agreement, tokens/s, model loading with an adapter
    runfolder.py    resume-or-start-over of a run folder; the model card

torch and transformers are imported only inside the functions that need them.
"""

from __future__ import annotations

from workers.ml.craft.config import (
    QUANT_METHODS,
    BiasProbeConfig,
    ConfigError,
    DistillConfig,
    QuantizeConfig,
    describe,
)

__all__ = [
    "QUANT_METHODS",
    "BiasProbeConfig",
    "ConfigError",
    "DistillConfig",
    "QuantizeConfig",
    "describe",
]
