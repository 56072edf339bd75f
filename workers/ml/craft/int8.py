"""The int8 model folder: what `craft.quantize` writes and how it is loaded back.

Every Linear layer (but an output head tied to the input embeddings, which stays shared and in
float) is stored as int8 weights with one float32 scale per output channel (symmetric, zero point
0); everything else keeps its float weights. Two runtimes read the same file:

- ``weight-only``: int8 weights, float activations (Int8Linear, any device; the same arithmetic
  as torchao's Int8WeightOnlyConfig, which measured the same quality). Close to the original:
  on SmolLM2-135M perplexity 21.2 -> 20.9, top-1 agreement 95% (bench/_craft_quant.py).
- ``dynamic``: torch.ao dynamic quantization (int8 activations too), CPU only. Fastest on the
  CPU, least accurate (SmolLM2-135M: perplexity 21.2 -> 94, top-1 agreement 28%).

Folder layout (safetensors only, no pickle):

    config.json, generation_config.json, tokenizer files   as the original model's
    model.int8.safetensors   <layer>.qweight (int8), <layer>.scale (float32), <layer>.bias and
                             the float tensors of the other modules
    quantization.json        {"format": "atelier-int8", "version": 1, "runtime": ..., "layers":
                             [...], "tied": {alias: name}, "source": {...}}

The weights file is deliberately not named model.safetensors: a loader that does not know the
format fails loudly (no model.safetensors) instead of building a model with random weights.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

from workers.ml.reporting import JobFailed

__all__ = [
    "FORMAT",
    "int8_linear_class",
    "MARKER",
    "RUNTIMES",
    "WEIGHTS",
    "is_int8_folder",
    "load_int8_folder",
    "quantize_linear_layers",
    "save_int8_folder",
]

FORMAT = "atelier-int8"
VERSION = 1
MARKER = "quantization.json"
WEIGHTS = "model.int8.safetensors"
RUNTIMES = ("weight-only", "dynamic")


@functools.cache
def int8_linear_class() -> type:
    """The Int8Linear module class (built on first use: importing this module imports no torch)."""
    import torch

    class Int8Linear(torch.nn.Module):
        """A Linear layer with int8 weights and per-output-channel scales (weight-only)."""

        qweight: torch.Tensor
        scale: torch.Tensor

        def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
            super().__init__()
            self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]
            self.register_buffer("qweight", qweight.contiguous())
            self.register_buffer("scale", scale.float().contiguous())
            self.bias = torch.nn.Parameter(bias, requires_grad=False) if bias is not None else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # x @ int8 weight (cast to x's dtype), then one scale per output column: torchao's
            # weight-only path. Measured on SmolLM2-135M (CPU, 1 thread, CPU time per decode
            # step): 31-45 ms against 55-58 ms in float32; torch._weight_int8pack_mm was slower
            # (96-108 ms, and 20x slower on a 64-token prompt).
            flat = x.reshape(-1, x.shape[-1])
            y = torch.mm(flat, self.qweight.t().to(x.dtype)) * self.scale.to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(x.dtype)
            return y.reshape(*x.shape[:-1], self.out_features)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    return Int8Linear


def _quantize_weight(weight: Any) -> tuple[Any, Any]:
    """(int8 weight, float32 per-row scale): symmetric, scale = max|w| / 127 per output channel."""
    import torch

    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.cpu(), scale.cpu()


def _runtime_module(runtime: str, qweight: Any, scale: Any, bias: Any) -> Any:
    import torch

    if runtime == "weight-only":
        return int8_linear_class()(qweight, scale, bias)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao quantization is deprecated for torchao
        module = DynamicLinear(
            qweight.shape[1], qweight.shape[0], bias_=bias is not None, dtype=torch.qint8
        )
        zero = torch.zeros(qweight.shape[0], dtype=torch.long)
        packed = torch._make_per_channel_quantized_tensor(qweight, scale.double(), zero, 0)
        module.set_weight_bias(packed, None if bias is None else bias.detach().float())
    return module


def _tied_head(model: Any) -> str | None:
    """The name of an output Linear that shares its weight with the input embeddings."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if out is None or inp is None or out.weight.data_ptr() != inp.weight.data_ptr():
        return None
    return next((name for name, module in model.named_modules() if module is out), None)


def _set_module(model: Any, name: str, module: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_linear_layers(model: Any, runtime: str = "weight-only") -> tuple[Any, list[str]]:
    """Replace the model's Linear layers (a tied output head excepted) by int8 ones, in place,
    on the CPU: (model, names of the replaced layers)."""
    import torch

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    model = model.to("cpu", torch.float32)
    skip = _tied_head(model)
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name != skip
    ]
    for name in names:
        linear = model.get_submodule(name)
        q, scale = _quantize_weight(linear.weight)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        _set_module(model, name, _runtime_module(runtime, q, scale, bias))
    model.eval()
    return model, names


