"""Batch-independent arithmetic: the same request gives the same pixels alone or in a batch.

Every image has its own ``torch.Generator`` (on the pipeline's device) seeded with its seed, so
an image's noise does not depend on its batch. On CPU the arithmetic is made independent of the
batch as well: BLAS picks other kernels for matrices with very few rows (the per-image
time-embedding layers see one row per image), and oneDNN another convolution for a batch of one.
While a pipeline runs inside :func:`batch_invariant`, those layers compute one row at a time, the
UNet never sees a batch of one, and the VAE encodes and decodes one image at a time
(:mod:`.latents`); so the same request gives the same pixels alone or inside a batch. On CUDA
nothing is patched: cuBLAS may still choose kernels by batch size, so batched images match solo
ones up to rounding there, and the row checks would cost a device sync per layer and step.

Patching is done on instance ``forward`` attributes under :data:`forward_patch_lock` and undone
by :func:`restore_forwards` (the embeddings' token lookup is patched the same way).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

# Modules whose matrices have one row per image: BLAS uses other kernels for 1-5 rows.
_PER_IMAGE_MODULES = ("time_embedding", "add_embedding", "class_embedding")
_PER_IMAGE_SUFFIXES = (".time_emb_proj",)
forward_patch_lock = threading.Lock()  # one patcher at a time: restores must nest


def _row_wise(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A forward that computes each row (image) on its own; identical rows are computed once."""
    import torch

    def wrapped(x, *args, **kwargs):
        if not torch.is_tensor(x) or x.ndim == 0 or x.shape[0] <= 1:
            return forward(x, *args, **kwargs)
        n = x.shape[0]

        def row(a, i):
            return a[i : i + 1] if torch.is_tensor(a) and a.ndim > 0 and a.shape[0] == n else a

        others = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        if all(torch.equal(t, t[:1].expand_as(t)) for t in (x, *others) if t.shape[:1] == (n,)):
            out = forward(row(x, 0), *[row(a, 0) for a in args], **kwargs)
            return out.expand(n, *out.shape[1:])
        outs = [
            forward(
                row(x, i), *[row(a, i) for a in args], **{k: row(v, i) for k, v in kwargs.items()}
            )
            for i in range(n)
        ]
        return torch.cat(outs)

    return wrapped


def _never_single(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A UNet/ControlNet forward that pads a batch of one to two (oneDNN picks another
    convolution for a single image) and returns the first row."""
    import torch

    def wrapped(sample, timestep, encoder_hidden_states, *args, **kwargs):
        if sample.shape[0] != 1:
            return forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

        def pad(a):
            if torch.is_tensor(a) and a.ndim > 0 and a.shape[0] == 1:
                return torch.cat([a, a])
            if isinstance(a, dict):
                return {k: pad(v) for k, v in a.items()}
            if isinstance(a, list | tuple):  # ControlNet residuals for the UNet
                return type(a)(pad(v) for v in a)
            return a

        out = forward(
            pad(sample),
            pad(timestep),
            pad(encoder_hidden_states),
            *[pad(a) for a in args],
            **{k: pad(v) for k, v in kwargs.items()},
        )
        return _first_row(out)

    return wrapped


def _first_row(out: Any) -> Any:
    import torch

    if torch.is_tensor(out):
        return out[:1]
    if isinstance(out, tuple):
        return tuple(_first_row(o) for o in out)
    if isinstance(out, list):
        return [_first_row(o) for o in out]
    if hasattr(out, "to_tuple"):  # a diffusers BaseOutput
        return type(out)(**{k: _first_row(v) for k, v in out.items()})
    return out


@contextlib.contextmanager
def batch_invariant(*models: Any) -> Iterator[None]:
    """While inside, the given UNet/ControlNet models compute each image independently of its
    batch (see the module docstring). Patches instance ``forward`` attributes and restores them."""
    patched: list[tuple[Any, bool, Any]] = []
    with forward_patch_lock:
        try:
            for model in models:
                if model is None or not _on_cpu(model):
                    continue
                for name, module in model.named_modules():
                    if name in _PER_IMAGE_MODULES or name.endswith(_PER_IMAGE_SUFFIXES):
                        had = "forward" in module.__dict__
                        patched.append((module, had, module.__dict__.get("forward")))
                        module.forward = _row_wise(module.forward)
                had = "forward" in model.__dict__
                patched.append((model, had, model.__dict__.get("forward")))
                model.forward = _never_single(model.forward)
        except Exception:
            restore_forwards(patched)
            raise
    try:
        yield
    finally:
        with forward_patch_lock:
            restore_forwards(patched)


def _on_cpu(model: Any) -> bool:
    """Only CPU arithmetic is made batch-independent: on CUDA the patches could not promise it
    (cuBLAS), and each row check would wait for the GPU (a sync per layer per step)."""
    device = getattr(model, "device", None)
    return getattr(device, "type", "cpu") == "cpu"


def restore_forwards(patched: list[tuple[Any, bool, Any]]) -> None:
    """Undo patches recorded as ``(module, had its own forward, that forward)``, newest first."""
    for module, had, previous in reversed(patched):
        if had:
            module.forward = previous
        else:
            module.__dict__.pop("forward", None)
    patched.clear()
