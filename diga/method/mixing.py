"""Class-based mixing: the cross-domain mixture (warm-up) and ClassMix of source classes onto target (self-training)."""

from __future__ import annotations

import torch

from diga.data.labels import IGNORE_INDEX

LABEL_VALUES = 256  # trainIds 0..254 and ignore (255): a label map is a uint8 image


def class_mix_mask(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image, pick floor(n/2) of its n label values at random (ignore counts as a value) and always add
    ignore; return the bool mask (B x H x W) of pixels whose label is picked.

    Done with fixed-size tensors over the 256 possible values (no unique(), whose size the host would wait for).
    """
    flat = labels.flatten(1)
    present = torch.zeros(labels.shape[0], LABEL_VALUES, dtype=torch.bool, device=labels.device)
    present.scatter_(1, flat, True)
    # Random priorities from the (CPU) generator, so the draw is the same on any device; absent values rank last.
    priority = torch.rand(labels.shape[0], LABEL_VALUES, generator=generator)
    if labels.is_cuda:  # from pinned memory the copy does not make the host wait for the device
        priority = priority.pin_memory().to(labels.device, non_blocking=True)
    rank = priority.masked_fill(~present, 2.0).argsort(1).argsort(1)
    chosen = rank < present.sum(1, keepdim=True) // 2
    chosen[:, IGNORE_INDEX] = True
    return chosen.gather(1, flat).view_as(labels)


def cross_domain_mixture(augmented: torch.Tensor, translated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pixels in `mask` (selected classes and ignore) keep the augmented source appearance, the rest take
    the translated (target-styled) rendering of the same image. The label is unchanged."""
    keep = mask[:, None].to(augmented.dtype)
    return keep * augmented + (1 - keep) * translated


def classmix(source_images: torch.Tensor, source_labels: torch.Tensor, target_images: torch.Tensor,
             target_labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste the masked source pixels (image and label) onto the target image and its (pseudo-)label."""
    keep = mask[:, None].to(source_images.dtype)
    images = keep * source_images + (1 - keep) * target_images
    labels = torch.where(mask, source_labels, target_labels)
    return images, labels
