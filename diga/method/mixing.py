"""Class-based mixing: the cross-domain mixture (warm-up) and ClassMix of source classes onto target (self-training)."""

from __future__ import annotations

import torch

from diga.data.labels import IGNORE_INDEX


def class_mix_mask(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image, pick floor(n/2) of its n label values at random (ignore counts as a value) and always add
    ignore; return the bool mask (B x H x W) of pixels whose label is picked."""
    masks = []
    for label in labels:
        values = torch.unique(label)
        order = torch.randperm(len(values), generator=generator).to(label.device)
        chosen = values[order[: len(values) // 2]]
        chosen = torch.cat([chosen, torch.tensor([IGNORE_INDEX], dtype=label.dtype, device=label.device)])
        masks.append(torch.isin(label, chosen))
    return torch.stack(masks)


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
