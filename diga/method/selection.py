"""Threshold-free pseudo-label selection (bilateral consensus) and the class centroids it relies on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diga.data.labels import IGNORE_INDEX


def nearest_centroid_labels(feat: torch.Tensor, centroids: torch.Tensor, size: tuple[int, int],
                            valid: torch.Tensor | None = None) -> torch.Tensor:
    """Label each pixel with its nearest centroid (L2) at `size`.

    The softmax of negative distances is upsampled bilinearly before the argmax, so the label map has
    the crop's resolution, not the feature map's. Classes with `valid` False (never seen when the
    centroids were computed) are never chosen.
    """
    distances = torch.cdist(feat.permute(0, 2, 3, 1).flatten(1, 2), centroids[None].expand(feat.shape[0], -1, -1))
    if valid is not None:
        distances = distances.masked_fill(~valid[None, None], float("inf"))
    weights = F.softmax(-distances, dim=2).transpose(1, 2).reshape(feat.shape[0], -1, *feat.shape[2:])
    weights = F.interpolate(weights, size=size, mode="bilinear", align_corners=True)
    return weights.argmax(dim=1)


def consensus_labels(offline: torch.Tensor, prototype: torch.Tensor) -> torch.Tensor:
    """Keep the offline pseudo-label where the nearest centroid agrees with it; ignore it elsewhere."""
    return torch.where(offline == prototype, offline, torch.full_like(offline, IGNORE_INDEX))


def confident_labels(offline: torch.Tensor, probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """The fixed-threshold baseline: keep the offline label where the model gives its class probability >= threshold."""
    index = offline.clamp(max=probabilities.shape[1] - 1)[:, None]
    confidence = probabilities.gather(1, index)[:, 0]
    keep = (offline != IGNORE_INDEX) & (confidence >= threshold)
    return torch.where(keep, offline, torch.full_like(offline, IGNORE_INDEX))


def agreeing_labels(labels: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Keep a label where the model's prediction is the same class; ignore it elsewhere (the centroid update's
    mask: only pixels that the label and the teacher agree on move a class centroid)."""
    return torch.where(labels == predicted, labels, torch.full_like(labels, IGNORE_INDEX))


def usable_centroids(centroids: torch.Tensor, seen: torch.Tensor, unseen: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids, which classes the nearest-centroid decision may choose) for the `centroids.unseen` policy.

    'exclude': a class never predicted in the centroid pass is never chosen. 'zero' (the official code): it keeps
    the all-zero vector it started from and competes like any other, so it wins wherever a feature is nearer
    to the origin than to every seen centroid."""
    if unseen == "zero":
        return centroids.masked_fill(~seen[:, None], 0.0), torch.ones_like(seen)
    return centroids, seen


def class_means(feat: torch.Tensor, labels: torch.Tensor, num_classes: int,
                min_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and class, the mean feature over the pixels labelled with that class.

    feat: B x D x h x w; labels: B x h x w at the feature resolution. Returns (means B x C x D,
    present B x C bool), where present means at least `min_pixels` pixels.
    """
    flat_feat = feat.flatten(2)                                            # B x D x N
    flat_labels = labels.flatten(1)                                        # B x N
    onehot = torch.stack([(flat_labels == c) for c in range(num_classes)], dim=1).to(feat.dtype)  # B x C x N
    counts = onehot.sum(dim=2)                                             # B x C
    sums = torch.bmm(onehot, flat_feat.transpose(1, 2))                   # B x C x D
    means = sums / counts.clamp(min=1)[..., None]
    return means, counts >= min_pixels


def update_centroids_ema(centroids: torch.Tensor, means: torch.Tensor, present: torch.Tensor,
                         momentum: float) -> torch.Tensor:
    """Online update during self-training, image by image: mu_c <- (1 - m) mu_c + m v for each present class."""
    # torch.where, not boolean indexing: indexing by a mask makes the host wait for the device every iteration.
    for image_means, image_present in zip(means, present, strict=True):
        centroids = torch.where(image_present[:, None], (1 - momentum) * centroids + momentum * image_means,
                                centroids)
    return centroids


def update_centroids_cumulative(centroids: torch.Tensor, counts: torch.Tensor, means: torch.Tensor,
                                present: torch.Tensor, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Offline computation: a running mean per class, mu <- (mu n + v) / (n + 1), with n capped at `cap`
    (after the cap it becomes an EMA with weight 1 / (cap + 1))."""
    centroids, counts = centroids.clone(), counts.clone()
    for image_means, image_present in zip(means, present, strict=True):
        n = counts[image_present][:, None].to(centroids.dtype)
        centroids[image_present] = (centroids[image_present] * n + image_means[image_present]) / (n + 1)
        counts[image_present] = torch.clamp(counts[image_present] + 1, max=cap)
    return centroids, counts


def downsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a label map (B x H x W) to the feature resolution."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
