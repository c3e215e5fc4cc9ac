"""The segmenter a config names (`model.arch`): DeepLabV2 (adaptation, domain generalisation) or HRNetV2 + OCR
(semi-supervised segmentation). Both take [0, 1] RGB images and return logits and the feature used for centroids."""

from __future__ import annotations

from torch import nn

from diga.models.deeplabv2 import build_deeplabv2
from diga.models.hrnet_ocr import build_hrnet_ocr

BUILDERS = {"deeplabv2": build_deeplabv2, "hrnet_ocr": build_hrnet_ocr}


def build_segmenter(model: dict, num_classes: int) -> nn.Module:
    """Build the network `model` describes (checkpoints written before `arch` existed are DeepLabV2)."""
    net = BUILDERS[model.get("arch", "deeplabv2")](model, num_classes)
    if model["freeze_backbone_bn"]:  # a pretrained backbone's BN affine parameters stay as loaded
        for module in net.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(False)
                module.bias.requires_grad_(False)
    return net
