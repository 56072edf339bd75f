"""Loading a causal LM from a validated local folder: devices, dtypes and quantization
(int8 dynamic on the CPU, 4/8-bit with bitsandbytes on CUDA)."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

from workers.ml.models.errors import DeviceUnavailable, QuantizationUnavailable
from workers.ml.models.inspection import inspect_folder

__all__ = [
    "QUANTIZATIONS",
    "load_causal_lm",
    "quantize_int8_dynamic",
    "resolve_device",
    "resolve_dtype",
]

QUANTIZATIONS = (None, "int8-weight", "int8-dynamic", "4bit", "8bit")


def resolve_device(device: str = "auto"):
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU raises."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {device!r} was requested, but this worker has no GPU")
    return resolved


def resolve_dtype(dtype: Any = "auto", device: Any = "cpu"):
    """'auto' → bf16 on CUDA with bf16, fp16 on other CUDA, fp32 on CPU; names or torch dtypes."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    device = torch.device(device)
    if dtype in (None, "", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return names[dtype]


def _bitsandbytes_config(quantization: str, compute_dtype):
    import torch

    bits = quantization.removesuffix("bit")
    has_cuda = torch.cuda.is_available()
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if not (has_cuda and has_bnb):
        missing = (
            "neither"
            if not (has_cuda or has_bnb)
            else ("no CUDA GPU" if not has_cuda else "no bitsandbytes")
        )
        raise QuantizationUnavailable(
            f"{bits}-bit loading needs a CUDA GPU and bitsandbytes; this worker has {missing}"
        )
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def quantize_int8_dynamic(model, *, inplace: bool = False):
    """int8 dynamic quantization of every Linear layer (CPU inference only).

    Returns a quantized copy unless inplace=True (then `model` itself is changed and returned).
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of torchao, still works
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace
        )


def load_causal_lm(
    path: str | os.PathLike,
    *,
    device: str = "auto",
    dtype: Any = "auto",
    quantization: str | None = None,
):
    """(model, tokenizer) from a validated local folder: safetensors only, no remote code,
    no network. quantization: None, "int8-weight" (int8 weights, float activations: close to the
    original; CPU), "int8-dynamic" (int8 activations too: faster, less accurate; CPU), "4bit" or
    "8bit" (CUDA+bitsandbytes).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; use one of {QUANTIZATIONS[1:]}")
    info = inspect_folder(path)
    folder = info.path
    from workers.ml.craft.int8 import is_int8_folder, load_int8_folder

    if is_int8_folder(folder):  # a quantization job's artifact (workers/ml/craft/int8.py)
        if quantization is not None:
            raise QuantizationUnavailable(
                f"{Path(folder).name} is already int8; load it without quantization"
            )
        return load_int8_folder(folder, device="cpu")  # its int8 layers run on the CPU
    if quantization in ("int8-dynamic", "int8-weight"):
        if device not in (None, "", "auto") and torch.device(device).type != "cpu":
            raise QuantizationUnavailable(f"{quantization} quantization runs on the CPU only")
        target = torch.device("cpu")
    elif quantization in ("4bit", "8bit"):
        if device not in (None, "", "auto") and torch.device(device).type != "cuda":
            raise QuantizationUnavailable(
                f"{quantization.removesuffix('bit')}-bit loading needs a CUDA GPU and "
                "bitsandbytes; it cannot run on the CPU"
            )
        target = None
    else:
        target = resolve_device(device)

    common = {"trust_remote_code": False, "local_files_only": True}
    kwargs: dict[str, Any] = {**common, "use_safetensors": True}
    if quantization in ("4bit", "8bit"):
        compute = resolve_dtype(dtype, "cuda") if torch.cuda.is_available() else torch.float16
        kwargs["quantization_config"] = _bitsandbytes_config(quantization, compute)
        target = resolve_device("auto" if device in (None, "", "auto") else device)
        kwargs["device_map"] = {"": target.index or 0}
        kwargs["dtype"] = compute
    else:
        assert target is not None  # only 4bit/8bit leave it for the branch above
        kwargs["dtype"] = (
            torch.float32
            if quantization in ("int8-dynamic", "int8-weight")
            else resolve_dtype(dtype, target)
        )
        if target.type == "cuda":
            kwargs["device_map"] = {"": target.index or 0}

    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if quantization == "int8-dynamic":
        model = quantize_int8_dynamic(model, inplace=True)
    elif quantization == "int8-weight":
        model = quantize_int8_weight(model)
    return model, tokenizer


def quantize_int8_weight(model: Any) -> Any:
    """Linear layers with int8 weights and float activations (workers/ml/craft/int8.py, the
    quantization job's weight-only mode), in place, on the CPU."""
    from workers.ml.craft.int8 import quantize_linear_layers

    return quantize_linear_layers(model, "weight-only")[0]
