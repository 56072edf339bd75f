"""LoRAs for one generation: read from safetensors (pickles refused), loaded as diffusers
adapters with their weights, and unloaded afterwards whatever happens."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from workers.imaging.pipeline.loading import ModelRefused, aligned_tensor, refuse_pickle


def read_lora(path: str) -> dict[str, Any]:
    """A LoRA's tensors from a .safetensors file (or the one inside a folder); pickle refused."""
    from safetensors.torch import load_file

    source = Path(path).expanduser()
    refuse_pickle(source)
    if source.is_dir():
        files = sorted(source.glob("*.safetensors"))
        if not files:
            raise ModelRefused(f"{source}: no .safetensors LoRA weights in this folder")
        preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
        source = (preferred or files)[0]
    if source.suffix.lower() != ".safetensors" or not source.is_file():
        raise ModelRefused(f"{source}: a LoRA must be a .safetensors file")
    return {name: aligned_tensor(tensor) for name, tensor in load_file(str(source)).items()}


@contextlib.contextmanager
def loras_applied(pipe: Any, loras: Sequence[tuple[str, float]]) -> Iterator[None]:
    """Load the LoRAs as adapters with their weights; unload them afterwards, whatever happens."""
    if not loras:
        yield
        return
    names: list[str] = []
    try:
        for path, _weight in loras:
            name = f"atelier_{uuid.uuid4().hex[:10]}"
            pipe.load_lora_weights(read_lora(path), adapter_name=name)
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[w for _, w in loras])
        yield
    finally:
        if names:
            with contextlib.suppress(Exception):
                pipe.delete_adapters(names)
            remaining = {}
            with contextlib.suppress(Exception):
                remaining = {k: v for k, v in pipe.get_list_adapters().items() if v}
            if not remaining:  # drop the LoRA wrappers: the modules are as they were loaded
                pipe.unload_lora_weights()
