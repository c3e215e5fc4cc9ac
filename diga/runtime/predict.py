"""Multi-scale inference: logits at several scales, fused by their elementwise maximum (the paper's protocol)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diga.runtime.precision import Precision


@torch.no_grad()
def multiscale_logits(model: nn.Module, images: torch.Tensor, scales: list[float],
                      precision: Precision | None = None) -> torch.Tensor:
    """B x C x H x W fp32 logits at the input resolution: max over scales of the upsampled logits."""
    size = images.shape[-2:]
    fused = None
    for scale in scales:
        scaled = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear",
                                                           align_corners=True)
        output = precision.run(model, scaled) if precision is not None else model(scaled)
        logits = F.interpolate(output.logits, size=size, mode="bilinear", align_corners=True)
        fused = logits if fused is None else torch.maximum(fused, logits)
    return fused
