"""Geometric crops (shared by an image and its label maps) and the photometric augmentation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from diga.data.labels import IGNORE_INDEX

# The per-pixel maps of an item, cropped with its image: 'label' is the label a stage trains on (source labels,
# or target labels for the oracle), 'pseudo' the offline target pseudo-labels, 'truth' target-train ground truth
# carried for measurement only (never read by any choice made here, see filtered_crop).
LABEL_KEYS = ("label", "pseudo", "truth")


def _resize(image: torch.Tensor, labels: dict[str, torch.Tensor], size: tuple[int, int]):
    """Bilinear image, nearest labels."""
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    labels = {k: F.interpolate(v[None, None].float(), size=size, mode="nearest")[0, 0].long()
              for k, v in labels.items()}
    return image, labels


def random_scale_crop_flip(item: dict, crop: tuple[int, int], scale: tuple[float, float],
                           generator: torch.Generator, independent: bool = False,
                           resize_small: bool = False) -> dict:
    """Rescale by U(scale), fit to the crop if smaller, random crop, random horizontal flip.

    Every per-pixel map (LABEL_KEYS) gets the same geometry as the image. `independent`: height and
    width get their own factors (the official RandomSized_and_Crop, which changes the aspect ratio);
    `resize_small`: an image smaller than the crop is resized to it (the official RandomCrop) instead of padded
    with ignore pixels.
    """
    image = item["image"]
    labels = {k: item[k] for k in LABEL_KEYS if k in item}
    height, width = image.shape[1:]
    factor_h = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item()
    factor_w = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item() if independent \
        else factor_h
    new_h, new_w = max(1, round(height * factor_h)), max(1, round(width * factor_w))
    image, labels = _resize(image, labels, (new_h, new_w))
    crop_h, crop_w = crop
    if resize_small and (new_h < crop_h or new_w < crop_w):
        image, labels = _resize(image, labels, (crop_h, crop_w))
    pad_h, pad_w = max(0, crop_h - image.shape[1]), max(0, crop_w - image.shape[2])
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        labels = {k: F.pad(v, (0, pad_w, 0, pad_h), value=IGNORE_INDEX) for k, v in labels.items()}
    top = int(torch.randint(0, image.shape[1] - crop_h + 1, (), generator=generator))
    left = int(torch.randint(0, image.shape[2] - crop_w + 1, (), generator=generator))
    image = image[:, top:top + crop_h, left:left + crop_w]
    labels = {k: v[top:top + crop_h, left:left + crop_w] for k, v in labels.items()}
    if torch.rand((), generator=generator).item() < 0.5:
        image = image.flip(-1)
        labels = {k: v.flip(-1) for k, v in labels.items()}
    out = dict(item, image=image.contiguous())
    out.update({k: v.contiguous() for k, v in labels.items()})
    return out


def crop_has_enough_classes(label: torch.Tensor, min_share: float = 0.02) -> bool:
    """The official source loaders' crop filter: at least 3 label values each cover > min_share of the crop, or
    exactly 2 do and neither is the ignore index."""
    values, counts = label.unique(return_counts=True)
    passing = values[counts.double() / label.numel() > min_share].tolist()
    return len(passing) >= 3 or (len(passing) == 2 and IGNORE_INDEX not in passing)


def filtered_crop(item: dict, crop: tuple[int, int], scale: tuple[float, float], generator: torch.Generator,
                  tries: int, **geometry: bool) -> dict:
    """`random_scale_crop_flip`, redrawn up to `tries` times until `crop_has_enough_classes` (the last draw is kept).

    Only the training label, item['label'], decides; 'pseudo' and 'truth' are never read, so target-train ground
    truth cannot choose a crop. Off (one draw) for tries <= 1 and for items without a training label (target
    images outside the oracle: their 'label' is all ignore), so those crops are unchanged.
    `geometry`: random_scale_crop_flip's `independent` and `resize_small`.
    """
    if tries <= 1 or "label" not in item or bool((item["label"] == IGNORE_INDEX).all()):
        return random_scale_crop_flip(item, crop, scale, generator, **geometry)
    for _ in range(tries):
        out = random_scale_crop_flip(item, crop, scale, generator, **geometry)
        if crop_has_enough_classes(out["label"]):
            break
    return out


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _happens(p: float, generator: torch.Generator) -> bool:
    return torch.rand((), generator=generator).item() < p


def sharpness_factor(settings: dict, generator: torch.Generator) -> float:
    """The blend factor of the sharpness op: out = smoothed + factor * (image - smoothed), smoothed being the
    image through a 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13.

    'sharpen': 1 + sharpness (1.5: away from the smoothed image). 'soften' (the official augmentation, kornia's
    RandomSharpness(0.5)): a factor drawn from U(0, sharpness), toward the smoothed image."""
    if settings["sharpness_mode"] == "soften":
        return _uniform(0.0, settings["sharpness"], generator)
    return 1 + settings["sharpness"]


def photometric_augment(images: torch.Tensor, settings: dict, generator: torch.Generator) -> torch.Tensor:
    """Colour jitter, random grayscale, Gaussian blur and sharpness, per image, on [0, 1] RGB (B x 3 x H x W).

    The official code runs these on normalised BGR tensors (a quirk); we apply them where they are defined.
    """
    # Imported here: torchvision's import costs every job ~1.3 s (it loads its models and torch._dynamo), and
    # only the stages with this augmentation need it, not the loader workers, evaluation or pseudo-labels.
    import torchvision.transforms.v2.functional as TF
    out = []
    for image in images:
        if _happens(settings["jitter_p"], generator):
            b, c, s, h = settings["brightness"], settings["contrast"], settings["saturation"], settings["hue"]
            image = TF.adjust_brightness(image, _uniform(max(0.0, 1 - b), 1 + b, generator))
            image = TF.adjust_contrast(image, _uniform(max(0.0, 1 - c), 1 + c, generator))
            image = TF.adjust_saturation(image, _uniform(max(0.0, 1 - s), 1 + s, generator))
            if h > 0:
                image = TF.adjust_hue(image, _uniform(-h, h, generator))
        if _happens(settings["grayscale_p"], generator):
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if _happens(settings["blur_p"], generator):
            sigma = settings["blur_sigma"]
            kernel = settings["blur_kernel"] or 2 * math.ceil(2 * sigma) + 1  # null: +-2 sigma
            image = TF.gaussian_blur(image, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
        if _happens(settings["sharpness_p"], generator):
            image = TF.adjust_sharpness(image, sharpness_factor(settings, generator))
        out.append(image.clamp(0, 1))
    return torch.stack(out)


def blend_augment(images: torch.Tensor, settings: dict, beta: float, generator: torch.Generator,
                  input_space=None) -> torch.Tensor:
    """beta * augment(x) + (1 - beta) * x: the method's photometric view (beta 0.4 warm-up, 0.3 self-training).

    `augment.space: network` (the official code): the ops run on the network's input tensor t (for the paper's
    caffe normalisation, BGR in about [-1, 1], where the ops clamp to [0, 1]), their output u is read as [0, 1]
    and mapped by 2u - 1, then blended with t; `input_space` (the segmenter's) maps to t and back."""
    if settings["space"] == "network":
        tensor = input_space.to_network(images)
        augmented = 2 * photometric_augment(tensor, settings, generator) - 1
        return input_space.to_image(beta * augmented + (1 - beta) * tensor)
    return beta * photometric_augment(images, settings, generator) + (1 - beta) * images
