"""A run's resumable state as safetensors and JSON (never pickle): trained tensors, AdamW moments,
the run's generator, the data order and the step.

A checkpoint folder (written through `workers.ml.checkpoints.CheckpointStore`, whose COMPLETE
marker, written last, lists every file's hash):

    trained.safetensors     the tensors being trained (LoRA matrices or embedding vectors)
    optimizer.safetensors   AdamW's step count and moments, per trained tensor
    rng.json, rng.safetensors   python/numpy/torch global RNG (workers.ml.checkpoints)
    state.json              step, the generator's state, data order, the run's config, loss
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.ml.checkpoints import read_rng_state, write_rng_state

__all__ = ["RunState", "lr_at", "read_state", "write_state"]

TRAINED = "trained.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


def lr_at(step: int, *, peak: float, schedule: str, warmup: int, total: int) -> float:
    """The learning rate of optimizer step `step` (0-based), as diffusers' get_scheduler gives
    it: linear warm-up, then constant, linear decay to 0 or a half cosine."""
    import math

    if schedule == "constant":
        return peak
    if step < warmup:
        return peak * step / max(1, warmup)
    if schedule == "constant_with_warmup":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return peak * max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return peak * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown lr schedule {schedule!r}")


@dataclass
class RunState:
    """What a checkpoint restores besides the tensors."""

    step: int
    generator: Any  # torch.ByteTensor: the run's torch.Generator state
    data: dict[str, Any]
    config: dict[str, Any]
    losses: list[float]


def write_state(
    folder: Path,
    *,
    trained: dict[str, Any],
    optimizer: Any,
    params: list[Any],
    state: RunState,
) -> None:
    """Write one checkpoint's files into `folder` (the CheckpointStore's temporary folder)."""
    from safetensors.torch import save_file

    save_file(
        {k: v.detach().float().cpu().contiguous() for k, v in trained.items()}, folder / TRAINED
    )
    moments: dict[str, Any] = {}
    for i, param in enumerate(params):
        st = optimizer.state.get(param)
        if not st:
            continue
        for key, value in st.items():
            moments[f"{i}.{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
    if moments:
        save_file(moments, folder / OPTIMIZER)
    write_rng_state(folder)
    payload = {
        "step": state.step,
        "generator": base64.b64encode(bytes(state.generator.tolist())).decode("ascii"),
        "data": state.data,
        "config": state.config,
        "losses": state.losses,
        "param_groups": [
            {k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups
        ],
    }
    (folder / STATE).write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")


def read_state(
    folder: Path, *, optimizer: Any, params: list[Any], config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], RunState] | None:
    """A checkpoint's trained tensors, global RNG state (for restore_rng_state) and the run's
    other state, with the optimizer's moments restored into `optimizer` (whose parameters are
    `params`, in the order they were saved); None, touching nothing, when the checkpoint was
    made with another `config`."""
    import torch
    from safetensors.torch import load_file

    payload = json.loads((folder / STATE).read_text(encoding="utf-8"))
    if payload.get("config") != config:
        return None
    trained = load_file(str(folder / TRAINED))
    moments = load_file(str(folder / OPTIMIZER)) if (folder / OPTIMIZER).is_file() else {}
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in moments.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    saved_groups = payload.get("param_groups") or []
    groups = [
        {**{k: v for k, v in group.items() if k != "params"}, **saved, "params": group["params"]}
        for group, saved in zip(optimizer.state_dict()["param_groups"], saved_groups, strict=False)
    ] or optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    # load_state_dict casts moments to each parameter's dtype and device; the step counter stays
    # where AdamW keeps it (a float32 tensor on the CPU unless capturable).
    generator = torch.tensor(list(base64.b64decode(payload["generator"])), dtype=torch.uint8)
    run = RunState(
        step=int(payload["step"]),
        generator=generator,
        data=payload.get("data") or {},
        config=payload.get("config") or {},
        losses=[float(x) for x in payload.get("losses") or []],
    )
    return trained, read_rng_state(folder), run
