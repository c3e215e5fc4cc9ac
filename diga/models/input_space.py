"""How a network sees an image: the map from [0, 1] RGB image space to its input tensor, and back.

Augmentation, mixing and the translator's output live in image space; each network applies its own map.
- imagenet_rgb: RGB, ImageNet mean and std (the clean choice, matching torchvision-style weights).
- caffe_bgr: what the official DiGA loaders feed the caffe-converted DeepLab weights: BGR, on 0..255, minus the
  caffe mean (104.00698793, 116.66876762, 122.67891434), divided by 128 (about [-1, 1]).
- caffe_rgb: the same tensor with its channels flipped back to RGB, what the official semi-supervised code feeds
  HRNet (its loaders are the caffe ones; the network flips the channels first).
The maps are affine per channel, so `to_image(to_network(x)) == x` up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
CAFFE_SCALE = 128.0
INPUT_NORMS = ("imagenet_rgb", "caffe_bgr", "caffe_rgb")


class InputSpace(nn.Module):
    """network tensor = (image - mean) / std per channel, the channels first reversed (RGB -> BGR) for caffe_bgr."""

    def __init__(self, norm: str):
        super().__init__()
        if norm == "imagenet_rgb":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        elif norm == "caffe_bgr":  # on 0..255 values: mean/255 and 128/255 in image units
            mean, std = [m / 255 for m in CAFFE_MEAN_BGR], [CAFFE_SCALE / 255] * 3
        elif norm == "caffe_rgb":
            mean, std = [m / 255 for m in reversed(CAFFE_MEAN_BGR)], [CAFFE_SCALE / 255] * 3
        else:
            raise ValueError(f"model.input_norm must be one of {INPUT_NORMS}, not {norm!r}")
        self.swap = norm == "caffe_bgr"  # RGB <-> BGR, its own inverse; no copy (or layout change) for RGB
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def to_network(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.flip(1) if self.swap else images) - self.mean) / self.std

    def to_image(self, tensor: torch.Tensor) -> torch.Tensor:
        images = tensor * self.std + self.mean
        return images.flip(1) if self.swap else images
