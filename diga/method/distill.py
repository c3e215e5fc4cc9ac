"""Symmetric knowledge distillation (SKD) between two views of the same image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Mean over every pixel of -sum_c q_c log p_c (B x C x H x W); ignore pixels included, as in the paper."""
    return -(teacher_probs * F.log_softmax(student_logits, dim=1)).sum(dim=1).mean()


def symmetric_distillation(student_clean: torch.Tensor, student_mixed: torch.Tensor,
                           teacher_clean: torch.Tensor, teacher_mixed: torch.Tensor,
                           reverse_scale: float) -> torch.Tensor:
    """Cross-view distillation in both directions at temperature 1.

    The teacher on the clean view supervises the student on the mixed view (weight 1), and the teacher
    on the mixed view supervises the student on the clean view (weight `reverse_scale`).
    """
    forward = soft_cross_entropy(student_mixed, F.softmax(teacher_clean.detach(), dim=1))
    reverse = soft_cross_entropy(student_clean, F.softmax(teacher_mixed.detach(), dim=1))
    return forward + reverse_scale * reverse
