"""Agreement between the processes of a DDP run; each call is a no-op in a single process."""

from __future__ import annotations

from typing import Any

__all__ = ["any_rank", "barrier", "dist_active", "sum_across_ranks"]


def dist_active() -> bool:
    """True inside a torch.distributed group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait until every rank gets here."""
    if dist_active():
        import torch.distributed as dist

        dist.barrier()


def any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when `flag` is true on at least one."""
    if not dist_active():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_across_ranks(value: int, device: Any) -> int:
    """The sum of `value` over all ranks."""
    if not dist_active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t.item())
