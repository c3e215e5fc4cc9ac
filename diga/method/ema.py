"""The EMA teacher: an exponential moving average of the student's weights."""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(step: int, max_decay: float) -> float:
    """min(1 - 1/(t + 1), max_decay): a uniform average of all weights so far until the cap takes over."""
    return min(1.0 - 1.0 / (step + 1), max_decay)


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, for parameters and BN running statistics.

    The official code averages parameters only and keeps its teacher in train mode (batch statistics);
    averaging the running statistics too lets the teacher run in eval mode, as intended.
    """
    for t_param, s_param in zip(teacher.parameters(), student.parameters(), strict=True):
        t_param.mul_(decay).add_(s_param.detach(), alpha=1 - decay)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers(), strict=True):
        if t_buf.dtype.is_floating_point:
            t_buf.mul_(decay).add_(s_buf, alpha=1 - decay)
        else:
            t_buf.copy_(s_buf)
