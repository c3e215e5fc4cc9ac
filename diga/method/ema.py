"""The EMA teacher: an exponential moving average of the student's weights."""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(step: int, max_decay: float) -> float:
    """min(1 - 1/(t + 1), max_decay): a uniform average of all weights so far until the cap takes over."""
    return min(1.0 - 1.0 / (step + 1), max_decay)


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, decay: float, buffers: bool = True) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, for parameters and (`buffers`) BN running statistics.

    The official code averages parameters only (`ema.average_buffers: false`) and keeps its teacher in train mode
    (batch statistics); averaging the running statistics too lets the teacher run in eval mode, as intended.
    """
    # One fused call per list instead of two kernels per tensor (hundreds of tensors in ResNet-101): the same
    # arithmetic, without the launch overhead.
    t_params, s_params = list(teacher.parameters()), [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student have different parameter lists")
    _average(t_params, s_params, decay)
    if not buffers:
        return
    pairs = list(zip(teacher.buffers(), student.buffers(), strict=True))
    _average([t for t, _ in pairs if t.dtype.is_floating_point], [s for t, s in pairs if t.dtype.is_floating_point],
             decay)
    for t_buf, s_buf in pairs:
        if not t_buf.dtype.is_floating_point:  # BN's batch counter
            t_buf.copy_(s_buf)


def _average(teacher: list[torch.Tensor], student: list[torch.Tensor], decay: float) -> None:
    if teacher:
        torch._foreach_mul_(teacher, decay)
        torch._foreach_add_(teacher, student, alpha=1 - decay)
