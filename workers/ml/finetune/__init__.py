"""LoRA supervised fine-tuning of causal language models: transformers `Trainer` + peft.

`train_lora()` takes a config, a base model folder, canonical rows and a template, and leaves in
`output_dir`:

    checkpoints/checkpoint-N/   Trainer's own checkpoints (adapter, optimizer, scheduler, RNG,
                                trainer state), each counted only once its COMPLETE marker
                                (file hashes, written last) is there
    adapter/                    the final adapter in PEFT format + README.md model card
    adapter.zip                 the same folder, zipped, for download
    result.json                 what train_lora() returned (a finished run is not trained again)

It reports live loss, learning rate, grad norm and tokens/s through a Reporter, eval loss and
perplexity before and after training, resumes from the newest complete checkpoint after a crash
(same data order, RNG, optimizer and scheduler: on CPU an interrupted run ends with the same adapter
as an uninterrupted one), stops at the next optimizer step when the Reporter asks (saving a
checkpoint first), and trains on N devices in N processes (DDP) when `num_gpus > 1`.

    config.py       LoraFinetuneConfig: every knob with its default, bounds and help (the schema
                    the platform's form and API are derived from); planned_steps
    run.py          train_lora: checks, resume or start over, single process or DDP, artifacts
    train.py        one training process (the only one, or one DDP rank), step by step
    ddp.py          the DDP launcher and rank entry point (python -m workers.ml.finetune.ddp)
    data.py         rows -> encoded examples (loss masking), eval split, padding collator
    callbacks.py    the TrainerCallbacks (checkpoint marker, loss windows, tokens/s, stop)
    checkpoints.py  Trainer checkpoints with a COMPLETE marker: listing, marking, sweeping
    ranks.py        agreement across DDP ranks (barrier, any, sum)
    base_model.py   the base model folder: refusal, loading, LoRA targets, memory estimate
    runtime.py      what this machine can do: precision, 8-/4-bit, devices
    card.py         the model card (adapter and merged model)
    merge.py        merge_and_export: the adapter merged into its base model
    files.py        the run folder's layout; atomic JSON, folder and zip writes

Nothing here imports Django; torch and transformers are imported only when a function needs them.
"""

from __future__ import annotations

from workers.ml.finetune.base_model import default_target_modules, estimate_memory
from workers.ml.finetune.checkpoints import complete_checkpoints
from workers.ml.finetune.config import ConfigError, LoraFinetuneConfig, planned_steps
from workers.ml.finetune.data import IGNORE_INDEX, encode_rows
from workers.ml.finetune.files import ADAPTER_DIR, CHECKPOINTS_DIR
from workers.ml.finetune.merge import merge_and_export
from workers.ml.finetune.run import FinetuneResult, train_lora
from workers.ml.finetune.runtime import resolve_precision
from workers.ml.finetune.train import mean_logged_loss

__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINTS_DIR",
    "IGNORE_INDEX",
    "ConfigError",
    "FinetuneResult",
    "LoraFinetuneConfig",
    "complete_checkpoints",
    "default_target_modules",
    "encode_rows",
    "estimate_memory",
    "mean_logged_loss",
    "merge_and_export",
    "planned_steps",
    "resolve_precision",
    "train_lora",
]
