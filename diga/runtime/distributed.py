"""Data-parallel training on the GPUs of one node: one process per GPU, started by torchrun.

`stages.<stage>.gpus` > 1 makes `diga` re-launch itself under torchrun. Each process draws its
own batches (its own data generator; the weights start identical), gradients are averaged over processes after
every backward pass and the BatchNorm statistics are taken from process 0 after every step, as DDP does.
So `batch` is per process. Process 0 writes the log, the checkpoints and the outputs, in the same format as a
single-process run. With one process (the default), every function here is a no-op.
Backend: NCCL on CUDA, gloo on CPU (the CPU path is what the tests run).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def launched() -> bool:
    """True inside a process that torchrun started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_command(processes: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs `diga <argv>` in `processes` processes on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "diga", *argv]


def init(device_choice: str) -> None:
    """Join the process group torchrun set up (no-op outside torchrun)."""
    if not launched() or dist.is_initialized():
        return
    use_cuda = device_choice != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if use_cuda else "gloo")


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients over processes (one flattened all-reduce)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def broadcast_buffers(modules: Iterable[nn.Module]) -> None:
    """Give every process process 0's buffers (BatchNorm running statistics)."""
    if not active():
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over processes of a tensor (for the logged losses)."""
    if not active():
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / world_size()


def any_process(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true in any process (a stop signal reaches the processes at different moments)."""
    if not active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (a one-element list with one process)."""
    if not active():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
