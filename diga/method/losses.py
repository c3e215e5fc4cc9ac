"""Segmentation losses: cross-entropy, and OHEM cross-entropy (the official SYNTHIA -> Cityscapes setting)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from diga.data.labels import IGNORE_INDEX

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over non-ignored pixels; zero (not NaN) when a batch has none. Sum / count rather than a
    branch on "any valid pixel", so the host never waits for the device here."""
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def cross_entropy_over_all_pixels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The official normalisation: CE summed over non-ignored pixels, divided by ALL pixels (ignored ones too).

    A label map with many ignored pixels (consensus-rejected pseudo-labels) thus weighs less, by its kept share."""
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / labels.numel()


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, thresh: float = 0.7,
                       min_kept: int = 100000) -> torch.Tensor:
    """Mean CE over the hard pixels: those whose ground-truth probability is below
    max(thresh, the (min_kept+1)-th smallest ground-truth probability); zero when no pixel is valid."""
    pixel_loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none").flatten()
    valid = (labels != IGNORE_INDEX).flatten()
    if not valid.any():
        return logits.sum() * 0.0
    with torch.no_grad():
        probability = torch.exp(-pixel_loss[valid])          # softmax probability of the ground-truth class
        k = min(min_kept, probability.numel() - 1)
        kth = probability.kthvalue(k + 1).values
        threshold = torch.maximum(kth, torch.tensor(thresh, device=kth.device, dtype=kth.dtype))
        hard = probability < threshold
    if not hard.any():
        return logits.sum() * 0.0
    return pixel_loss[valid][hard].mean()


def segmentation_loss(optim: dict) -> LossFn:
    """The loss `optim.seg_loss` names, with its settings bound."""
    if optim["seg_loss"] == "ohem":
        thresh, min_kept = optim["ohem_thresh"], optim["ohem_min_kept"]
        return lambda logits, labels: ohem_cross_entropy(logits, labels, thresh, min_kept)
    if optim["ce_normalise"] == "all_pixels":
        return cross_entropy_over_all_pixels
    return cross_entropy
