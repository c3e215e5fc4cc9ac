"""DeepLabV2: a dilated ResNet (output stride 8; 4 as an option for small images) with the ProDA-style ASPP head.

One code path, two sizes chosen by config: ResNet-101 (Bottleneck [3, 4, 23, 3], width 64, head 256 with
rates 6/12/18/24, the paper's) and a small BasicBlock ResNet for ToyCity on a CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from diga.errors import MissingWeightsError, WeightsError
from diga.models.input_space import InputSpace


class SegOutput(NamedTuple):
    logits: torch.Tensor  # B x C x h x w, at the output stride (8, or 4)
    feat: torch.Tensor    # B x D x h x w, the head feature used for class centroids


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.downsample = _shortcut(in_ch, ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    """Caffe-style bottleneck as in DeepLabV2: the stride sits in the first 1x1 conv."""

    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * 4)
        self.downsample = _shortcut(in_ch, ch * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class DilatedResNet(nn.Module):
    """ResNet with layer3/layer4 dilated (2, 4) instead of strided: output stride 8, or 4 without the stem's
    max-pool (for small images, where thin objects are a pixel or two wide; the parameters are the same)."""

    def __init__(self, block: type[nn.Module], layers: list[int], width: int, output_stride: int = 8):
        super().__init__()
        if output_stride not in (4, 8):
            raise ValueError(f"model.output_stride={output_stride}; choose 8 (DeepLabV2) or 4")
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True) if output_stride == 8 else nn.Identity()
        self.in_ch = width
        self.layer1 = self._stage(block, width, layers[0], stride=1, dilation=1)
        self.layer2 = self._stage(block, width * 2, layers[1], stride=2, dilation=1)
        self.layer3 = self._stage(block, width * 4, layers[2], stride=1, dilation=2)
        self.layer4 = self._stage(block, width * 8, layers[3], stride=1, dilation=4)
        self.out_channels = width * 8 * block.expansion

    def _stage(self, block, ch: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        layers = [block(self.in_ch, ch, stride, dilation)]
        self.in_ch = ch * block.expansion
        layers += [block(self.in_ch, ch, 1, dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class ProdaHead(nn.Module):
    """Parallel 1x1 and dilated 3x3 branches (conv, GroupNorm, ReLU), concat, SE, 3x3 bottleneck + GN,
    dropout -> 'feat' (for centroids) -> 1x1 classifier."""

    def __init__(self, in_ch: int, channels: int, rates: list[int], gn_groups: int, se_reduction: int,
                 dropout: float, num_classes: int):
        super().__init__()
        def branch(kernel: int, rate: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_ch, channels, kernel, padding=0 if kernel == 1 else rate, dilation=rate),
                nn.GroupNorm(gn_groups, channels), nn.ReLU(inplace=True))
        self.branches = nn.ModuleList([branch(1, 1)] + [branch(3, rate) for rate in rates])
        merged = channels * len(self.branches)
        self.se = SqueezeExcite(merged, se_reduction)
        self.bottleneck = nn.Sequential(nn.Conv2d(merged, channels, 3, padding=1), nn.GroupNorm(gn_groups, channels))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> SegOutput:
        merged = self.se(torch.cat([b(x) for b in self.branches], dim=1))
        feat = self.dropout(self.bottleneck(merged))
        return SegOutput(self.classifier(feat), feat)


class DeepLabV2(nn.Module):
    """Takes [0, 1] RGB images and maps them to its input space itself (`model.input_norm`), so that augmentation
    and mixing stay in image space."""

    def __init__(self, backbone: DilatedResNet, head: ProdaHead, input_norm: str = "imagenet_rgb"):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_space = InputSpace(input_norm)

    def forward(self, images: torch.Tensor) -> SegOutput:
        return self.head(self.backbone(self.input_space.to_network(images)))

    def parameter_groups(self, listing: str = "unique") -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head) trainable parameters: the head trains at a multiple of the backbone LR.

        listing 'official_walk': the backbone as the official code lists it, a tensor once per enclosing module
        (`official_backbone_listing`; diga/train/sgd.py updates it as that code did); 'unique': each tensor once."""
        if listing == "official_walk":
            backbone = official_backbone_listing(self.backbone)
        else:
            backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for p in self.head.parameters() if p.requires_grad]
        return backbone, head


def official_backbone_listing(backbone: nn.Module) -> list[nn.Parameter]:
    """The official code's backbone parameter list: for each top-level part (conv1, bn1, layer1..layer4), every
    module in it and all its (recursive) parameters, so a tensor is listed once per enclosing module of the walk:
    a block's conv 3 times (stage, block, conv), a shortcut conv 4 times, the stem conv once."""
    return [p for part in backbone.children() for module in part.modules() for p in module.parameters()
            if p.requires_grad]


def build_deeplabv2(model: dict, num_classes: int) -> DeepLabV2:
    """Build the network a config describes, loading backbone weights when `init` is a path."""
    block = {"basic": BasicBlock, "bottleneck": Bottleneck}[model["block"]]
    # Checkpoints written before output_stride existed were at output stride 8.
    backbone = DilatedResNet(block, model["layers"], model["width"], model.get("output_stride", 8))
    head = ProdaHead(backbone.out_channels, model["head_channels"], model["head_rates"], model["gn_groups"],
                     model["se_reduction"], model["dropout"], num_classes)
    if model.get("head_init", "default") == "normal":
        init_head_normal(head)
    # Checkpoints written before input_norm existed used ImageNet RGB.
    net = DeepLabV2(backbone, head, model.get("input_norm", "imagenet_rgb"))
    net.config = dict(model, num_classes=num_classes)  # stored with checkpoints to rebuild the same network
    if model["init"] != "random":
        from diga.models.weights import resolve_backbone_init

        load_backbone_weights(net, resolve_backbone_init(model["init"]))
    return net


def init_head_normal(head: ProdaHead) -> None:
    """The official initialisation of the head: every conv's weight drawn from N(0, 0.01) (the constructor of the
    official ResNet re-initialises all convs after building the head), the bottleneck conv's bias zero, the other
    biases as PyTorch sets them; GroupNorm keeps weight 1 and bias 0."""
    for module in head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.01)
    nn.init.zeros_(head.bottleneck[0].bias)


def load_backbone_weights(net: DeepLabV2, path: str) -> None:
    """Load a backbone state dict (keys as in torchvision's ResNet: conv1, bn1, layer1..layer4)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise MissingWeightsError(
            f"model.init points at {path}, which does not exist. Put the initial weights there (README: "
            "'Initial weights'), or set model.init: random to train from scratch."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    # DataParallel, our own checkpoints, and the DeepLab init (keys 'Scale.conv1.weight', 'Scale.layer1...').
    state = {k.removeprefix("module.").removeprefix("backbone.").removeprefix("Scale."): v for k, v in state.items()}
    wanted = net.backbone.state_dict()
    matched = {k: v for k, v in state.items() if k in wanted and v.shape == wanted[k].shape}
    if len(matched) < len(wanted) // 2:
        raise WeightsError(f"{path}: only {len(matched)} of {len(wanted)} backbone tensors match; wrong weights file?")
    net.backbone.load_state_dict(matched, strict=False)
