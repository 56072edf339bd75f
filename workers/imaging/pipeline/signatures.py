"""Attention processors whose signature is read once, not on every attention call.

diffusers' ``Attention.forward`` (0.27 onwards, huggingface/diffusers#6915) starts every call
with ``inspect.signature(self.processor.__call__)``, to drop cross-attention kwargs the processor
does not take. For a bound method that is a full signature computation each time: 30-160 µs on
these CPUs, and an SD 1.5 UNet makes 32 attention calls per step (x2 with CFG batched in), SDXL
more -- about 8 ms of pure Python per 20-step image of the tiny demo model, ~20 ms for SD 1.5,
whatever the device. On a GPU that is 2-4 % of a 512 px image, on the critical path.

``presign_attention`` gives each processor an instance attribute ``__call__`` (found before the
class's method on attribute access, so ``processor.__call__`` returns it; calling the processor
itself still goes through the class) that forwards to the class's ``__call__`` and carries its
bound signature as ``__signature__``, which ``inspect.signature`` returns at once. Same
parameters, same call, same arithmetic: only the lookup is cached. A processor set later (a
different attention backend) is simply not presigned and costs what it costs in diffusers.
"""

from __future__ import annotations

import inspect
from typing import Any


def presign_attention(*components: Any) -> int:
    """Presign the attention processors inside `components` (a pipeline's modules); returns how
    many were changed. Idempotent; processors that are torch modules (IP-Adapter's, which hold
    weights) are left as they are."""
    import torch

    done = 0
    seen: set[int] = set()
    for component in components:
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            processor = getattr(module, "processor", None)
            if processor is None or id(processor) in seen:
                continue
            seen.add(id(processor))
            if _presign(processor):
                done += 1
    return done


def _presign(processor: Any) -> bool:
    import torch

    if isinstance(processor, torch.nn.Module) or not hasattr(processor, "__dict__"):
        return False
    if "__call__" in vars(processor):
        return False  # already presigned (or the processor sets its own)
    method = type(processor).__call__
    signature = inspect.signature(processor.__call__)  # bound: without `self`

    def call(*args: Any, **kwargs: Any) -> Any:
        return method(processor, *args, **kwargs)

    call.__signature__ = signature  # type: ignore[attr-defined]
    call.__doc__ = method.__doc__
    processor.__call__ = call
    return True
