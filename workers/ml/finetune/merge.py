"""Merge a LoRA adapter into its base model and export a full safetensors folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.data.limits import human_bytes
from workers.ml.finetune.base_model import inspect_base_model, load_base_model, quiet_peft
from workers.ml.finetune.card import write_model_card
from workers.ml.finetune.files import CARD_NAME, replace_dir
from workers.ml.reporting import JobFailed, NullReporter, Reporter

__all__ = ["merge_and_export"]

DTYPES = ("float32", "bfloat16", "float16")


def merge_and_export(
    base_model_dir: str | os.PathLike[str],
    adapter_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    card_info: Mapping[str, Any] | None = None,
    dtype: str = "auto",
    reporter: Reporter | None = None,
) -> Path:
    """Merge a LoRA adapter into its base model; write a full safetensors folder + tokenizer + card.

    dtype: auto (the base model's saved dtype), float32, bfloat16 or float16. `reporter` hears
    each stage with its sizes: a merge runs for a minute or more with nothing else to show.
    """
    import torch
    from peft import PeftModel

    base_model_dir, adapter_dir, out_dir = Path(base_model_dir), Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise JobFailed(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    if dtype == "auto":  # merge in fp32, save in the base model's own dtype
        saved = str(inspect_base_model(base_model_dir).dtype).removeprefix("torch.")
        dtype = saved if saved in DTYPES else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    say = (reporter or NullReporter()).log
    say(f"loading the base model {base_model_dir.name} in float32 on the CPU")
    base, tokenizer = load_base_model(
        str(base_model_dir), precision="fp32", load_in="none", device="cpu"
    )
    say(f"loaded {_count(base):,} parameters; applying the adapter {adapter_dir.name}")
    quiet_peft()
    peft_model = PeftModel.from_pretrained(base, str(adapter_dir))
    say(f"adapter: {_count(peft_model, lora_only=True):,} LoRA parameters; merging them in")
    merged = peft_model.merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    say(f"saving the merged model as {dtype} safetensors")
    merged.config.use_cache = True
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        adapter_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
        info = {"base_model": base_model_dir.name, "adapter": adapter_dir.name, **(card_info or {})}
        write_model_card(
            tmp / CARD_NAME,
            title=f"{info['base_model']} merged with a LoRA adapter",
            card_info=info,
            config={
                k: adapter_cfg.get(k)
                for k in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias")
            },
            metrics={},
            details={"dtype": str(merged.dtype).removeprefix("torch.")},
            template=None,
            kind="merged",
        )
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weights = sorted(out_dir.glob("*.safetensors"))
    say(
        f"wrote {', '.join(f'{w.name} ({human_bytes(w.stat().st_size)})' for w in weights)}; "
        f"folder {human_bytes(folder_size(out_dir))}"
    )
    return out_dir


def _count(model: Any, *, lora_only: bool = False) -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if not lora_only or "lora_" in name
    )


def folder_size(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