def _layer_tensors(module: Any) -> tuple[Any, Any, Any]:
    """(int8 weight, scale, bias) of an Int8Linear or a torch.ao dynamic Linear."""
    if hasattr(module, "qweight"):
        return module.qweight, module.scale, module.bias
    weight, bias = module._weight_bias()
    return weight.int_repr(), weight.q_per_channel_scales().float(), bias


def save_int8_folder(
    model: Any,
    tokenizer: Any,
    out_dir: str | os.PathLike[str],
    *,
    runtime: str,
    layers: list[str],
    source: dict[str, Any] | None = None,
) -> Path:
    """Write a model returned by quantize_linear_layers as an int8 folder (see the module doc)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {}
    for name in layers:
        q, scale, bias = _layer_tensors(model.get_submodule(name))
        tensors[f"{name}.qweight"] = q.contiguous()
        tensors[f"{name}.scale"] = scale.contiguous()
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().float().contiguous()
    inside = tuple(f"{name}." for name in layers)
    tied: dict[str, str] = {}
    seen: dict[int, str] = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(inside) or not hasattr(tensor, "data_ptr"):
            continue
        ptr = tensor.data_ptr()
        if ptr in seen:  # safetensors stores a shared tensor once; the alias is re-tied on load
            tied[name] = seen[ptr]
            continue
        seen[ptr] = name
        tensors[name] = tensor.detach().contiguous()
    save_file(tensors, str(out / WEIGHTS), metadata={"format": FORMAT})
    model.config.save_pretrained(str(out))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    marker = {
        "format": FORMAT,
        "version": VERSION,
        "runtime": runtime,
        "scheme": "int8 symmetric per output channel",
        "layers": layers,
        "tied": tied,
        "source": source or {},
    }
    (out / MARKER).write_text(json.dumps(marker, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


def is_int8_folder(folder: str | os.PathLike[str]) -> bool:
    """True when `folder` holds an int8 model written by save_int8_folder."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def _read_marker(folder: Path) -> dict[str, Any]:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobFailed(f"{MARKER}: unreadable ({exc})") from exc
    if marker.get("format") != FORMAT or marker.get("version") != VERSION:
        raise JobFailed(f"{MARKER}: not an {FORMAT} v{VERSION} folder")
    if marker.get("runtime") not in RUNTIMES or not isinstance(marker.get("layers"), list):
        raise JobFailed(f"{MARKER}: unknown runtime or no layer list")
    return marker


def load_int8_folder(
    folder: str | os.PathLike[str], *, device: str = "cpu", runtime: str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) from an int8 folder: the folder is checked like any model folder
    (safetensors only, no custom code), the model built empty from its config, the int8 layers
    and float tensors put in place; any weight left unset is an error, never random weights.
    `runtime` overrides the folder's (dynamic runs on the CPU only)."""
    import torch
    from accelerate import init_empty_weights  # type: ignore[import-untyped]
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from workers.ml.models import ModelRefused, inspect_folder

    path = Path(folder)
    try:
        inspect_folder(path)  # pickles, custom code, missing tokenizer: refused before loading
    except ModelRefused as exc:
        raise JobFailed(str(exc)) from exc
    marker = _read_marker(path)
    runtime = runtime or marker["runtime"]
    if runtime == "dynamic" and torch.device(device).type != "cpu":
        raise JobFailed(
            "int8 dynamic quantization runs on the CPU only; use the weight-only runtime on a GPU"
        )
    common = {"trust_remote_code": False, "local_files_only": True}
    config = AutoConfig.from_pretrained(str(path), **common)
    tensors = load_file(str(path / WEIGHTS))
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    layers = {}
    for name in marker["layers"]:
        try:
            q, scale = tensors.pop(f"{name}.qweight"), tensors.pop(f"{name}.scale")
        except KeyError:
            raise JobFailed(f"{WEIGHTS}: no int8 weights for {name}") from None
        if q.dtype != torch.int8 or q.ndim != 2 or scale.shape != (q.shape[0],):
            raise JobFailed(f"{WEIGHTS}: {name} has malformed int8 weights")
        layers[name] = (q, scale, tensors.pop(f"{name}.bias", None))
    # The float tensors first (a torch.ao module would look for its own keys among them), then
    # the int8 layers in place of the (still empty) Linear ones.
    unexpected = model.load_state_dict(tensors, strict=False, assign=True).unexpected_keys
    if unexpected:
        raise JobFailed(f"{WEIGHTS}: tensors the model does not have: {unexpected[:3]}")
    for name, (q, scale, bias) in layers.items():
        _set_module(model, name, _runtime_module(runtime, q, scale, bias))
    for alias, name in marker.get("tied", {}).items():
        _set_param(model, alias, model.get_parameter(name))
    missing = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if missing:
        raise JobFailed(f"{WEIGHTS}: no weights for {missing[:3]}")
    model.eval()
    if runtime == "weight-only":
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(path), **common)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _set_param(model: Any, name: str, param: Any) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    setattr(owner, attr, param)
