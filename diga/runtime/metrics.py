"""Confusion matrix, per-class IoU, mIoU and pixel accuracy."""

from __future__ import annotations

import numpy as np
import torch

from diga.data.labels import IGNORE_INDEX


def confusion_matrix(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C x C counts, rows = ground truth, columns = prediction; ignore pixels are skipped."""
    valid = (target != IGNORE_INDEX) & (target >= 0) & (target < num_classes)
    # Invalid pixels go to one extra bin, dropped at the end: no boolean indexing and no bincount, both of which
    # make a GPU wait for the host (their output size depends on the data).
    index = torch.where(valid, target * num_classes + prediction, num_classes**2).flatten()
    counts = torch.zeros(num_classes**2 + 1, dtype=torch.long, device=index.device)
    counts.index_add_(0, index, torch.ones_like(index))
    return counts[:-1].reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both ground truth and prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """nanmean of the per-class IoUs (classes absent from ground truth and prediction do not count)."""
    ious = iou_per_class(confusion)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")
