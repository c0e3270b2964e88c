"""The process-group plumbing of the fit loop: joining torchrun's group, reducing sums, agreeing to stop."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "reduce_sums", "any_process", "barrier", "autocast_for"]


def reduce_sums(sums: torch.Tensor) -> tuple[float | None, float | None]:
    """Mean loss and accuracy over all processes from (loss sum, correct, count)."""
    if dist.is_initialized():
        dist.all_reduce(sums)
    loss, correct, count = sums.tolist()
    if count == 0:
        return None, None
    return round(loss / count, 6), round(correct / count, 6)


def init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def any_process(flag: bool) -> bool:
    """True when `flag` is true in any process (clocks differ between processes)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def autocast_for(device: torch.device):
    """bfloat16 autocast on GPUs that have it; full precision elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
