"""What this machine can train with: precision, 8-/4-bit loading, device count."""

from __future__ import annotations

from workers.common.timing import timed
from workers.ml.finetune.config import PRECISIONS
from workers.ml.reporting import JobFailed

__all__ = ["check_devices", "check_quantization", "resolve_precision"]


@timed("finetune.resolve_precision")
def resolve_precision(
    requested: str = "auto",
    *,
    cuda_available: bool | None = None,
    bf16_supported: bool | None = None,
) -> str:
    """fp32 | bf16 | fp16 for a requested precision on this machine (auto: see the config help)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if cuda_available is None or (cuda_available and bf16_supported is None):
        import torch

        if cuda_available is None:
            cuda_available = torch.cuda.is_available()
        if cuda_available and bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
    if requested == "auto":
        if not cuda_available:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested == "fp16" and not cuda_available:
        raise JobFailed("fp16 training needs a CUDA GPU; use precision auto, fp32 or bf16 on CPU")
    if requested == "bf16" and cuda_available and not bf16_supported:
        raise JobFailed("this GPU does not support bf16; use precision auto or fp16")
    return requested


def check_quantization(load_in: str, *, cuda_available: bool | None = None) -> None:
    """Raise JobFailed when 8-/4-bit loading cannot work here (no CUDA, or no bitsandbytes)."""
    if load_in == "none":
        return
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        raise JobFailed(
            f"{load_in} loading (QLoRA through bitsandbytes) needs a CUDA GPU, and this worker "
            "has none. Set load_in to none to train in full precision, or run the job on a GPU "
            "worker."
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise JobFailed(
            f"{load_in} loading needs the bitsandbytes package on the GPU worker "
            "(pip install bitsandbytes); set load_in to none to train without it."
        )


def check_devices(num_gpus: int) -> str:
    """The device kind N processes will use: cuda (enough GPUs) or cpu (no GPU: gloo processes)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    have = torch.cuda.device_count()
    if num_gpus > have:
        raise JobFailed(f"the job asks for {num_gpus} GPUs but this worker has {have}")
    return "cuda"
